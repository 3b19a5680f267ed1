"""Catalogue job options end to end: float16 embeddings equal the float32 ones rounded (numpy's astype), a PCA
projection equals (embedding - mean) @ components.T computed here, options read from an INI file with the command
line winning, an encoder without a head writes embeddings only, and the effective configuration is recorded."""
import os

import h5py
import numpy as np

import mctest
import pipeline_lib as pl

c = mctest.Checks()
sv = pl.survey()
model = pl.model()
tmp = mctest.tmpdir()

base = os.path.join(tmp, "f32.h5")
mctest.mpirun(2, [mctest.MORPHCAT] + pl.run_args(sv, model, base), timeout=600)
with h5py.File(base, "r") as f:
    e32 = f["embedding/features"][:]
    ok = f["galaxies/status"][:] == 1

# PCA components and mean fitted here on the float32 embeddings
x = e32[ok].astype(np.float64)
mean = x.mean(axis=0)
_, _, vt = np.linalg.svd(x - mean, full_matrices=False)
comps = vt[:5].astype(np.float32)
cp_, mp_ = os.path.join(tmp, "pca.npy"), os.path.join(tmp, "pca_mean.npy")
np.save(cp_, comps)
np.save(mp_, mean.astype(np.float32))

ini = os.path.join(tmp, "job.ini")
with open(ini, "w") as f:
    f.write("[job]\nembedding = f16\npca = %s\npca-mean = %s\nbatch = 8\n" % (cp_, mp_))
out = os.path.join(tmp, "f16.h5")
# the INI says batch 8; the command line's --batch 4 (in run_args) wins, so units match the f32 run
cp = mctest.mpirun(2, [mctest.MORPHCAT] + pl.run_args(sv, model, out, "--config", ini), check=False, timeout=600)
c.check(cp.returncode == 0, "run with --config job.ini (exit %d) %s" % (cp.returncode, cp.stderr[-500:] if cp.returncode else ""))
with h5py.File(out, "r") as f:
    e16 = f["embedding/features"]
    c.check(e16.dtype == np.float16, "embedding stored as float16")
    c.check(np.array_equal(e16[:][ok], e32[ok].astype(np.float16)), "float16 embeddings = float32 ones rounded to nearest")
    pca = f["embedding/pca"][:]
    want = ((e32[ok].astype(np.float64) - mean.astype(np.float32)) @ comps.T.astype(np.float64))
    err = np.abs(pca[ok] - want).max() / np.abs(want).max()
    c.check(pca.shape == (len(ok), 5) and err < 1e-6, "PCA projection = (e - mean) @ C.T (rel err %.1e < 1e-6)" % err)
    c.check(np.isnan(pca[~ok]).all(), "failed rows have NaN projections")
    cfg = f.attrs["job_configuration"]
    c.check("embedding = f16" in cfg and "batch = 4" in cfg and "pca = " in cfg,
            "effective configuration recorded (INI values, command line winning): %r" % cfg[:200])
    c.check(f.attrs["unit_rows"] == "4" and f.attrs["pca_sha256"] != "none", "identity attributes: unit_rows, pca_sha256")

# an encoder without a head: embeddings only, no morphology group
enc = mctest.tmpdir()
import make_case  # noqa: E402

make_case.write_case(enc, "convnext_atto", size=64, chans=3, batch=1, kind="safetensors", seed=2)
out = os.path.join(tmp, "enc.h5")
cp = mctest.mpirun(1, [mctest.MORPHCAT] + pl.run_args(sv, enc, out), check=False, timeout=600)
c.check(cp.returncode == 0, "a Hub encoder folder (safetensors) runs (exit %d)" % cp.returncode)
if cp.returncode == 0:
    with h5py.File(out, "r") as f:
        c.check("morphology" not in f and "columns" not in f and f["embedding/features"].shape[1] == 320,
                "encoder only: embeddings (320) and no morphology")
        c.check(f.attrs["schema"] == "none" and f.attrs["model_head"] == "none", "attributes say there is no head")
c.finish()
