"""morphcat similar against sklearn's NearestNeighbors (brute force, float64) on the same features: many queries in
one pass, for the euclidean, cosine and manhattan metrics on the raw float32 embeddings and euclidean on the PCA
projection (--pca: sklearn gets the same projection, computed from the fitted files); neighbour distances equal
within 1e-5 (relative to the largest), the same neighbours except among ties (distances within 1e-6 of each
other), the query itself first even when an exact duplicate of it is in the catalogue; failed rows never appear."""
import csv
import os
import shutil

import h5py
import numpy as np
from sklearn.neighbors import NearestNeighbors

import mctest
import science_catalogue as sc

c = mctest.Checks()
d = mctest.tmpdir()
cat = os.path.join(d, "c.h5")
rng = np.random.default_rng(5)
n, D = 2500, 40
X = (rng.normal(size=(n, 6)) @ rng.normal(size=(6, D)) + rng.normal(size=(n, D)) * 0.4).astype(np.float32)
X[7] = X[3]  # an exact duplicate of query row 3: the query must still come first
ids, status = sc.write(cat, n, D, "float32", seed=5, failed=25, features=X)
status[3] = status[7] = status[11] = 1
with h5py.File(cat, "r+") as f:
    f["galaxies/status"][:] = status
    X = f["embedding/features"][:]  # what was stored (failed rows hold NaN)
ok = np.flatnonzero(status == 1)
queries = [3, 11] + list(rng.choice(ok, 10, replace=False))
qids = [ids[i] for i in queries]
K = 8


def ours(*extra):
    out = os.path.join(d, "sim.csv")
    mctest.run(["similar", "--catalogue", cat, "--id", ",".join(qids[:5]), "--id", ",".join(qids[5:]), "--k", str(K),
                "--output", out] + list(extra))
    res = {}
    for r in csv.DictReader(open(out)):
        res.setdefault(r["query_id"], []).append((int(r["rank"]), r["id_str"], float(r["distance"])))
    return res


def compare(res, F, metric, what):
    nn = NearestNeighbors(n_neighbors=K + 1, algorithm="brute", metric=metric).fit(F[ok])
    dist, idx = nn.kneighbors(F[queries])
    scale = max(np.max(dist), 1e-12)
    good_d = good_n = first = True
    for qi, q in enumerate(queries):
        got = res.get(ids[q], [])
        if [r[0] for r in got] != list(range(1, K + 1)):
            good_d = False
            continue
        first &= got[0][1] == ids[q]
        # sklearn may put the duplicate first: its distance list is what to match; membership up to ties
        ref_d = dist[qi, :K]
        gd = np.array([r[2] for r in got])
        good_d &= bool(np.max(np.abs(gd - ref_d)) <= 1e-5 * scale)
        ref_ids = [ids[ok[j]] for j in idx[qi]]
        cut = ref_d[-1]
        for rank, (_, gid, g) in enumerate(got):
            if gid in ref_ids[:K]:
                continue
            # a different neighbour is acceptable only if it ties with the reference at that distance
            good_n &= bool(abs(g - ref_d[rank]) <= 1e-6 * scale or abs(g - cut) <= 1e-6 * scale)
            good_n &= gid in set(ids[ok])
    c.check(good_d, "%s: %d queries, %d neighbours each, distances within 1e-5 of NearestNeighbors" % (what, len(queries), K))
    c.check(good_n, "%s: the same neighbours as NearestNeighbors (up to ties)" % what)
    c.check(first, "%s: each query is its own first neighbour (also beside an exact duplicate)" % what)


Xd = X.astype(np.float64)
for metric in ("euclidean", "cosine", "manhattan"):
    compare(ours("--metric", metric), Xd, metric, "raw, " + metric)

pca = os.path.join(d, "pca")
mctest.run(["pca", "fit", "--catalogue", cat, "--components", "10", "--out", pca])
comp, mean = np.load(os.path.join(pca, "components.npy")), np.load(os.path.join(pca, "mean.npy"))
# the same features as ours: the float32 projection (x C^T - mean C^T, as morphcat computes it)
Z = (X @ comp.T - (mean.astype(np.float64) @ comp.T.astype(np.float64)).astype(np.float32)).astype(np.float64)
compare(ours("--pca", pca), Z, "euclidean", "PCA 10, euclidean")

shutil.rmtree(d)
c.finish()
