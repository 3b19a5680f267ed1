"""morphcat pca fit / apply against sklearn's PCA on the same features: on a float16 catalogue with failed rows
(only ok rows count), components sign-aligned within 1e-4, mean within 1e-4, explained variance within 1e-4
relative; two catalogues at once equal the PCA of their ok rows together; two MPI ranks give the one-process result
(within 1e-6: only the summation order differs); pca apply's projection equals (x - mean) @ components.T within
1e-4 for every ok row, ids in catalogue order; the files have the shapes `morphcat run --pca/--pca-mean` takes."""
import os
import shutil

import h5py
import numpy as np
from sklearn.decomposition import PCA

import mctest
import science_catalogue as sc

c = mctest.Checks()
d = mctest.tmpdir()
a, b = os.path.join(d, "a.h5"), os.path.join(d, "b.h5")
sc.write(a, 3000, 96, "float16", seed=1, failed=40, chunk=700)
sc.write(b, 1200, 96, "float16", seed=2, failed=5)


def ok_features(path):
    with h5py.File(path, "r") as f:
        ok = f["galaxies/status"][:] == 1
        return f["embedding/features"][:][ok].astype(np.float64), f["galaxies/id_str"][:][ok].astype(str)


Xa, ida = ok_features(a)
Xb, _ = ok_features(b)
K = 8


def load(out):
    return (np.load(os.path.join(out, "components.npy")), np.load(os.path.join(out, "mean.npy")),
            np.load(os.path.join(out, "explained_variance.npy")))


def compare(out, X, what):
    comp, mean, var = load(out)
    ref = PCA(n_components=K, svd_solver="full").fit(X)
    sign = np.sign(np.sum(comp * ref.components_, axis=1))
    c.check(comp.shape == (K, X.shape[1]) and comp.dtype == np.float32 and mean.shape == (X.shape[1],)
            and var.shape == (K,), "%s: components (K, D) float32, mean (D,), explained_variance (K,)" % what)
    ce = np.max(np.abs(comp - sign[:, None] * ref.components_))
    me = np.max(np.abs(mean - ref.mean_))
    ve = np.max(np.abs(var / ref.explained_variance_ - 1))
    print("%s: components %.2e, mean %.2e, variance (relative) %.2e" % (what, ce, me, ve))
    c.check(ce < 1e-4, "%s: components within 1e-4 of sklearn's (sign-aligned)" % what)
    c.check(me < 1e-4, "%s: mean within 1e-4" % what)
    c.check(ve < 1e-4, "%s: explained variance within 1e-4 (relative)" % what)
    return comp, mean


one = os.path.join(d, "pca1")
mctest.run(["pca", "fit", "--catalogue", a, "--components", str(K), "--out", one])
comp, mean = compare(one, Xa, "one catalogue")

both = os.path.join(d, "pca2")
mctest.run(["pca", "fit", "--catalogue", a, b, "--components", str(K), "--out", both])
compare(both, np.vstack([Xa, Xb]), "two catalogues")

ranks = os.path.join(d, "pca_mpi")
cp = mctest.mpirun(2, [mctest.MORPHCAT, "pca", "fit", "--catalogue", a, "--components", str(K), "--out", ranks],
                   timeout=300)
c.check("on 2 rank(s)" in cp.stdout, "pca fit under mpirun -n 2 splits the rows across 2 ranks")
cm, mm, vm = load(ranks)
c1, m1, v1 = load(one)
c.check(np.max(np.abs(cm - c1)) < 1e-6 and np.max(np.abs(mm - m1)) < 1e-6 and np.max(np.abs(vm / v1 - 1)) < 1e-6,
        "two MPI ranks give the one-process components, mean and variances (1e-6)")

proj = os.path.join(d, "proj.h5")
mctest.run(["pca", "apply", "--catalogue", a, "--pca", one, "--out", proj])
with h5py.File(proj, "r") as f:
    P = f["embedding/features"][:]
    pid = f["galaxies/id_str"][:].astype(str)
    st = f["galaxies/status"][:]
ref = (Xa - mean.astype(np.float64)) @ comp.T.astype(np.float64)
c.check(P.dtype == np.float32 and P.shape == (len(ida), K), "pca apply: (ok rows, K) float32")
c.check(list(pid) == list(ida) and np.all(st == 1), "pca apply: the ok rows' ids in catalogue order, status ok")
c.check(np.max(np.abs(P - ref)) < 1e-4, "pca apply: projection within 1e-4 of (x - mean) @ components.T (%.2e)"
        % np.max(np.abs(P - ref)))

shutil.rmtree(d)
c.finish()
