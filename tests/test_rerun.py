"""morphcat rerun, a data-release rerun: after DR1, the new manifest drops some galaxies, adds new ones, and some
cutout files changed, vanished or appeared. Only new and changed rows are computed (under DR2); every unchanged
finished row is DR1's row bit for bit, with release DR1; the result equals a fresh DR2 run in status and checksum
everywhere and in values within float rounding (recomputed rows sit in different forward passes). The rerun is
killed at random moments and resumed; run again when complete it does nothing; a different model is refused."""
import os
import random
import shutil
import signal
import subprocess

import h5py
import numpy as np
import xxhash

import mctest
import pipeline_lib as pl

c = mctest.Checks()
rng = random.Random(6)
sv = pl.survey(n=120, size=64, seed=9, broken=11)
model = pl.model()
d = mctest.tmpdir()


def run_args(manifest, out, *extra):
    a = pl.run_args(sv, model, out, *extra)
    a[a.index("--manifest") + 1] = manifest
    return a


dr1 = os.path.join(d, "dr1.h5")
mctest.mpirun(2, [mctest.MORPHCAT] + run_args(os.path.join(sv, "manifest.csv"), dr1, "--release", "DR1"), timeout=600)
old, _ = pl.read_catalogue(dr1)
old_ids = [s.decode() for s in old["galaxies/id_str"]]
old_st = dict(zip(old_ids, old["galaxies/status"]))

# ---- DR2: a copy of the survey with changes ----
new = os.path.join(d, "dr2survey")
shutil.copytree(sv, new)
lines = open(os.path.join(new, "manifest.csv")).read().splitlines()
hdr, body = lines[0], lines[1:]
path_of = {ln.split(",")[0]: ln.split(",")[1] for ln in body}
ok_fits = [i for i in old_ids if old_st[i] == 1 and path_of[i].endswith(".fits.fz")]
changed = ok_fits[2:5]
for k, gid in enumerate(changed):  # new bytes: another galaxy's file
    shutil.copy(os.path.join(new, path_of[ok_fits[20 + k]]), os.path.join(new, path_of[gid]))
vanished = ok_fits[6]
os.remove(os.path.join(new, path_of[vanished]))
missing_before = [i for i in old_ids if old_st[i] == 2 and path_of[i]]
appeared = missing_before[0]
shutil.copy(os.path.join(new, path_of[ok_fits[30]]), os.path.join(new, path_of[appeared]))
dropped = set(old_ids[100:110])
added = []
for k in range(6):
    gid = "dr2_new_%03d" % k
    added.append(gid)
    body.append(",".join([gid, path_of[ok_fits[40 + k]], "", ""]))
body = [ln for ln in body if ln.split(",")[0] not in dropped]
man2 = os.path.join(new, "manifest_dr2.csv")
open(man2, "w").write("\n".join([hdr] + body) + "\n")
new_ids = [ln.split(",")[0] for ln in body]
bad_rows = [i for i in new_ids if i in old_st and old_st[i] == 6]
expect_redo = set(changed) | {vanished, appeared} | set(added) | set(bad_rows)

out = os.path.join(d, "dr2.h5")
args = ["mpirun", "-n", "2", "--oversubscribe", mctest.MORPHCAT, "rerun", "--previous", dr1, "--release", "DR2",
        "--manifest", man2, "--output", out, "--model", model, "--size", "64", "--batch", "4",
        "--progress-seconds", "1000", "--recipe", "gz_decals"]


def attempt(kill_after):
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=mctest.mpi_env(),
                         start_new_session=True, text=True)
    try:
        so, se = p.communicate(timeout=kill_after if kill_after is not None else 600)
    except subprocess.TimeoutExpired:
        mctest.session_signal(p.pid, signal.SIGKILL)  # mpirun and every rank
        p.communicate()
        return "killed", ""
    return ("done" if p.returncode == 0 else "exit %d: %s" % (p.returncode, se[-800:])), so


kills = [rng.uniform(0.3, 2.5) for _ in range(3)]
results = [attempt(k)[0] for k in kills]
res, so = attempt(None)
print(so)
c.check(res == "done", "rerun completes after kills at %s s (%s; then %s)" % (
    ", ".join("%.2f" % k for k in kills), results, res))

got, attrs = pl.read_catalogue(out)
ids = [s.decode() for s in got["galaxies/id_str"]]
rel = [s.decode() for s in got["galaxies/release"]]
c.check(ids == new_ids, "every row of the new manifest once, in its order (%d)" % len(ids))
redo = {i for i, r in zip(ids, rel) if r == "DR2"}
c.check(redo == expect_redo, "exactly the new, changed, vanished, reappeared and bad-manifest rows were computed "
        "under DR2 (%d; unexpected %s, missed %s)" % (len(redo), sorted(redo - expect_redo), sorted(expect_redo - redo)))
c.check(all(r == "DR1" for i, r in zip(ids, rel) if i not in expect_redo), "every other row says DR1")
carried_same = all(all(pl.same_values(got[k][j:j + 1], old[k][old_ids.index(i):old_ids.index(i) + 1]) for k in old)
                   for j, i in enumerate(ids) if i not in expect_redo)
c.check(carried_same, "carried rows are DR1's rows bit for bit, in every dataset")
st = dict(zip(ids, got["galaxies/status"]))
c.check(st[vanished] == 2 and st[appeared] == 1 and all(st[i] == 1 for i in changed + added),
        "the vanished file is missing_file now, the reappeared one ok, changed and new ones ok")
sums = dict(zip(ids, got["galaxies/file_xxh3"]))
c.check(all(sums[i].decode() == xxhash.xxh3_128_hexdigest(open(os.path.join(new, path_of[i]), "rb").read())
            for i in changed), "changed rows carry their new files' XXH3-128")
c.check(attrs["release"] == "DR2" and attrs["rerun_of"] == dr1 and attrs["n_rows"] == str(len(new_ids)),
        "attributes: release DR2, rerun_of, n_rows")

# ---- equal to a fresh DR2 run ----
fresh = os.path.join(d, "fresh.h5")
mctest.mpirun(2, [mctest.MORPHCAT] + run_args(man2, fresh, "--release", "DR2"), timeout=600)
fr, _ = pl.read_catalogue(fresh)
c.check(np.array_equal(fr["galaxies/status"], got["galaxies/status"])
        and np.array_equal(fr["galaxies/file_xxh3"], got["galaxies/file_xxh3"]),
        "status and file_xxh3 equal a fresh DR2 run on every row")
okr = fr["galaxies/status"] == 1
worst = max(mctest.rel_max_err(got[k][okr], fr[k][okr]) for k in fr if k.startswith(("morphology", "embedding")))
c.check(worst < 1e-4, "values equal a fresh DR2 run within float rounding (worst max|a-b|/max|b| %.2g; tolerance 1e-4)" % worst)

# ---- complete: nothing to do; a different model: refused before any work ----
mtime = os.stat(out).st_mtime_ns
res, so = attempt(None)
c.check(res == "done" and "nothing to do" in so and os.stat(out).st_mtime_ns == mtime,
        "run again: nothing to do, the catalogue untouched (%s)" % so.strip())
import make_case  # noqa: E402
md = mctest.tmpdir()
make_case.write_case(md, "efficientnet_b0", size=64, chans=1, batch=1, kind="ckpt", seed=11, n_answers=98)
other = os.path.join(d, "other.h5")
a2 = [x if x != model else os.path.join(md, "model.ckpt") for x in args]
a2[a2.index("--output") + 1] = other
cp = subprocess.run(a2, capture_output=True, text=True, env=mctest.mpi_env(), timeout=300)
lines = [ln for ln in cp.stderr.splitlines() if ln.startswith("morphcat")]  # mpirun adds its own banner
c.check(cp.returncode == 1 and len(lines) == 1 and "model_sha256" in lines[0]
        and not os.path.exists(os.path.join(other + ".rerun", "todo.csv")),
        "a different model is refused with one line before any checksum or galaxy (%s)" % lines)
cp = mctest.run(["rerun", "--previous", dr1, "--manifest", man2, "--output", other, "--model", model], check=False)
c.check(cp.returncode == 2 and "--release" in cp.stderr, "--release is required")
c.finish()
