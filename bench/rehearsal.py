"""bench/rehearsal.py: the survey-scale rehearsal behind docs/jobs.md (not part of make check: a few minutes).
1. a synthetic survey of POOL cutouts (morphcat synth, DECaLS-like g,r,z FITS, SIZE px) and a 1,000,000-row manifest
   whose rows point to that pool in turn (distinct id_str, each row a separate galaxy to the job; only the pixels
   repeat), so a million-row survey costs seconds to make and a few MB of disk;
2. `morphcat plan` on the million rows (timed), with chunk manifests;
3. one chunk of SLICE rows run with `mpirun -n CORES morphcat run` (stand-in EfficientNet-B0 greyscale Zoobot
   checkpoint from tools/make_case.py, 224 px, gz_decals recipe, batch 16): the measured galaxies/s per core, for
   each OpenBLAS core type asked;
4. `morphcat status` and `morphcat merge` timed on the slice's catalogue;
5. `morphcat plan --galaxies 10000000` with the measured rate: the projection.
Usage: /usr/bin/python3 bench/rehearsal.py [--pool 400] [--size 256] [--slice 3200] [--coretypes Haswell,SkylakeX]
Writes build/rehearsal/ (large files stay there) and prints a summary for docs/jobs.md."""
import argparse
import os
import random
import re
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
MORPHCAT = os.path.join(ROOT, "morphcat")

ap = argparse.ArgumentParser()
ap.add_argument("--pool", type=int, default=400)
ap.add_argument("--size", type=int, default=256)
ap.add_argument("--rows", type=int, default=1_000_000)
ap.add_argument("--slice", type=int, default=3200)
ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
ap.add_argument("--coretypes", default="Haswell,SkylakeX")
ap.add_argument("--out", default=os.path.join(ROOT, "build", "rehearsal"))
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OPENBLAS_NUM_THREADS="1",
           OMP_NUM_THREADS="1")
summary = []


def say(s):
    print(s, flush=True)
    summary.append(s)


def run(args, **kw):
    t0 = time.time()
    cp = subprocess.run(args, capture_output=True, text=True, env=kw.pop("env", env), **kw)
    if cp.returncode != 0:
        print(cp.stdout, cp.stderr)
        raise SystemExit("failed: " + " ".join(args))
    return cp, time.time() - t0


pool = os.path.join(a.out, "pool")
if not os.path.exists(os.path.join(pool, "manifest.csv")):
    _, t = run([MORPHCAT, "synth", "--out", pool, "--n", str(a.pool), "--size", str(a.size), "--seed", "2026",
                "--broken", "0"])
    say("pool: %d synthetic %d px cutouts in %.1f s" % (a.pool, a.size, t))
files = [ln.split(",")[:4] for ln in open(os.path.join(pool, "manifest.csv")).read().splitlines()[1:]]
man = os.path.join(a.out, "manifest_1M.csv")
t0 = time.time()
with open(man, "w") as f:
    f.write("id_str,file_loc,ra,dec\n")
    rng = random.Random(1)
    for i in range(a.rows):
        _, path, ra, dec = files[i % len(files)]
        f.write("gal_%07d,%s,%s,%s\n" % (i, os.path.join(pool, path), ra, dec))
say("manifest: %d rows (pointing to the %d-file pool in turn), %.0f MB, written in %.1f s" % (
    a.rows, len(files), os.path.getsize(man) / 1e6, time.time() - t0))

plan = os.path.join(a.out, "plan")
cp, t = run([MORPHCAT, "plan", "--manifest", man, "--rate", "20", "--cores-per-node", "64", "--nodes", "10",
             "--task-hours", "4", "--batch", "16", "--out", plan])
say("plan of %d rows with chunk manifests: %.1f s wall (%s)" % (a.rows, t, cp.stderr.strip().split(": ", 2)[-1]))
slice_plan = os.path.join(a.out, "slice_plan")
run([MORPHCAT, "plan", "--manifest", man, "--rate", "20", "--cores-per-node", "64", "--chunk-rows", str(a.slice),
     "--batch", "16", "--out", slice_plan])
chunk0 = os.path.join(slice_plan, "chunks", "chunk_00000.csv")

model = os.path.join(a.out, "standin", "model.ckpt")
if not os.path.exists(model):
    import make_case
    make_case.write_case(os.path.dirname(model), "efficientnet_b0", size=224, chans=1, batch=1, kind="ckpt", seed=7,
                         n_answers=98)
rates = {}
for core in [c for c in a.coretypes.split(",") if c]:
    cat = os.path.join(a.out, "slice_%s.h5" % core)
    for p in (cat, cat + ".creating"):
        if os.path.exists(p):
            os.remove(p)
    cp, t = run(["mpirun", "-n", str(a.cores), "--oversubscribe", MORPHCAT, "run", "--manifest", chunk0, "--model", model,
                 "--output", cat, "--size", "224", "--batch", "16", "--recipe", "gz_decals", "--release", "rehearsal",
                 "--progress-seconds", "1000"], env=dict(env, OPENBLAS_CORETYPE=core))
    per_rank = [float(x) for x in re.search(r"per rank galaxies/s: ([0-9. ]+)", cp.stdout).group(1).split()]
    steady = float(re.search(r"steady ([0-9.]+) galaxies/s", cp.stdout).group(1))
    rates[core] = sum(per_rank) / len(per_rank)
    say("slice (OPENBLAS_CORETYPE=%s): %d galaxies on %d ranks in %.1f s wall; %.1f galaxies/s steady, per rank %s "
        "-> %.2f galaxies/s per core" % (core, a.slice, a.cores, t, steady, per_rank, rates[core]))
    last_cat = cat
cp, t = run([MORPHCAT, "status", last_cat])
say("status on the %d-row slice: %.2f s" % (a.slice, t))
merged = os.path.join(a.out, "slice_merged.h5")
cp, t = run([MORPHCAT, "merge", "--output", merged, last_cat])
mb = os.path.getsize(last_cat) / 1e6
say("merge of the %d-row slice (%.0f MB): %.2f s (%s)" % (a.slice, mb, t, cp.stdout.strip().split(") in ")[-1]))
say("catalogue size: %.2f kB per galaxy (float32 embedding 1280 + 98-answer morphology)" % (mb * 1e3 / a.slice))
for core, r in rates.items():
    for cores, nodes in ((64, 20), (128, 10)):
        cp, _ = run([MORPHCAT, "plan", "--galaxies", "10000000", "--rate", "%.3f" % r, "--cores-per-node", str(cores),
                     "--nodes", str(nodes), "--task-hours", "4", "--batch", "16"])
        say("projection, 10M galaxies, %s rate %.2f/core, %d-core nodes x %d:\n%s" % (core, r, cores, nodes,
                                                                                   cp.stdout.rstrip()))
open(os.path.join(a.out, "summary.txt"), "w").write("\n".join(summary) + "\n")
