"""bench/jobs_memory.py: peak memory (and time) of `morphcat plan` and `morphcat merge` against the manifest's rows
and the number of merge inputs, behind docs/jobs.md's "memory of plan and merge" (not part of make check).
plan: a manifest of --rows rows (the rehearsal's form, paths to a pool of 2,000 names that plan never opens) with
chunk manifests. merge: one chunk catalogue of --chunk-rows rows from `morphcat run` (the rehearsal's stand-in
EfficientNet-B0, 98 answers, 64 px), copied with other ids into each of --inputs catalogues (same layout as
real chunk catalogues; only the ids differ), merged; the result checked to hold every input row once.
Usage: /usr/bin/python3 bench/jobs_memory.py [--rows 10000000] [--inputs 100,1000] [--morphcat PATH] [--skip-plan]"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

ap = argparse.ArgumentParser()
ap.add_argument("--rows", type=int, default=10_000_000)
ap.add_argument("--inputs", default="100,1000")
ap.add_argument("--chunk-rows", type=int, default=32)
ap.add_argument("--morphcat", default=os.path.join(ROOT, "morphcat"))
ap.add_argument("--out", default=os.path.join(ROOT, "build", "jobs_memory"))
ap.add_argument("--skip-plan", action="store_true")
ap.add_argument("--skip-merge", action="store_true")
a = ap.parse_args()
a.out = os.path.abspath(a.out)
os.makedirs(a.out, exist_ok=True)
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OPENBLAS_NUM_THREADS="1",
           OMP_NUM_THREADS="1")


def timed(args):
    t0 = time.time()
    cp = subprocess.run(["/usr/bin/time", "-f", "peak_rss_kb %M"] + args, capture_output=True, text=True, env=env)
    if cp.returncode != 0:
        print(cp.stdout, cp.stderr)
        raise SystemExit("failed: " + " ".join(args))
    return time.time() - t0, int(re.search(r"peak_rss_kb (\d+)", cp.stderr).group(1)) / 1024


if not a.skip_plan:
    man = os.path.join(a.out, "manifest_%d.csv" % a.rows)
    if not os.path.exists(man):
        with open(man + ".tmp", "w") as f:
            f.write("id_str,file_loc,ra,dec\n")
            for i in range(a.rows):
                k = i % 2000
                f.write("gal_%08d,/data/pool/cutouts/%04d/synth_%06d.fits.fz,%.9f,%.9f\n" % (
                    i, k // 100, k, 150.0 + k * 1e-3, 2.0 + k * 7e-4))
        os.rename(man + ".tmp", man)
    plan = os.path.join(a.out, "plan")
    shutil.rmtree(plan, ignore_errors=True)
    t, rss = timed([a.morphcat, "plan", "--manifest", man, "--rate", "20", "--cores-per-node", "64", "--nodes", "20",
                    "--task-hours", "4", "--batch", "16", "--out", plan])
    print("plan of %d rows (%.0f MB) with chunk manifests: %.1f s, peak RSS %.0f MB" % (
        a.rows, os.path.getsize(man) / 1e6, t, rss), flush=True)
    shutil.rmtree(plan, ignore_errors=True)

if not a.skip_merge:
    import h5py
    import numpy as np

    import make_case

    base = os.path.join(a.out, "chunk_base.h5")
    if not os.path.exists(base):
        sv = os.path.join(a.out, "survey")
        shutil.rmtree(sv, ignore_errors=True)
        subprocess.run([a.morphcat, "synth", "--out", sv, "--n", str(a.chunk_rows), "--size", "64", "--seed", "9",
                        "--broken", "0"], check=True, capture_output=True, env=env)
        md = os.path.join(a.out, "model")
        make_case.write_case(md, "efficientnet_b0", size=64, chans=1, batch=1, kind="ckpt", seed=7, n_answers=98)
        subprocess.run(["mpirun", "-n", "1", a.morphcat, "run", "--manifest", os.path.join(sv, "manifest.csv"),
                        "--model", os.path.join(md, "model.ckpt"), "--output", base + ".tmp", "--size", "64",
                        "--batch", "16", "--recipe", "gz_decals", "--release", "bench"], check=True,
                       capture_output=True, env=env)
        os.rename(base + ".tmp", base)
    n_max = max(int(x) for x in a.inputs.split(","))
    cats = os.path.join(a.out, "chunks")
    os.makedirs(cats, exist_ok=True)
    for k in range(n_max):
        p = os.path.join(cats, "chunk_%05d.h5" % k)
        if os.path.exists(p):
            continue
        shutil.copyfile(base, p + ".tmp")
        with h5py.File(p + ".tmp", "r+") as f:
            ids = f["galaxies/id_str"]
            # other ids of the same width (a wider one would be cut to the column's width)
            ids[...] = np.array([b"%0*d" % (ids.dtype.itemsize - 1, k * len(ids) + i) for i in range(len(ids))],
                                dtype=ids.dtype)
        os.rename(p + ".tmp", p)
    for n in (int(x) for x in a.inputs.split(",")):
        out = os.path.join(a.out, "merged_%d.h5" % n)
        if os.path.exists(out):
            os.remove(out)
        inputs = [os.path.join(cats, "chunk_%05d.h5" % k) for k in range(n)]
        t, rss = timed([a.morphcat, "merge", "--output", out, "--release", "bench"] + inputs)
        with h5py.File(out, "r") as f:
            got = f["galaxies/id_str"][:]
        ok = len(got) == n * a.chunk_rows and len(set(got)) == len(got)
        print("merge of %d chunk catalogues of %d rows (%.0f MB out): %.1f s, peak RSS %.0f MB%s" % (
            n, a.chunk_rows, os.path.getsize(out) / 1e6, t, rss, "" if ok else "  WRONG ROW COUNT"), flush=True)
