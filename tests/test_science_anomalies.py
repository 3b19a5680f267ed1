"""morphcat anomalies against sklearn on the same features. Isolation forest: on a synthetic catalogue with 30
planted outliers (a random offset of 9 per feature, about two standard deviations of the signal: hard enough that
neither forest finds them all), the share of them in our top 30, averaged over seeds 0-2, is at least sklearn
IsolationForest's (100 trees, averaged over random_state 0-2) minus 0.05 (both are randomised, a run's share varies
by about 0.05, so they are compared by what they find, with that allowance); a seed reproduces its
ranking and another seed changes it. Gaussian process: with --kernel fixed, the posterior mean of every ok row
within 1e-4 of GaussianProcessRegressor(RationalQuadratic + WhiteKernel, optimizer=None) on StandardScaler
features; maximised hyperparameters: our log marginal likelihood no worse than sklearn's optimizer's by more than
1e-3 and each hyperparameter within 2% of sklearn's (a looser check: two optimisers reach one optimum to their own
tolerances); --next N: the N unlabelled rows of largest expected improvement (modAL's formula, tradeoff 0.5) under
sklearn's posterior with our hyperparameters, EI within 1e-4."""
import csv
import os
import re
import shutil

import h5py
import numpy as np
from scipy.stats import norm
from sklearn.ensemble import IsolationForest
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RationalQuadratic, WhiteKernel
from sklearn.preprocessing import StandardScaler

import mctest
import science_catalogue as sc

c = mctest.Checks()
d = mctest.tmpdir()
cat = os.path.join(d, "c.h5")
N_OUT = 30
ids, status = sc.write(cat, 4000, 32, "float16", seed=21, rank=6, outliers=N_OUT, failed=30, outlier_scale=9.0)
with h5py.File(cat, "r") as f:
    X = f["embedding/features"][:].astype(np.float64)
    planted = set(f.attrs["planted_outliers"].tolist())
ok = np.flatnonzero(status == 1)
out = os.path.join(d, "out.csv")


def ranking(*extra):
    cp = mctest.run(["anomalies", "--catalogue", cat, "--output", out] + list(extra))
    rows = list(csv.DictReader(open(out)))
    return [r["id_str"] for r in rows], np.array([float(r["score"]) for r in rows]), cp.stdout


# ---- isolation forest ----
idx = {s: i for i, s in enumerate(ids)}
found = []
for seed in range(3):
    rid, score, _ = ranking("--seed", str(seed))
    found.append(len(planted & {idx[s] for s in rid[:N_OUT]}) / N_OUT)
    if seed == 0:
        c.check(sorted(rid) == sorted(ids[i] for i in ok), "forest: every ok row ranked once, no failed row")
        c.check(bool(np.all(np.diff(score) <= 0)), "forest: most anomalous first (scores decreasing)")
        first = (rid, score)
ref = []
for rs in range(3):
    s = -IsolationForest(n_estimators=100, random_state=rs).fit(X[ok]).score_samples(X[ok])
    ref.append(len(planted & set(ok[np.argsort(-s)[:N_OUT]].tolist())) / N_OUT)
print("planted outliers in the top %d: ours %s (mean %.3f), sklearn %s (mean %.3f)"
      % (N_OUT, found, np.mean(found), ref, np.mean(ref)))
c.check(np.mean(found) >= np.mean(ref) - 0.05 and np.mean(ref) > 0.2, "forest finds the planted outliers at least as well as sklearn's "
        "IsolationForest (%.3f vs %.3f; the task is not trivial: sklearn's share > 0.2)" % (np.mean(found), np.mean(ref)))
again = ranking("--seed", "0")
c.check(again[0] == first[0] and np.array_equal(again[1], first[1]), "forest: the same seed gives the same ranking")
c.check(ranking("--seed", "1")[1].tolist() != first[1].tolist(), "forest: another seed gives another forest")

# ---- Gaussian process on PCA 10 (the paper's pipeline: PCA, StandardScaler, GP) ----
pca = os.path.join(d, "pca")
mctest.run(["pca", "fit", "--catalogue", cat, "--components", "10", "--out", pca])
comp, mean = np.load(os.path.join(pca, "components.npy")), np.load(os.path.join(pca, "mean.npy"))
Xf = X.astype(np.float32)
Z = (Xf @ comp.T - (mean.astype(np.float64) @ comp.T.astype(np.float64)).astype(np.float32)).astype(np.float64)
Zs = StandardScaler().fit(Z[ok]).transform(Z)
rng = np.random.default_rng(3)
lab = rng.choice(ok, 60, replace=False)
y = np.clip(np.round(2.5 + Zs[lab, 0] + 0.5 * Zs[lab, 1] + rng.normal(size=60) * 0.3), 0, 5)
L = os.path.join(d, "labels.csv")
with open(L, "w") as f:
    f.write("id_str,score\n")
    for r, v in zip(lab, y):
        f.write("%s,%d\n" % (ids[r], v))

rid, score, _ = ranking("--pca", pca, "--labels", L, "--kernel", "1.5,0.8,0.2")
gp = GaussianProcessRegressor(RationalQuadratic(1.5, 0.8) + WhiteKernel(0.2), optimizer=None).fit(Zs[lab], y)
mu = dict(zip((ids[i] for i in ok), gp.predict(Zs[ok])))
err = max(abs(mu[s] - v) for s, v in zip(rid, score))
c.check(len(rid) == len(ok) and err < 1e-4, "GP fixed kernel: posterior mean of every ok row within 1e-4 of "
        "GaussianProcessRegressor (%.2e)" % err)

rid, score, text = ranking("--pca", pca, "--labels", L)
m = re.search(r"length_scale=(\S+) alpha=(\S+) noise_level=(\S+) log_marginal_likelihood=(\S+)", text)
gp = GaussianProcessRegressor(RationalQuadratic() + WhiteKernel()).fit(Zs[lab], y)
kp = gp.kernel_.get_params()
ref_h = np.array([kp["k1__length_scale"], kp["k1__alpha"], kp["k2__noise_level"]])
ours_h = np.array([float(m.group(i)) for i in (1, 2, 3)])
print("hyperparameters: ours %s lml %s; sklearn %s lml %.6f" % (ours_h, m.group(4), ref_h,
                                                               gp.log_marginal_likelihood_value_))
c.check(float(m.group(4)) >= gp.log_marginal_likelihood_value_ - 1e-3, "GP optimised: log marginal likelihood at "
        "least sklearn's (within 1e-3)")
c.check(bool(np.all(np.abs(ours_h / ref_h - 1) < 0.02)), "GP optimised: length scale, alpha, noise within 2% of "
        "sklearn's optimizer")

rid, score, _ = ranking("--pca", pca, "--labels", L, "--next", "10")
g2 = GaussianProcessRegressor(RationalQuadratic(ours_h[0], ours_h[1]) + WhiteKernel(ours_h[2]), optimizer=None)
mu, sd = g2.fit(Zs[lab], y).predict(Zs[ok], return_std=True)
imp = mu - y.max() - 0.5
ei = imp * norm.cdf(imp / sd) + sd * norm.pdf(imp / sd)
unl = np.array([i not in set(lab.tolist()) for i in ok])
order = np.argsort(-ei[unl])[:10]
ref_ids, ref_ei = [ids[i] for i in ok[unl][order]], ei[unl][order]
c.check(len(rid) == 10 and not set(rid) & {ids[i] for i in lab}, "--next 10: ten unlabelled galaxies")
c.check(rid == ref_ids or bool(np.max(np.abs(score - ref_ei)) < 1e-4 and set(rid) <= set(ids[i] for i in ok[unl][
    np.argsort(-ei[unl])[:12]])), "--next 10: the largest expected improvements, best first")
c.check(bool(np.max(np.abs(score - ref_ei)) < 1e-4), "--next: expected improvement within 1e-4 (%.2e)"
        % np.max(np.abs(score - ref_ei)))

shutil.rmtree(d)
c.finish()
