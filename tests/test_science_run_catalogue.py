"""The science commands on a catalogue `morphcat run` wrote (synthetic survey with broken files, stand-in Zoobot
model, float16 embeddings): pca fit on its ok rows matches sklearn's PCA (components sign-aligned and mean within
1e-4); its files are what `morphcat run --pca/--pca-mean` takes, and that run's embedding/pca column (float32
embeddings) equals `pca apply`'s projection of its embeddings within 1e-4; similar on it equals NearestNeighbors (distances within 1e-5)."""
import csv
import os
import shutil

import h5py
import numpy as np
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

import mctest
import pipeline_lib as pl

c = mctest.Checks()
sv = pl.survey(n=60, size=64, seed=12, broken=11)
model = pl.model()
d = mctest.tmpdir()
cat = os.path.join(d, "cat.h5")
mctest.run(pl.run_args(sv, model, cat, "--embedding", "f16"), timeout=600)
with h5py.File(cat, "r") as f:
    st = f["galaxies/status"][:]
    ok = st == 1
    X = f["embedding/features"][:][ok].astype(np.float64)
    ids = f["galaxies/id_str"][:][ok].astype(str)
c.check(ok.sum() >= 30 and (~ok).sum() >= 5, "the run's catalogue has ok and failed rows (%d ok)" % ok.sum())

pca = os.path.join(d, "pca")
mctest.run(["pca", "fit", "--catalogue", cat, "--components", "5", "--out", pca])
comp, mean = np.load(os.path.join(pca, "components.npy")), np.load(os.path.join(pca, "mean.npy"))
ref = PCA(n_components=5, svd_solver="full").fit(X)
sign = np.sign(np.sum(comp * ref.components_, axis=1))
ce, me = np.max(np.abs(comp - sign[:, None] * ref.components_)), np.max(np.abs(mean - ref.mean_))
c.check(ce < 1e-4 and me < 1e-4, "pca fit on a run's float16 catalogue: components %.2e, mean %.2e (1e-4)" % (ce, me))

cat2 = os.path.join(d, "cat2.h5")
# float32 this time: the run projects the embedding before any float16 rounding, so compare on exact features
mctest.run(pl.run_args(sv, model, cat2, "--pca", os.path.join(pca, "components.npy"),
                       "--pca-mean", os.path.join(pca, "mean.npy")), timeout=600)
proj = os.path.join(d, "proj.h5")
mctest.run(["pca", "apply", "--catalogue", cat2, "--pca", pca, "--out", proj])
with h5py.File(cat2, "r") as f, h5py.File(proj, "r") as g:
    run_pca = f["embedding/pca"][:][f["galaxies/status"][:] == 1]
    P = g["embedding/features"][:]
    same_ids = list(g["galaxies/id_str"][:].astype(str)) == list(ids)
c.check(same_ids and P.shape == run_pca.shape and np.max(np.abs(P - run_pca)) < 1e-4,
        "morphcat run --pca/--pca-mean takes the fitted files; its embedding/pca equals pca apply's (%.2e)"
        % (np.max(np.abs(P - run_pca)) if P.shape == run_pca.shape else -1))

out = os.path.join(d, "sim.csv")
mctest.run(["similar", "--catalogue", cat, "--id", ids[0] + "," + ids[5], "--k", "6", "--output", out])
got = [r for r in csv.DictReader(open(out))]
dist, idx = NearestNeighbors(n_neighbors=6, algorithm="brute").fit(X).kneighbors(X[[0, 5]])
gd = np.array([float(r["distance"]) for r in got]).reshape(2, 6)
c.check(np.max(np.abs(gd - dist)) <= 1e-5 * np.max(dist) and got[0]["id_str"] == ids[0] and got[6]["id_str"] == ids[5],
        "similar on the run's catalogue: distances equal NearestNeighbors' (1e-5), the query first")

shutil.rmtree(d)
c.finish()
