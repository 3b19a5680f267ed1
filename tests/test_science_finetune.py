"""morphcat finetune / predict against sklearn on the same features: predicted probabilities of every ok row within
1e-4 of LogisticRegression with the same C (multinomial for three classes on raw float32 embeddings; binary for two
string classes on the PCA projection via --pca, which the head remembers); the printed k-fold accuracy equal to
sklearn's on the same stratified folds; --regression values within 1e-4 of Ridge(alpha=1/C). sklearn uses the same objective
solved by newton-cg at tol 1e-8 (its lbfgs stops early on its fixed ftol, ~6e-5 away in probability here), so both
sides sit at the optimum."""
import csv
import json
import os
import re
import shutil

import h5py
import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge

import mctest
import science_catalogue as sc

c = mctest.Checks()
d = mctest.tmpdir()
cat = os.path.join(d, "c.h5")
rng = np.random.default_rng(11)
n, D = 1500, 24
X = (rng.normal(size=(n, D)) * rng.uniform(0.5, 2.0, D)).astype(np.float32)
ids, status = sc.write(cat, n, D, "float32", seed=11, failed=20, features=X)
ok = np.flatnonzero(status == 1)
Xd = X.astype(np.float64)
lab = rng.choice(ok, 240, replace=False)
w_true = rng.normal(size=(3, D))
y3 = np.argmax(Xd[lab] @ w_true.T + rng.gumbel(size=(240, 3)) * 2.0, axis=1)  # noisy: a well-posed optimum


def write_labels(path, rows, labels):
    with open(path, "w") as f:
        f.write("id_str,label\n")
        for r, v in zip(rows, labels):
            f.write("%s,%s\n" % (ids[r], v))


def predictions(head, cols, *extra):
    out = os.path.join(d, "pred.csv")
    mctest.run(["predict", "--catalogue", cat, "--head", head, "--output", out] + list(extra))
    rows = list(csv.DictReader(open(out)))
    return [r["id_str"] for r in rows], np.array([[float(r[k]) for k in cols] for r in rows]), list(rows[0].keys())


def our_folds(y, k):
    """finetune's stratified folds: each class's labels, in file order, dealt to folds 0..k-1 in turn"""
    fold, seen = np.zeros(len(y), int), {}
    for i, v in enumerate(y):
        fold[i] = seen.get(v, 0) % k
        seen[v] = seen.get(v, 0) + 1
    return fold


def cv_accuracy(F, y, C, k):
    fold, right = our_folds(list(y), k), 0
    for f in range(k):
        m = LogisticRegression(C=C, tol=1e-8, max_iter=10000).fit(F[fold != f], y[fold != f])
        right += np.sum(m.predict(F[fold == f]) == y[fold == f])
    return right / len(y)


# ---- three classes, raw features ----
L3 = os.path.join(d, "l3.csv")
write_labels(L3, lab, y3)
H3 = os.path.join(d, "h3.json")
cp = mctest.run(["finetune", "--catalogue", cat, "--labels", L3, "--l2", "0.3", "--out", H3])
ref = LogisticRegression(C=0.3, solver="newton-cg", tol=1e-8, max_iter=1000).fit(Xd[lab], y3)
pid, P, cols = predictions(H3, ["p_0", "p_1", "p_2"])
c.check(cols == ["id_str", "p_0", "p_1", "p_2"], "predict: columns id_str,p_<class>...")
c.check(pid == [ids[i] for i in ok], "predict: every ok row, in catalogue order")
err = np.max(np.abs(P - ref.predict_proba(Xd[ok])))
c.check(err < 1e-4, "3 classes: probabilities within 1e-4 of LogisticRegression(C=0.3) (%.2e)" % err)
m = re.search(r"(\d+)-fold cross-validated accuracy ([0-9.]+)", cp.stdout)
acc = cv_accuracy(Xd[lab], y3, 0.3, 5)
c.check(m is not None and m.group(1) == "5" and abs(float(m.group(2)) - acc) < 1e-4,
        "3 classes: 5-fold accuracy %s equals sklearn's on the same folds (%.4f)" % (m and m.group(2), acc))

# ---- two string classes on the PCA projection ----
pca = os.path.join(d, "pca")
mctest.run(["pca", "fit", "--catalogue", cat, "--components", "6", "--out", pca])
comp, mean = np.load(os.path.join(pca, "components.npy")), np.load(os.path.join(pca, "mean.npy"))
Z = (X @ comp.T - (mean.astype(np.float64) @ comp.T.astype(np.float64)).astype(np.float32)).astype(np.float64)
y2 = np.where(Z[lab, 0] + rng.normal(size=240) * 1.0 > 0, "ring", "no_ring")
L2 = os.path.join(d, "l2.csv")
write_labels(L2, lab, y2)
H2 = os.path.join(d, "h2.json")
mctest.run(["finetune", "--catalogue", cat, "--labels", L2, "--pca", pca, "--l2", "2", "--out", H2])
head = json.load(open(H2))
c.check(head["classes"] == ["no_ring", "ring"] and head["pca"] == pca and len(head["coef"]) == 1,
        "binary head: sorted classes, one weight vector (as sklearn), the PCA folder remembered")
ref = LogisticRegression(C=2, solver="newton-cg", tol=1e-8, max_iter=1000).fit(Z[lab], y2)
pid, P, _ = predictions(H2, ["p_no_ring", "p_ring"])
err = np.max(np.abs(P - ref.predict_proba(Z[ok])))
c.check(err < 1e-4, "2 classes on PCA 6: probabilities within 1e-4 of LogisticRegression(C=2) (%.2e)" % err)

# ---- regression ----
yr = Xd[lab] @ rng.normal(size=D) + rng.normal(size=240) * 0.5
LR = os.path.join(d, "lr.csv")
write_labels(LR, lab, ["%.17g" % v for v in yr])
HR = os.path.join(d, "hr.json")
cp = mctest.run(["finetune", "--catalogue", cat, "--labels", LR, "--regression", "--l2", "0.1", "--out", HR])
ref = Ridge(alpha=10.0).fit(Xd[lab], yr)
pid, V, cols = predictions(HR, ["value"])
err = np.max(np.abs(V[:, 0] - ref.predict(Xd[ok])))
c.check(cols == ["id_str", "value"] and err < 1e-4, "--regression: values within 1e-4 of Ridge(alpha=1/C) (%.2e)" % err)
c.check("cross-validated R^2" in cp.stdout, "--regression prints a cross-validated R^2")

shutil.rmtree(d)
c.finish()
