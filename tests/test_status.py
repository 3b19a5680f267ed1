"""morphcat status: counts by status equal the catalogue's own (text and JSON); it reads a catalogue while a 2-rank
job is writing it (no locking failure, counts only grow, a measured rate); on a plan it counts chunks not started
as remaining; a file that is not a catalogue is one line and exit 1."""
import json
import os
import re
import subprocess
import time

import h5py
import numpy as np

import mctest
import pipeline_lib as pl

c = mctest.Checks()
sv = pl.survey(n=240, size=64, seed=4, broken=11)
model = pl.model()
d = mctest.tmpdir()


def status(*args, check=True):
    return mctest.run(["status"] + list(args), check=check)


def js(*args):
    return json.loads(status("--json", *args).stdout)


# ---- while a job writes the catalogue (model input 160 px so it takes a few seconds) ----
live = os.path.join(d, "live.h5")
args = pl.run_args(sv, model, live, "--commit-seconds", "0.2")
args[args.index("--size") + 1] = "160"
p = subprocess.Popen(["mpirun", "-n", "2", "--oversubscribe", mctest.MORPHCAT] + args, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, env=mctest.mpi_env(), text=True)
seen, errors, rates = [], [], []
t0 = time.time()
while p.poll() is None and time.time() - t0 < 300:
    if os.path.exists(live) and not os.path.exists(live + ".creating"):
        cp = status("--json", live, check=False)
        if cp.returncode:
            errors.append(cp.stderr.strip())
        else:
            seen.append(json.loads(cp.stdout)["total"]["done"])
        if len(seen) == 3:
            cp = status("--interval", "1", live, check=False)
            rates.append(cp.stdout.strip().splitlines()[-1] if cp.returncode == 0 else cp.stderr)
    time.sleep(0.1)
so, se = p.communicate()
c.check(p.returncode == 0, "the job finished (%d)" % p.returncode)
c.check(not errors, "status never failed on the catalogue being written (%s)" % errors[:2])
c.check(len(seen) >= 3 and seen == sorted(seen) and any(0 < s < 240 for s in seen),
        "done counts read mid-job only grow and show partial progress (%s)" % seen)
c.check(bool(rates) and re.search(r"rate: [0-9.]+ galaxies/s \(measured now\)", rates[0]) is not None,
        "--interval measures a rate on the running job (%s)" % rates)

# ---- a complete catalogue: the counts are the status column's ----
with h5py.File(live, "r") as f:
    st = f["galaxies/status"][:]
j = js(live)
cat = j["catalogues"][0]
want = {n: int((st == k).sum()) for k, n in enumerate(
    ["pending", "ok", "missing_file", "corrupt_file", "bad_shape", "bad_pixels", "bad_manifest_row"])}
c.check(cat["counts"] == want and cat["state"] == "complete" and j["total"]["failed"] == 240 - want["ok"],
        "JSON counts equal the status column (%s)" % cat["counts"])
txt = status(live).stdout
c.check("240 rows, complete: done 240 (ok %d, failed %d:" % (want["ok"], 240 - want["ok"]) in txt
        and "missing_file %d" % want["missing_file"] in txt, "text summary: %s" % txt.splitlines()[0])

# ---- a plan: chunks without a catalogue are remaining ----
plan = os.path.join(d, "plan")
mctest.run(["plan", "--manifest", os.path.join(sv, "manifest.csv"), "--rate", "1", "--cores-per-node", "1",
            "--nodes", "3", "--batch", "4", "--out", plan])
outs = os.path.join(d, "outs")
os.makedirs(outs)
a = pl.run_args(sv, model, os.path.join(outs, "chunk_00001.h5"))
a[a.index("--manifest") + 1] = os.path.join(plan, "chunks", "chunk_00001.csv")
mctest.mpirun(1, [mctest.MORPHCAT] + a, timeout=300)
j = js("--plan", plan, "--outputs", outs)
states = [x["state"] for x in j["catalogues"]]
c.check(states == ["not started", "complete", "not started"] and j["total"]["rows"] == 240
        and j["total"]["done"] == 80 and j["total"]["remaining"] == 160 and j["total"]["started"] == 1,
        "plan: chunk 1 complete, 0 and 2 not started, 160 remaining (%s, %s)" % (states, j["total"]))

# ---- not a catalogue ----
junk = os.path.join(d, "junk.h5")
open(junk, "w").write("not hdf5")
cp = status(junk, check=False)
lines = cp.stderr.strip().splitlines()
c.check(cp.returncode == 1 and len(lines) == 1 and "junk.h5" in lines[0], "not a catalogue: one line (%s)" % lines)
with h5py.File(os.path.join(d, "plain.h5"), "w") as f:
    f["x"] = np.zeros(3)
cp = status(os.path.join(d, "plain.h5"), check=False)
c.check(cp.returncode == 1 and "not a morphcat catalogue" in cp.stderr, "an HDF5 file that is no catalogue: refused")
c.finish()
