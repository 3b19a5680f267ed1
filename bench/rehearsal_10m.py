"""bench/rehearsal_10m.py: the 10-million-row rehearsal behind docs/jobs.md (not part of make check: tens of minutes).
1. a pool of POOL synthetic cutouts (morphcat synth, 256 px g,r,z RICE FITS) and a 10,000,000-row manifest whose rows
   point to the pool in turn (distinct id_str: each row is a separate galaxy to the job, only the pixels repeat);
2. `morphcat plan` of the 10 million rows with chunk manifests (timed);
3. catalogue creation for all 10 million rows (`morphcat run` on 2 ranks, stopped with SIGUSR1 as soon as the
   catalogue exists): time, file size, peak RSS per rank; then `morphcat status` on it;
4. a slice of SLICE rows (the first rows, real files of the pool) planned as 100 chunks, each run with
   `morphcat run` (1 rank, 2 chunks at a time): galaxies/s per core; `morphcat status --plan`; `morphcat merge`
   of the 100 chunk catalogues;
5. `morphcat rerun` of the merged slice where 1% of the rows point to a changed file (another pool file's bytes).
Usage: /usr/bin/python3 bench/rehearsal_10m.py [--pool 2000] [--rows 10000000] [--slice 3200]
Writes build/rehearsal10m/ (about 1 GB of manifest and chunk manifests, plus the catalogues) and prints a summary."""
import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
MORPHCAT = os.path.join(ROOT, "morphcat")

ap = argparse.ArgumentParser()
ap.add_argument("--pool", type=int, default=2000)
ap.add_argument("--size", type=int, default=256)
ap.add_argument("--rows", type=int, default=10_000_000)
ap.add_argument("--slice", type=int, default=3200)
ap.add_argument("--chunks", type=int, default=100)
ap.add_argument("--out", default=os.path.join(ROOT, "build", "rehearsal10m"))
a = ap.parse_args()
a.out = os.path.abspath(a.out)
os.makedirs(a.out, exist_ok=True)
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OPENBLAS_NUM_THREADS="1",
           OMP_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1")
summary = []
RUN = ["--size", "224", "--batch", "16", "--recipe", "gz_decals", "--progress-seconds", "1000"]


def say(s):
    print(s, flush=True)
    summary.append(s)


def run(args, check=True, **kw):
    t0 = time.time()
    cp = subprocess.run(args, capture_output=True, text=True, env=kw.pop("env", env), **kw)
    if check and cp.returncode != 0:
        print(cp.stdout, cp.stderr)
        raise SystemExit("failed: " + " ".join(args))
    return cp, time.time() - t0


def rm(*paths):
    for p in paths:
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)


def make_changed_pool(pool, alt):
    """alt/<same relative path> = the bytes of another file of the pool with the same suffix."""
    rel = [ln.split(",")[1] for ln in open(os.path.join(pool, "manifest.csv")).read().splitlines()[1:]]
    by_ext = {}
    for r in rel:
        by_ext.setdefault(r.split(".", 1)[-1], []).append(r)
    for group in by_ext.values():
        for k, r in enumerate(group):
            dst = os.path.join(alt, r)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(os.path.join(pool, group[(k + 1) % len(group)]), dst)
    open(os.path.join(alt, "manifest.csv"), "w").write("made by make_changed_pool\n")


# ---- 1. pool and manifest ----
pool = os.path.join(a.out, "pool")
if not os.path.exists(os.path.join(pool, "manifest.csv")):
    _, t = run([MORPHCAT, "synth", "--out", pool, "--n", str(a.pool), "--size", str(a.size), "--seed", "2027",
                "--broken", "0"])
    say("pool: %d synthetic %d px g,r,z RICE FITS cutouts in %.1f s" % (a.pool, a.size, t))
files = [ln.split(",")[:4] for ln in open(os.path.join(pool, "manifest.csv")).read().splitlines()[1:]]
man = os.path.join(a.out, "manifest_10M.csv")
t0 = time.time()
with open(man, "w") as f:
    f.write("id_str,file_loc,ra,dec\n")
    for i in range(a.rows):
        _, path, ra, dec = files[i % len(files)]
        f.write("gal_%08d,%s,%s,%s\n" % (i, os.path.join(pool, path), ra, dec))
say("manifest: %d rows pointing to the %d generated files in turn, %.0f MB, written in %.1f s" % (
    a.rows, len(files), os.path.getsize(man) / 1e6, time.time() - t0))

# ---- 2. plan ----
plan = os.path.join(a.out, "plan")
rm(plan)
cp, t = run(["/usr/bin/time", "-f", "peak_rss_kb %M", MORPHCAT, "plan", "--manifest", man, "--rate", "20",
             "--cores-per-node", "64", "--nodes", "20", "--task-hours", "4", "--batch", "16", "--out", plan])
rss = int(re.search(r"peak_rss_kb (\d+)", cp.stderr).group(1))
say("plan of %d rows with chunk manifests: %.1f s wall, peak RSS %.0f MB (%s)" % (
    a.rows, t, rss / 1024, cp.stdout.strip().splitlines()[0] if cp.stdout.strip() else ""))

# ---- 3. catalogue creation for 10M rows, then stop ----
model = os.path.join(a.out, "standin", "model.ckpt")
if not os.path.exists(model):
    import make_case
    make_case.write_case(os.path.dirname(model), "efficientnet_b0", size=224, chans=1, batch=1, kind="ckpt", seed=7,
                         n_answers=98)
big = os.path.join(a.out, "all_10M.h5")
rm(big, big + ".creating")
t0 = time.time()
p = subprocess.Popen(["mpirun", "-n", "2", MORPHCAT, "run", "--manifest", man, "--model", model, "--output", big,
                      "--release", "rehearsal"] + RUN, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                     env=env)
while not (os.path.exists(big) and not os.path.exists(big + ".creating")) and p.poll() is None:
    time.sleep(0.2)
t_create = time.time() - t0
ranks_rss = []  # the ranks' peak RSS so far (VmHWM), read before they are told to stop
for pid in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split():
    try:
        ranks_rss.append(int(re.search(r"VmHWM:\s+(\d+)", open("/proc/%s/status" % pid).read()).group(1)))
    except (OSError, AttributeError):
        pass
p.send_signal(signal.SIGUSR1)  # mpirun passes it to the ranks: finish the batch, commit, exit 4
out, _ = p.communicate()
st = os.stat(big)
say("catalogue creation for %d rows (2 ranks, mpirun start and manifest reading included): %.1f s; file %.2f GB "
    "apparent, %.2f GB on disk; peak RSS per rank %s MB (exit %d after SIGUSR1)" % (
        a.rows, t_create, st.st_size / 1e9, st.st_blocks * 512 / 1e9, [r // 1024 for r in ranks_rss], p.returncode))
cp, t = run([MORPHCAT, "status", big], check=False)
say("status on the %d-row catalogue: %.2f s (%s)" % (a.rows, t, cp.stdout.strip().splitlines()[0][:200]
                                                    if cp.stdout.strip() else cp.stderr.strip()[:160]))
rm(big)

# ---- 4. a slice as 100 chunks ----
sl = os.path.join(a.out, "slice.csv")
with open(man) as fi, open(sl, "w") as fo:
    for i, ln in enumerate(fi):
        if i > a.slice:
            break
        fo.write(ln)
splan = os.path.join(a.out, "slice_plan")
rm(splan)
run([MORPHCAT, "plan", "--manifest", sl, "--rate", "20", "--cores-per-node", "1", "--chunk-rows",
     str(a.slice // a.chunks), "--batch", "16", "--out", splan])
chunks = os.path.join(a.out, "slice_chunks")
rm(chunks)
os.makedirs(chunks)
names = sorted(os.listdir(os.path.join(splan, "chunks")))
t0 = time.time()
rates = []
procs = []
for k, n in enumerate(names):
    cat = os.path.join(chunks, n.replace(".csv", ".h5"))
    procs.append(subprocess.Popen(["mpirun", "-n", "1", MORPHCAT, "run", "--manifest", os.path.join(splan, "chunks", n),
                                   "--model", model, "--output", cat, "--release", "rehearsal"] + RUN,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
    if len(procs) == 2 or k == len(names) - 1:
        for q in procs:
            o, _ = q.communicate()
            if q.returncode != 0:
                print(o)
                raise SystemExit("a chunk failed")
            m = re.search(r"per rank galaxies/s: ([0-9.]+)", o)
            if m:
                rates.append(float(m.group(1)))
        procs = []
t_chunks = time.time() - t0
rate = sum(rates) / len(rates)
say("slice: %d rows of real files as %d chunk catalogues (1 rank each, 2 at a time on 2 cores): %.0f s wall; "
    "%.1f galaxies/s per core steady (mean of the chunks' per-rank rates; stand-in EfficientNet-B0, 224 px, batch 16)"
    % (a.slice, len(names), t_chunks, rate))
cp, t = run([MORPHCAT, "status", "--plan", splan, "--outputs", chunks])
say("status --plan over the %d chunk catalogues: %.2f s (%s)" % (len(names), t, cp.stdout.strip().splitlines()[-1]))
merged = os.path.join(a.out, "slice_merged.h5")
rm(merged)
cats = [os.path.join(chunks, n.replace(".csv", ".h5")) for n in names]
cp, t = run(["/usr/bin/time", "-f", "peak_rss_kb %M", MORPHCAT, "merge", "--output", merged, "--release",
             "rehearsal"] + cats)
rss = int(re.search(r"peak_rss_kb (\d+)", cp.stderr).group(1))
say("merge of the %d chunk catalogues (%d rows, %.0f MB out): %.1f s, peak RSS %.0f MB" % (
    len(cats), a.slice, os.path.getsize(merged) / 1e6, t, rss / 1024))

# ---- 5. rerun with 1% of the files changed ----
# 1% of the slice's rows get a changed file: a copy, under a new name, of another pool file of the same type
# (other pixels, so another checksum)
rows = open(sl).read().splitlines()
hdr, body = rows[0], rows[1:]
rng = random.Random(5)
changed = sorted(rng.sample(range(len(body)), max(1, len(body) // 100)))
alt = os.path.join(a.out, "pool_changed")
if not os.path.exists(os.path.join(alt, "manifest.csv")):
    make_changed_pool(pool, alt)
newdir = os.path.join(a.out, "dr2_files")
rm(newdir)
os.makedirs(newdir)
for i in changed:
    f = body[i].split(",")
    src = os.path.join(alt, os.path.relpath(f[1], pool))
    dst = os.path.join(newdir, "row%05d_%s" % (i, os.path.basename(f[1])))
    shutil.copyfile(src, dst)
    f[1] = dst
    body[i] = ",".join(f)
sl2 = os.path.join(a.out, "slice_dr2.csv")
open(sl2, "w").write("\n".join([hdr] + body) + "\n")
new = os.path.join(a.out, "slice_dr2.h5")
rm(new, new + ".rerun")
cp, t = run(["mpirun", "-n", "2", MORPHCAT, "rerun", "--previous", merged, "--manifest", sl2, "--release", "dr2",
             "--output", new, "--model", model] + RUN)
lines = [ln for ln in (cp.stdout + cp.stderr).splitlines() if "carried" in ln or "recompute" in ln]
say("rerun of the %d-row slice with %d files changed (1%%), 2 ranks: %.1f s (%s)" % (
    a.slice, len(changed), t, lines[-1][:200] if lines else ""))
open(os.path.join(a.out, "summary.txt"), "w").write("\n".join(summary) + "\n")
