"""Input files that change, shrink or vanish between the manifest scan and their read: while the job runs, a thread
keeps rewriting a few cutout files in place, replacing them by another galaxy's file, truncating them to half and
deleting them. Every row read from such a file must describe what was actually read: an ok row has the checksum and
the values of one whole version (bit-identical to a run on that version alone), a failed row has the missing or
corrupt status and a message naming the file, and no failed row claims a whole version's checksum."""
import os
import random
import shutil
import threading
import time

import numpy as np

import mctest
import pipeline_lib as pl

c = mctest.Checks()
sv = pl.survey(n=60, size=64, seed=31, broken=0, png_fraction=0)
model = pl.model()
d = mctest.tmpdir()
rows = [l.rstrip("\n").split(",") for l in open(os.path.join(sv, "manifest.csv"))][1:]
src_a = [os.path.join(sv, r[1]) for r in rows[:4]]   # version A of each hot file
src_b = [os.path.join(sv, r[1]) for r in rows[4:8]]  # version B: another galaxy, same format
hot = [os.path.join(d, "hot%d.fits.fz" % k) for k in range(4)]
N = 240  # rows, each naming one of the hot files (read many times while they change)


def write_manifest(path):
    with open(path, "w") as f:
        f.write("id_str,file_loc\n")
        for i in range(N):
            f.write("g%04d,%s\n" % (i, hot[i % 4]))


man = os.path.join(d, "manifest.csv")
write_manifest(man)


def args(out):
    return ["run", "--manifest", man, "--model", model, "--output", out, "--size", "64", "--batch", "1",
            "--progress-seconds", "1000", "--recipe", "gz_decals", "--commit-seconds", "1"]


# the two versions alone: a unit is one galaxy (--batch 1), so a row's values do not depend on its neighbours
refs = {}
for name, srcs in (("A", src_a), ("B", src_b)):
    for s, h in zip(srcs, hot):
        shutil.copyfile(s, h)
    out = os.path.join(d, "ref%s.h5" % name)
    mctest.run(args(out))
    refs[name], _ = pl.read_catalogue(out)
blobs = {"A": [open(s, "rb").read() for s in src_a], "B": [open(s, "rb").read() for s in src_b]}
for k, h in enumerate(hot):
    shutil.copyfile(src_a[k], h)

stop = threading.Event()
ops = {"rewrite": 0, "replace": 0, "shrink": 0, "delete": 0}


def churn():
    rng = random.Random(5)
    while not stop.is_set():
        k = rng.randrange(4)
        h = hot[k]
        v = rng.choice("AB")
        op = rng.choice(list(ops))
        ops[op] += 1
        if op == "rewrite":  # truncate and write in place, as `cp` over the file does
            with open(h, "wb") as f:
                f.write(blobs[v][k])
        elif op == "replace":  # atomic rename of a new version over it
            with open(h + ".new", "wb") as f:
                f.write(blobs[v][k])
            os.replace(h + ".new", h)
        elif op == "shrink":
            with open(h, "wb") as f:
                f.write(blobs[v][k][:len(blobs[v][k]) // 2])
        else:
            try:
                os.unlink(h)
            except FileNotFoundError:
                pass
        time.sleep(rng.uniform(0, 0.002))


t = threading.Thread(target=churn)
t.start()
out = os.path.join(d, "churn.h5")
try:
    r = mctest.run(args(out), check=False)
finally:
    stop.set()
    t.join()
c.check(r.returncode == 0, "the job runs through files changing under it (exit %d)" % r.returncode)
got, _ = pl.read_catalogue(out)
status = got["galaxies/status"]
sums = got["galaxies/file_xxh3"]
msgs = got["galaxies/message"]
value_keys = [k for k in refs["A"] if k.startswith(("morphology/", "embedding/"))]
whole = {refs[v]["galaxies/file_xxh3"][i] for v in "AB" for i in range(4)}
n_a = n_b = n_fail = 0
bad = []
for i in range(N):
    if status[i] == 1:
        match = [v for v in "AB" if sums[i] == refs[v]["galaxies/file_xxh3"][i]
                 and all(pl.same_values(got[k][i], refs[v][k][i]) for k in value_keys)]
        if match == ["A"]:
            n_a += 1
        elif match == ["B"]:
            n_b += 1
        else:
            bad.append("row %d: ok, but checksum and values are not one whole version's" % i)
    else:
        n_fail += 1
        name = os.path.basename(hot[i % 4]).encode()
        if status[i] not in (2, 3) or name not in msgs[i] or sums[i] in whole:
            bad.append("row %d: status %d, message %r, checksum %r" % (i, status[i], msgs[i], sums[i]))
print("churn: %s; rows ok as version A %d, as version B %d, failed %d" % (ops, n_a, n_b, n_fail))
c.check(not bad, "every row describes what was read (%d wrong%s)" % (len(bad), (": " + "; ".join(bad[:5])) if bad else ""))
c.check(n_a > 0 and n_b > 0 and n_fail > 0, "the churn reached the reads: ok rows of both versions and failed rows "
        "(A %d, B %d, failed %d)" % (n_a, n_b, n_fail))
changing = sum(1 for m in msgs if b"while it was being read" in m)
print("rows whose file would not hold still for three reads: %d" % changing)
shutil.rmtree(d, ignore_errors=True)
c.finish()
