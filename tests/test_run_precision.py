"""The catalogue's precision is part of its identity: a bf16 catalogue job (2 ranks) records precision bf16, resumes
only as bf16 (an fp32 resume is refused with one line naming the precision, changing nothing), cannot be merged with an
fp32 catalogue, and a release rerun with the other precision is refused; its vote fractions differ from the
fp32 job's only by bf16 rounding (accuracy itself: test_bf16_accuracy). An fp32 catalogue records fp32. Skips the bf16 part where AMX cannot be used, saying so."""
import os
import shutil

import h5py
import numpy as np

import mctest
import pipeline_lib as pl

c = mctest.Checks()
sv = pl.survey(n=40, broken=4)
model = pl.model()
tmp = mctest.tmpdir()

f32 = os.path.join(tmp, "f32.h5")
mctest.mpirun(2, [mctest.MORPHCAT] + pl.run_args(sv, model, f32), timeout=600)
with h5py.File(f32, "r") as f:
    c.check(f.attrs["precision"] == "fp32", "an fp32 job records precision fp32")
    frac32 = f["morphology/fraction"][:] if "morphology/fraction" in f else None

b16 = os.path.join(tmp, "bf16.h5")
cp = mctest.mpirun(2, [mctest.MORPHCAT] + pl.run_args(sv, model, b16, "--precision", "bf16"), check=False, timeout=600)
if cp.returncode != 0 and "needs AMX" in cp.stderr:
    c.check(cp.returncode == 1 and not os.path.exists(b16), "bf16 without AMX: exit 1 before creating the catalogue")
    shutil.rmtree(tmp, ignore_errors=True)
    why = [ln for ln in cp.stderr.splitlines() if "needs AMX" in ln]  # (mpirun adds its own banner after it)
    mctest.skip("bf16 is refused on this machine: " + why[0].strip())
c.check(cp.returncode == 0, "bf16 job exit 0 (%d) %s" % (cp.returncode, cp.stderr[-400:] if cp.returncode else ""))
with h5py.File(b16, "r") as f:
    c.check(f.attrs["precision"] == "bf16", "a bf16 job records precision bf16")
    st = f["galaxies/status"][:]
    frac16 = f["morphology/fraction"][:] if "morphology/fraction" in f else None
c.check(int((st == 1).sum()) == 36, "bf16 job: every good galaxy ok (%d of 40, 4 broken)" % int((st == 1).sum()))
if frac32 is not None and frac16 is not None:
    ok = st == 1
    d = float(np.nanmax(np.abs(frac16[ok] - frac32[ok])))
    finite = bool(np.isfinite(frac16[ok]).all() and (frac16[ok] >= 0).all() and (frac16[ok] <= 1).all())
    c.check(finite and 0 < d < 0.5, "bf16 vote fractions are fractions and were computed in bf16 (they differ from the "
                                     "fp32 job's, max %.4f; their accuracy is test_bf16_accuracy's)" % d)
else:
    c.check(False, "catalogues hold morphology/fraction")

before = os.stat(b16)
cp = mctest.run(pl.run_args(sv, model, b16, "--precision", "fp32"), check=False)
lines = cp.stderr.strip().splitlines()
c.check(cp.returncode == 1 and any("precision" in l and "bf16" in l and "fp32" in l for l in lines),
        "fp32 resume of a bf16 catalogue refused naming the precision (exit %d: %s)" % (cp.returncode, cp.stderr[-300:]))
after = os.stat(b16)
c.check(before.st_mtime_ns == after.st_mtime_ns and before.st_size == after.st_size, "the refused resume changed nothing")

cp = mctest.run(pl.run_args(sv, model, b16, "--precision", "bf16"), check=False)
c.check(cp.returncode == 0, "bf16 resume of a finished bf16 catalogue: exit 0 (%d)" % cp.returncode)

merged = os.path.join(tmp, "merged.h5")
cp = mctest.run(["merge", "--output", merged, f32, b16], check=False)
c.check(cp.returncode == 1 and "precision" in cp.stderr and not os.path.exists(merged),
        "merging fp32 and bf16 catalogues refused, naming the precision (exit %d: %s)" % (cp.returncode, cp.stderr[-300:]))

rr = os.path.join(tmp, "rerun.h5")
cp = mctest.run(["rerun", "--previous", b16, "--release", "DR2", "--manifest", os.path.join(sv, "manifest.csv"),
                 "--output", rr, "--model", model, "--size", "64", "--batch", "4", "--recipe", "gz_decals"], check=False)
c.check(cp.returncode == 1 and "precision" in cp.stderr,
        "an fp32 rerun of a bf16 release refused, naming the precision (exit %d: %s)" % (cp.returncode, cp.stderr[-300:]))
shutil.rmtree(tmp, ignore_errors=True)
c.finish()
