"""tests/parity_lib.py: what the parity tests share: run `morphcat forward` on a case folder made by tools/make_case.py
and compare its .npy output with the reference, printing the measured error for every case.
Not a test itself (tests/run.sh runs only test_*); it makes no reference data of its own.
"""
import os
import shutil
import time

import mctest

TOL = 1e-4  # relative max error max|morphcat - ref| / max|ref|, fp32 engine vs PyTorch reference


def require_binary():
    if not os.path.exists(mctest.MORPHCAT):
        mctest.skip("%s is not built (make morphcat)" % mctest.MORPHCAT)


def forward(c, label, model_path, input_path, expected_path, head=False, tol=TOL, workdir=None):
    """Run morphcat forward [--head] and check its output against expected_path. Returns True when within tol."""
    import numpy as np

    workdir = workdir or os.path.dirname(input_path)
    out = os.path.join(workdir, "out_head.npy" if head else "out_embedding.npy")
    if os.path.exists(out):
        os.remove(out)
    args = ["forward", "--model", model_path, "--input", input_path, "--output", out] + (["--head"] if head else [])
    t0 = time.time()
    cp = mctest.run(args, check=False)
    secs = time.time() - t0
    what = "%s%s" % (label, " --head" if head else "")
    if cp.returncode != 0 or not os.path.exists(out):
        print("  command: morphcat " + " ".join(args))
        print("  " + (cp.stderr or cp.stdout).strip().replace("\n", "\n  "))
        return c.check(False, "%s: morphcat forward exited %d" % (what, cp.returncode))
    y = np.load(out)
    ref = np.load(expected_path)
    if y.shape != ref.shape or y.dtype != np.float32:
        return c.check(False, "%s: output %s %s, expected %s float32" % (what, y.shape, y.dtype, ref.shape))
    if not np.all(np.isfinite(y)):
        return c.check(False, "%s: output has non-finite values" % what)
    err = mctest.rel_max_err(y, ref)
    return c.check(err <= tol, "%s: %s rel max err %.3g (tol %g), morphcat %.1fs" % (what, ref.shape, err, tol, secs))


def check_case(c, label, case, by_file=False, keep=False):
    """Check a make_case.write_case result: embedding, and for a ckpt also the Dirichlet head. The case folder is
    deleted when every check passed (kept, and named, otherwise). by_file: pass the weight file, not the folder."""
    model_path = case["weights"] if by_file else case["dir"]
    label = "%s [%s]" % (label, "file " + os.path.basename(case["weights"]) if by_file else "folder")
    ok = forward(c, label, model_path, case["input"], case["expected"])
    if "expected_concentrations" in case:
        ok = forward(c, label, model_path, case["input"], case["expected_concentrations"], head=True) and ok
    if ok and not keep:
        shutil.rmtree(case["dir"], ignore_errors=True)
    elif not ok:
        print("  case kept for inspection: " + case["dir"])
    return ok


def new_case(arch, size, chans, batch, kind, seed, **kw):
    """A fresh case in a temp folder (tools/make_case.write_case)."""
    import make_case

    return make_case.write_case(mctest.tmpdir(), arch, size=size, chans=chans, batch=batch, kind=kind, seed=seed, **kw)
