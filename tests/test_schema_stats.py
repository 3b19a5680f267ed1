"""tests/test_schema_stats.py: Dirichlet-head summaries (nn/schema.c) and Beta quantiles (nn/beta.c) against numpy,
scipy and mpmath.

Protects: every built-in schema as the C loader sees it equals its nn/schemas/*.json; vote fractions, 90% intervals
and proportions asked from `build/tests/test_schema summarise` equal tools/zoobot_stats_ref.py (Zoobot's statistics
re-done with scipy.stats.beta.ppf) on the golden concentrations of ../shared (4 x 98, decals_all_campaigns; skipped
when ../shared is absent) and on seeded random concentrations in [1, 101] for every schema, extremes included; and
nn_beta_quantile in double precision against scipy over the head's range and against mpmath (50 digits) out to
p = 1e-300 and 1 - 1e-15, where scipy itself fails.

Tolerances: outputs are float32, so fractions and proportions asked within 1e-6 relative, interval ends within
2e-7 absolute and 1e-6 relative (a float32 ulp near 1 is 6e-8; measured: 6e-8 and 3e-8); the double quantile
within 1e-10 relative of scipy and of the mpmath root (measured: 2e-13).
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import mctest

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(mctest.ROOT, "tools"))
import zoobot_stats_ref  # noqa: E402

TOOL = os.path.join(mctest.ROOT, "build", "tests", "test_schema")
SCHEMAS = sorted(glob.glob(os.path.join(mctest.ROOT, "nn", "schemas", "*.json")))
C = mctest.Checks()
TMP = mctest.tmpdir()

FRAC_REL, QUANT_ABS, BETA_REL = 1e-6, 2e-7, 1e-10


def tool(*args, stdin=None):
    cp = subprocess.run([TOOL] + list(args), input=stdin, capture_output=True, text=True)
    if cp.returncode != 0:
        print("command failed:", TOOL, *args)
        print(cp.stdout, cp.stderr)
        raise SystemExit(1)
    return cp.stdout


def check_columns(path):
    """The C loader's columns, question indices and dependencies equal the JSON file."""
    doc = json.load(open(path))
    want = []
    for qi, q in enumerate(doc["questions"]):
        for a in q["answers"]:
            want.append("%s %d %s" % (q["name"] + a, qi, q["depends_on"] or "-"))
    got = tool("columns", doc["name"]).splitlines()
    C.check(got == want, "%s: C loader sees the %d columns and dependencies of %s" % (
        doc["name"], len(want), os.path.relpath(path, mctest.ROOT)))


def compare(label, schema_name, conc):
    """Run the C summary and the reference on conc (N, answers) float32; check every output."""
    conc = np.ascontiguousarray(conc, dtype=np.float32)
    inp = os.path.join(TMP, "%s.npy" % label)
    prefix = os.path.join(TMP, label)
    np.save(inp, conc)
    tool("summarise", schema_name, inp, prefix)
    ours = [np.load("%s_%s.npy" % (prefix, s)) for s in ("frac", "lo", "hi", "asked")]
    ref = zoobot_stats_ref.summarise(conc.astype(np.float64), zoobot_stats_ref.load_schema(schema_name))
    for name, o, r in zip(("frac", "lo", "hi", "asked"), ours, ref):
        if o.shape != r.shape:
            C.check(False, "%s: %s shape %s, want %s" % (label, name, o.shape, r.shape))
            return
        o = o.astype(np.float64)
        if name in ("frac", "asked"):
            err = float(np.max(np.abs(o - r) / np.abs(r)))
            C.check(err <= FRAC_REL, "%s: %s within %g relative (max %.2g)" % (label, name, FRAC_REL, err))
        else:
            err, rel = float(np.max(np.abs(o - r))), float(np.max(np.abs(o - r) / r))
            C.check(err <= QUANT_ABS and rel <= FRAC_REL, "%s: %s within %g absolute and %g relative (max %.2g, "
                    "%.2g)" % (label, name, QUANT_ABS, FRAC_REL, err, rel))


def random_concentrations(rng, n_answers, n=48):
    """Uniform in [1, 101] plus the extremes the head reaches: 1 + 100 sigmoid(z) for z = -+16 (1.0000113 and
    100.99999), whole galaxies at either end, and one answer at one end with the rest at the other."""
    lo, hi = 1 + 100 / (1 + np.exp(16.0)), 1 + 100 / (1 + np.exp(-16.0))
    c = rng.uniform(1.0, 101.0, size=(n, n_answers))
    c[0], c[1] = lo, hi
    c[2], c[3] = lo, hi
    c[2, ::3], c[3, ::3] = hi, lo
    c[4:8] = np.where(rng.random((4, n_answers)) < 0.5, lo, hi)
    c[8:12] = 1.0 + 100.0 * rng.random((4, n_answers)) ** 6  # most near 1
    return c


def check_quantiles():
    import scipy.stats as st
    rng = np.random.default_rng(20240601)
    # the head's range: a in [1, 101], b up to 101 * (answers - 1); log-uniform so both ends are covered
    n = 4000
    a = np.exp(rng.uniform(0.0, np.log(101.0), n))
    b = np.exp(rng.uniform(0.0, np.log(9100.0), n))
    p = np.where(rng.random(n) < 0.5, rng.choice([0.05, 0.95], n), rng.uniform(1e-6, 1 - 1e-6, n))
    a[:4], b[:4], p[:4] = 1.0001, 9000.0, [0.05, 0.95, 0.5, 1e-6]
    rows = np.stack([p, a, b], axis=1)
    got = run_quantiles(rows)
    want = st.beta.ppf(p, a, b)
    rel = np.abs(got - want) / want
    C.check(float(rel.max()) <= BETA_REL, "nn_beta_quantile within %g of scipy on %d draws over the head's range "
            "(max %.2g, median %.2g)" % (BETA_REL, n, rel.max(), np.median(rel)))

    # extremes, against the true root: the residual of the regularised incomplete beta at our x, computed with
    # mpmath's positive-term series I_x(a,b) = x^a (1-x)^b / (a B(a,b)) 2F1(a+b, 1; a+1; x), over the density
    try:
        import mpmath as mp
    except ImportError:
        print("mpmath is absent: extreme-p checks not run")
        return
    mp.mp.dps = 50
    cases = []
    for aa, bb in [(1.0001, 9000.0), (1.0001, 1.0001), (101.0, 101.0), (101.0, 1.0001), (1.0001, 101.0),
                   (2.5, 505.0), (50.0, 3.0)]:
        for pp in [1e-300, 1e-100, 1e-20, 1e-10, 0.05, 0.5, 0.95, 1 - 1e-10, 1 - 1e-15]:
            cases.append((pp, aa, bb))
    for _ in range(80):
        cases.append((10 ** rng.uniform(-300, -1), np.exp(rng.uniform(0, np.log(101))), np.exp(rng.uniform(0, 9.1))))
        cases.append((1 - 10 ** rng.uniform(-15, -1), np.exp(rng.uniform(0, np.log(101))), np.exp(rng.uniform(0, 9.1))))
    rows = np.array(cases)
    xs = run_quantiles(rows)

    def inc(x, a, b):
        return x ** a * (1 - x) ** b / (a * mp.beta(a, b)) * mp.hyp2f1(a + b, 1, a + 1, x)

    worst, where, edge = 0.0, None, 0
    for (pp, aa, bb), x in zip(rows, xs):
        if not (2.3e-308 < x < 1.0):
            edge += 1  # the root is 1 or below the normal range in double: nothing relative to measure
            C.check(x == 1.0 or 0.0 <= x <= 2.3e-308, "quantile at p=%.17g a=%g b=%g is %r (the root rounds to it)"
                    % (pp, aa, bb, x))
            continue
        P, A, B, X = (mp.mpf(float(v)) for v in (pp, aa, bb, x))
        pdf = mp.exp((A - 1) * mp.log(X) + (B - 1) * mp.log1p(-X) - mp.log(mp.beta(A, B)))
        r = inc(X, A, B) - P if pp <= 0.5 else (1 - P) - inc(1 - X, B, A)
        err = float(abs(r / pdf / X))
        if err > worst:
            worst, where = err, (pp, aa, bb)
    C.check(worst <= BETA_REL, "nn_beta_quantile within %g of the mpmath root on %d extreme cases (max %.2g at "
            "p=%.3g a=%.5g b=%.5g; %d at 1 or underflowing)" % (BETA_REL, len(rows) - edge, worst, *where, edge))


def run_quantiles(rows):
    text = "\n".join("%.17g %.17g %.17g" % tuple(r) for r in rows) + "\n"
    return np.array([float(v) for v in tool("quantile", stdin=text).split()])


def main():
    if not os.path.exists(TOOL):
        mctest.skip("%s is not built (make all)" % os.path.relpath(TOOL, mctest.ROOT))
    C.check(len(SCHEMAS) == 7, "seven built-in schema files (%d)" % len(SCHEMAS))
    for path in SCHEMAS:
        check_columns(path)

    golden = os.path.join(mctest.SHARED, "refdata", "encoders", "zoobot_tree_effnetb0_grey", "concentrations.npy")
    if os.path.exists(golden):
        compare("golden_decals_all_campaigns", "decals_all_campaigns", np.load(golden))
    else:
        print("skipped part: %s is absent (../shared is not beside this clone)" % golden)

    rng = np.random.default_rng(7)
    for path in SCHEMAS:
        name = json.load(open(path))["name"]
        n_answers = len(zoobot_stats_ref.load_schema(name).cols)
        compare("random_" + name, name, random_concentrations(rng, n_answers))

    check_quantiles()
    if not C.failed:
        shutil.rmtree(TMP, ignore_errors=True)
    C.finish()


if __name__ == "__main__":
    main()
