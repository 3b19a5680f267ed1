"""morphcat plan on a 1,000,000-row manifest (rows point to a small pool of file names; nothing is read): it runs in
seconds, splits the rows into chunks of whole work units that together hold every row once, in order, with paths
made absolute, sky positions read back exactly and bad rows kept bad with their original reason; plan.env and the
printed node-hours follow the stated arithmetic; bad options are refused with one line."""
import csv
import os
import random
import re
import time

import mctest

c = mctest.Checks()
d = mctest.tmpdir()
N = 1_000_000
rng = random.Random(1)
man = os.path.join(d, "survey", "manifest.csv")
os.makedirs(os.path.dirname(man))
bad_at = {17: "ra=abc", 123456: "empty path", 999_998: "extra field"}
rows = []
with open(man, "w") as f:
    f.write("id_str,file_loc,ra,dec\n")
    for i in range(N):
        ra, dec = "%.9f" % rng.uniform(0, 360), "%.9f" % rng.uniform(-90, 90)
        path = "pool/f_%02d.fits" % (i % 50)
        kind = bad_at.get(i)
        if kind == "ra=abc":
            ra = "abc"
        elif kind == "empty path":
            path = ""
        line = "gal_%07d,%s,%s,%s" % (i, path, ra, dec)
        if kind == "extra field":
            line += ",surplus"
        f.write(line + "\n")
        rows.append((path, ra, dec))

out = os.path.join(d, "plan")
t0 = time.time()
cp = mctest.run(["plan", "--manifest", man, "--rate", "50", "--cores-per-node", "64", "--nodes", "10",
                 "--task-hours", "1", "--batch", "16", "--out", out])
secs = time.time() - t0
print(cp.stdout, cp.stderr)
c.check(secs < 60, "1M-row plan with chunk manifests in %.1f s (< 60 s)" % secs)
env = dict(ln.split("=", 1) for ln in open(os.path.join(out, "plan.env")).read().splitlines() if "=" in ln)
c.check(env["MC_PLAN_ROWS"] == str(N) and env["MC_PLAN_CHUNKS"] == "10" and env["MC_PLAN_CHUNK_ROWS"] == "100000"
        and env["MC_PLAN_ARRAY"] == "0-9%10", "10 nodes: 10 chunks of 100000 rows, array 0-9%%10 (%s)" % env)
# node-hours: N / (rate * cores) / 3600 computing + chunks * start-up / 3600
nh = N / (50 * 64) / 3600 + 10 * 60 / 3600
c.check("node-hours: %.2f" % nh in cp.stdout, "node-hours printed as %.2f" % nh)
chunks = sorted(os.listdir(os.path.join(out, "chunks")))
got_ids, ok_rows, bad_ok = [], True, True
base = os.path.dirname(os.path.abspath(man))
for ch in chunks:
    with open(os.path.join(out, "chunks", ch), newline="") as f:
        r = csv.reader(f)
        hdr = next(r)
        for rec in r:
            i = int(rec[0][4:])
            got_ids.append(i)
            path, ra, dec = rows[i]
            if i in bad_at:
                bad_ok &= bool(rec[5]) and ("line %d:" % (i + 2)) in rec[5]
                continue
            ok_rows &= rec[1] == os.path.join(base, path) and float(rec[2]) == float(ra) and float(rec[3]) == float(dec)
c.check(hdr == ["id_str", "file_loc", "ra", "dec", "hdu", "morphcat_bad_row"], "chunk header %s" % hdr)
c.check(got_ids == list(range(N)), "the chunks hold every row once, in manifest order")
c.check(ok_rows, "paths absolute (resolved against the manifest's folder), ra/dec read back exactly")
c.check(bad_ok, "bad rows keep their reason and the source line in morphcat_bad_row")
tsv = open(os.path.join(out, "chunks.tsv")).read().splitlines()
c.check(len(tsv) == 11 and all(int(ln.split("\t")[2]) % 16 == 0 for ln in tsv[1:]), "chunks.tsv: whole units of 16")
# a chunk manifest reads back as a manifest (bad row included)
cp = mctest.run(["plan", "--manifest", os.path.join(out, "chunks", chunks[0]), "--rate", "50", "--cores-per-node", "64"])
c.check("100000 galaxies" in cp.stdout, "a chunk manifest is a manifest morphcat reads (%s)" % cp.stdout.splitlines()[0])

# ---- duplicate id_str across the whole manifest: plan streams the rows (its duplicate check sorts hashes in runs
# of 262,144 rows on disk), and still names the first repeated id and both its lines, as io_manifest_read does ----
dup = os.path.join(d, "survey", "dup.csv")
with open(man) as fi, open(dup, "w") as fo:
    for i, ln in enumerate(fi):  # data row k is on line k + 2: gal_0200000 again at row 500000 and gal_0000010 at 600000
        k = i - 1
        fo.write(ln.replace("gal_%07d," % k, "gal_0200000,") if k == 500000 else
                 ln.replace("gal_%07d," % k, "gal_0000010,") if k in (600000, 800000) else ln)
cp = mctest.run(["plan", "--manifest", dup, "--rate", "50", "--cores-per-node", "64", "--out", os.path.join(d, "dup_plan")],
                check=False)
lines = cp.stderr.strip().splitlines()
c.check(cp.returncode == 1 and lines == ["morphcat: %s: duplicate id_str 'gal_0200000' on lines 200002 and 500002" % dup]
        and not os.path.exists(os.path.join(d, "dup_plan", "plan.env")),
        "duplicates 300,000 rows apart refused with the first repeat and both lines, no plan written: %s" % lines)

# ---- estimate only, the arithmetic spelled out ----
cp = mctest.run(["plan", "--galaxies", "10000000", "--rate", "4.5", "--cores-per-node", "128", "--nodes", "20",
                 "--task-hours", "6", "--batch", "16", "--startup-seconds", "90"])
print(cp.stdout)
# a task's share: 6 h at 4.5 galaxies/s on 128 cores, in whole units of 16 ... unless spreading the survey over
# the 20 nodes gives smaller chunks, which it does here
chunk = min(int(4.5 * 128 * 6 * 3600) // 16 * 16, -(-(-(-10_000_000 // 20)) // 16) * 16)
nchunks = -(-10_000_000 // chunk)
nh = 10_000_000 / (4.5 * 128) / 3600 + nchunks * 90 / 3600
m = re.search(r"chunks: (\d+) of (\d+) rows", cp.stdout)
c.check(m and int(m.group(1)) == nchunks and int(m.group(2)) == chunk, "10M galaxies: %d chunks of %d rows" % (nchunks, chunk))
c.check("node-hours: %.2f" % nh in cp.stdout, "10M galaxies: %.2f node-hours" % nh)

# ---- refusals ----
for args, code, what in ((["--galaxies", "10", "--rate", "0", "--cores-per-node", "4"], 1, "--rate"),
                         (["--galaxies", "10", "--rate", "3"], 2, "--cores-per-node"),
                         (["--manifest", os.path.join(d, "nope.csv"), "--rate", "3", "--cores-per-node", "4"], 1, "nope.csv")):
    cp = mctest.run(["plan"] + args, check=False)
    lines = cp.stderr.strip().splitlines()
    c.check(cp.returncode == code and len(lines) == 1 and what in lines[0], "refused (%s): %s" % (what, lines))
c.finish()
