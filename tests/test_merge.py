"""morphcat merge: per-chunk catalogues of a plan merge into the catalogue an unchunked run gives (every dataset
bit-identical; only a bad manifest row's message names its row within the chunk); overlapping catalogues give one
row per id_str by the documented rule (ok beats failed, then the later input); datasets added to the layout later
(a clumps group) come along generically; different models, columns, non-row datasets and pending rows are refused
with one line."""
import os
import shutil

import h5py
import numpy as np

import mctest
import pipeline_lib as pl

c = mctest.Checks()
sv = pl.survey(n=120, size=64, seed=8, broken=11)
model = pl.model()
man = os.path.join(sv, "manifest.csv")
d = mctest.tmpdir()


def run(manifest, out, *extra):
    args = pl.run_args(sv, model, out, *extra)
    args[args.index("--manifest") + 1] = manifest
    mctest.mpirun(2, [mctest.MORPHCAT] + args, timeout=600)


def merge(out, *inputs, check=True, extra=()):
    return mctest.run(["merge", "--output", out] + list(extra) + list(inputs), check=check)


ref = os.path.join(d, "ref.h5")
run(man, ref)
refd, refa = pl.read_catalogue(ref)

# ---- a plan's chunks, merged, equal the unchunked run ----
plan = os.path.join(d, "plan")
mctest.run(["plan", "--manifest", man, "--rate", "1", "--cores-per-node", "2", "--nodes", "3", "--batch", "4",
            "--out", plan])
chunks = sorted(os.listdir(os.path.join(plan, "chunks")))
c.check(len(chunks) == 3, "the plan made 3 chunks (%s)" % chunks)
cats = []
for i, ch in enumerate(chunks):
    cats.append(os.path.join(d, "chunk_%05d.h5" % i))
    run(os.path.join(plan, "chunks", ch), cats[-1])
merged = os.path.join(d, "merged.h5")
cp = merge(merged, *cats)
print(cp.stdout)
got, attrs = pl.read_catalogue(merged)
ids = got["galaxies/id_str"]
c.check(np.array_equal(ids, refd["galaxies/id_str"]) and len(set(ids)) == len(ids),
        "merged chunks: every id exactly once, in manifest order")
differ = [k for k in sorted(refd) if not pl.same_values(got[k], refd[k])]
c.check(set(refd) == set(got), "merged chunks: the same datasets as the unchunked run")
c.check(differ in ([], ["galaxies/message"]), "merged chunks: every dataset bit-identical but messages (%s)" % differ)
msg_rows = np.nonzero(got["galaxies/message"] != refd["galaxies/message"])[0]
c.check(all(refd["galaxies/status"][i] == 6 for i in msg_rows),
        "only bad-manifest-row messages differ (they name the row within the chunk): rows %s" % list(msg_rows))
with h5py.File(merged, "r") as f:
    col = f["columns/smooth-or-featured-dr5_smooth_fraction"][:]
    j = list(f["morphology"].attrs["answer_columns"]).index("smooth-or-featured-dr5_smooth")
    c.check(pl.same_values(col, f["morphology/fraction"][:, j]), "the per-answer column views point into the merged file")
    c.check(f.attrs["model_sha256"] == refa["model_sha256"] and f.attrs["n_rows"] == "120"
            and len(f.attrs["merged_from"].strip().split("\n")) == 3, "attributes: model kept, n_rows, merged_from")
    c.check(f["galaxies/status"].attrs["codes"].startswith("0 pending"), "dataset attributes copied")

# ---- overlapping catalogues: one row per id_str ----
rows = open(man).read().splitlines()
hdr, body = rows[0], rows[1:]
man_a, man_b = os.path.join(sv, "a.csv"), os.path.join(sv, "b.csv")  # beside the cutouts: relative paths
open(man_a, "w").write("\n".join([hdr] + body[:80]) + "\n")
open(man_b, "w").write("\n".join([hdr] + body[40:]) + "\n")
# in A's run, rows 50..53 fail: their files are missing then (moved away, back for B's run)
moved = []
for line in body[50:54]:
    p = os.path.join(sv, line.split(",")[1])
    shutil.move(p, p + ".away")
    moved.append(p)
cat_a, cat_b = os.path.join(d, "A.h5"), os.path.join(d, "B.h5")
run(man_a, cat_a, "--release", "rel-A")
for p in moved:
    shutil.move(p + ".away", p)
run(man_b, cat_b, "--release", "rel-B")
a, _ = pl.read_catalogue(cat_a)
c.check(all(a["galaxies/status"][50:54] == 2), "A: rows 50-53 failed (missing_file)")
for order, later in (((cat_a, cat_b), b"rel-B"), ((cat_b, cat_a), b"rel-A")):
    out = os.path.join(d, "overlap.h5")
    cp = merge(out, *order)
    m, _ = pl.read_catalogue(out)
    mid = [i for i, s in enumerate(m["galaxies/id_str"]) if 40 <= int(s.decode().split("_")[1]) < 80]
    rel = m["galaxies/release"]
    ok_in_both = [i for i in mid if not 50 <= int(m["galaxies/id_str"][i].decode().split("_")[1]) < 54
                  and m["galaxies/status"][i] == 1]
    fixed = [i for i in mid if 50 <= int(m["galaxies/id_str"][i].decode().split("_")[1]) < 54]
    tag = "merge %s then %s" % tuple(os.path.basename(x) for x in order)
    c.check(len(m["galaxies/id_str"]) == 120 and len(set(m["galaxies/id_str"])) == 120,
            "%s: 120 galaxies, each once (40 overlapping)" % tag)
    c.check(all(rel[i] == later for i in ok_in_both), "%s: overlapping ok rows come from the later input" % tag)
    c.check(all(m["galaxies/status"][i] == 1 and rel[i] == b"rel-B" for i in fixed),
            "%s: a row failed in A and ok in B is taken from B whatever the order" % tag)
    c.check("40 duplicate ids" in cp.stdout, "%s: the summary counts 40 duplicates (%s)" % (tag, cp.stdout.strip()))
    srcs = {b"rel-A": pl.read_catalogue(cat_a)[0], b"rel-B": pl.read_catalogue(cat_b)[0]}
    verbatim = True
    for i, gid in enumerate(m["galaxies/id_str"]):
        s = srcs[rel[i]]
        j = list(s["galaxies/id_str"]).index(gid)
        verbatim &= all(pl.same_values(m[k][i:i + 1], s[k][j:j + 1]) for k in s)
    c.check(verbatim, "%s: every row is its source catalogue's row, bit for bit, in every dataset" % tag)

# ---- generic datasets: a clumps group of per-galaxy arrays comes along ----
g1, g2 = os.path.join(d, "g1.h5"), os.path.join(d, "g2.h5")
shutil.copy(cats[0], g1)
shutil.copy(cats[1], g2)
for k, p in enumerate((g1, g2)):
    with h5py.File(p, "a") as f:
        n = f["galaxies/status"].shape[0]
        f.create_dataset("clumps/n", data=np.arange(n, dtype=np.int16) + 1000 * k, maxshape=(None,), chunks=True)
        f.create_dataset("clumps/boxes", data=np.random.default_rng(k).random((n, 5, 4), dtype=np.float32),
                         maxshape=(None, 5, 4), chunks=True)
        f["clumps"].attrs["note"] = "test group"
gm = os.path.join(d, "gm.h5")
merge(gm, g1, g2)
with h5py.File(gm, "r") as f, h5py.File(g1, "r") as f1, h5py.File(g2, "r") as f2:
    c.check(np.array_equal(f["clumps/n"][:], np.concatenate([f1["clumps/n"][:], f2["clumps/n"][:]]))
            and np.array_equal(f["clumps/boxes"][:], np.concatenate([f1["clumps/boxes"][:], f2["clumps/boxes"][:]]))
            and f["clumps"].attrs["note"] == "test group", "a later (N,) and (N,5,4) clumps group is merged row by row")

# ---- refusals, one line each ----
other = os.path.join(d, "other_model.h5")
import make_case  # noqa: E402  (tools/, on the path through mctest)
md = mctest.tmpdir()
make_case.write_case(md, "efficientnet_b0", size=64, chans=1, batch=1, kind="ckpt", seed=5, n_answers=98)
args = pl.run_args(sv, os.path.join(md, "model.ckpt"), other)
args[args.index("--manifest") + 1] = man_a
mctest.mpirun(1, [mctest.MORPHCAT] + args, timeout=600)
noemb = os.path.join(d, "noemb.h5")
run(man_a, noemb, "--embedding", "none")
bad = os.path.join(d, "nonrow.h5")
shutil.copy(cats[0], bad)
with h5py.File(bad, "a") as f:
    f.create_dataset("clumps/table", data=np.zeros((7, 3)))
pend = os.path.join(d, "pending.h5")
shutil.copy(cats[2], pend)
with h5py.File(pend, "a") as f:
    st = f["galaxies/status"][:]
    st[5:9] = 0
    f["galaxies/status"][:] = st
for inputs, want, what in (((cat_a, other), "model_sha256", "a different model"),
                           ((cat_a, noemb), "embedding_dtype", "different options (no embedding)"),
                           ((g1, cats[1]), "same columns", "different columns (a group only one input has)"),
                           ((bad, cats[1]), "not indexed by galaxy row", "a dataset not indexed by row"),
                           ((cats[0], pend), "pending", "pending rows")):
    out = os.path.join(d, "refused.h5")
    cp = merge(out, *inputs, check=False)
    lines = cp.stderr.strip().splitlines()
    c.check(cp.returncode == 1 and len(lines) == 1 and want in lines[0] and not os.path.exists(out)
            and not os.path.exists(out + ".tmp"),
            "refused: %s, one line, nothing written (%s)" % (what, lines))
cp = merge(os.path.join(d, "allowed.h5"), cats[0], pend, extra=["--allow-pending"])
m, _ = pl.read_catalogue(os.path.join(d, "allowed.h5"))
c.check((m["galaxies/status"] == 0).sum() == 4 and "4 pending" in cp.stdout, "--allow-pending keeps them, as pending")
c.finish()
