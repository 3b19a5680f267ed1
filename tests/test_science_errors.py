"""The science commands' whole-command errors (issue 12, item 6): an unknown id, a catalogue without embeddings, a
label naming no catalogue row (or a failed one), fewer classes than a classifier needs, and mismatched PCA
dimensions each stop the command with exit status 1 and one line on stderr naming the file and the object."""
import os
import shutil

import h5py
import numpy as np

import mctest
import science_catalogue as sc

c = mctest.Checks()
d = mctest.tmpdir()
cat = os.path.join(d, "c.h5")
ids, status = sc.write(cat, 300, 16, "float32", seed=4, failed=3)
bad_row = ids[np.flatnonzero(status != 1)[0]]
noemb = os.path.join(d, "noemb.h5")
with h5py.File(noemb, "w") as f:
    f.attrs["layout"] = "morphcat-catalogue-1"
    f.create_dataset("galaxies/id_str", data=np.array(ids, dtype="S12"))
    f.create_dataset("galaxies/status", data=status)
pca = os.path.join(d, "pca")
mctest.run(["pca", "fit", "--catalogue", cat, "--components", "4", "--out", pca])
other = os.path.join(d, "other.h5")
sc.write(other, 200, 20, "float32", seed=5)


def labels(name, rows):
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write("id_str,label\n")
        for i, v in rows:
            f.write("%s,%s\n" % (i, v))
    return p


def fails(args, *words, what):
    cp = mctest.run(args, check=False)
    lines = [l for l in cp.stderr.splitlines() if l.strip()]
    good = cp.returncode == 1 and len(lines) == 1 and all(w in lines[0] for w in words)
    c.check(good, "%s: exit 1 and one line naming %s (%r, exit %d)" % (what, ", ".join(words), cp.stderr.strip(),
                                                                        cp.returncode))


out = os.path.join(d, "out.csv")
fails(["similar", "--catalogue", cat, "--id", ids[0] + ",NO_SUCH_GALAXY"], cat, "NO_SUCH_GALAXY", "unknown id",
      what="similar, unknown id")
fails(["similar", "--catalogue", cat, "--id", bad_row], cat, bad_row, "corrupt_file",
      what="similar, a query whose row failed")
for cmd in (["pca", "fit", "--catalogue", noemb, "--components", "2", "--out", os.path.join(d, "p2")],
            ["similar", "--catalogue", noemb, "--id", ids[0]],
            ["anomalies", "--catalogue", noemb, "--output", out]):
    fails(cmd, noemb, "embedding/features", what="%s, a catalogue without embeddings" % cmd[0])
two = [(ids[i], "a" if i % 2 else "b") for i in range(20) if status[i] == 1]
fails(["finetune", "--catalogue", cat, "--labels", labels("l1.csv", two + [("NOT_IN_CAT", "a")]), "--out",
       os.path.join(d, "h.json")], "l1.csv", "NOT_IN_CAT", cat, what="finetune, a label naming no catalogue row")
fails(["finetune", "--catalogue", cat, "--labels", labels("l2.csv", two + [(bad_row, "a")]), "--out",
       os.path.join(d, "h.json")], "l2.csv", bad_row, what="finetune, a label naming a failed row")
fails(["anomalies", "--catalogue", cat, "--labels", labels("l3.csv", [(ids[0], 3), ("NOT_IN_CAT", 1)]), "--output",
       out], "l3.csv", "NOT_IN_CAT", what="anomalies, a label naming no catalogue row")
fails(["finetune", "--catalogue", cat, "--labels", labels("l4.csv", [(a, "ring") for a, _ in two]), "--out",
       os.path.join(d, "h.json")], "l4.csv", "one class", "ring", what="finetune, fewer classes than a classifier needs")
fails(["similar", "--catalogue", other, "--id", "G000000001", "--pca", pca], "components.npy", other,
      "mismatched PCA dimensions", what="similar, mismatched PCA dimensions")
fails(["finetune", "--catalogue", other, "--labels", labels("l5.csv", [("G%09d" % i, i % 2) for i in range(20)]),
       "--pca", pca, "--out", os.path.join(d, "h.json")], "components.npy", "mismatched PCA dimensions",
      what="finetune, mismatched PCA dimensions")
head = os.path.join(d, "head.json")
mctest.run(["finetune", "--catalogue", cat, "--labels", labels("l6.csv", two), "--out", head])
fails(["predict", "--catalogue", other, "--head", head, "--output", out], "head.json", other,
      "mismatched PCA dimensions", what="predict, a head for other features")
c.check(not os.path.exists(out) and not os.path.exists(out + ".tmp"), "no output file is left by a failed command")

shutil.rmtree(d)
c.finish()
