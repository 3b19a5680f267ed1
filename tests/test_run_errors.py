"""Whole-run failures of the catalogue job stop before any work with one clear line (on rank 0 only, even
under mpirun with 2 ranks) and exit 1, leaving no catalogue behind: a model that does not load, an output that
cannot be written, a bad configuration, a head that does not fit the schema, a manifest that is not one, a
different job's catalogue at the output path."""
import os

import mctest
import pipeline_lib as pl

c = mctest.Checks()
sv = pl.survey()
model = pl.model()
tmp = mctest.tmpdir()


def whole_run_failure(extra_args, must, what, out=None, manifest=None, mdl=None):
    out = out or os.path.join(tmp, "x_%d.h5" % abs(hash(what)))
    args = pl.run_args(sv, mdl or model, out) + extra_args
    if manifest:
        args[args.index("--manifest") + 1] = manifest
    cp = mctest.mpirun(2, [mctest.MORPHCAT] + args, check=False, timeout=300)
    lines = [l for l in cp.stderr.splitlines() if l.startswith("morphcat:")]
    ok = cp.returncode in (1, 2) and len(lines) == 1 and all(m in lines[0] for m in must)
    c.check(ok, "%s -> exit %d, %r" % (what, cp.returncode, lines))
    return out


o = whole_run_failure([], ["nowhere.ckpt", "no such file"], "missing model", mdl=os.path.join(tmp, "nowhere.ckpt"))
c.check(not os.path.exists(o), "... and no catalogue is created")
whole_run_failure([], ["cat.h5"], "output folder does not exist", out=os.path.join(tmp, "no", "such", "cat.h5"))
whole_run_failure(["--recipe", "sepia"], ["sepia"], "unknown recipe")
whole_run_failure(["--schema", "gz2"], ["gz2", "98"], "head of 98 answers with the gz2 schema")
whole_run_failure(["--schema", "gz_nonexistent"], ["gz_nonexistent"], "unknown schema")
whole_run_failure(["--embedding", "f8"], ["f8"], "bad --embedding")
ini = os.path.join(tmp, "job.ini")
with open(ini, "w") as f:
    f.write("[job]\nbatch = 4\nnot_an_option = 3\n")
whole_run_failure(["--config", ini], ["job.ini", "not_an_option"], "unknown key in the INI file")
bad_manifest = os.path.join(tmp, "m.csv")
with open(bad_manifest, "w") as f:
    f.write("name,where\na,b.fits\n")
whole_run_failure([], ["m.csv", "id_str"], "manifest without the id_str column", manifest=bad_manifest)
dup = os.path.join(tmp, "dup.csv")
with open(dup, "w") as f:
    f.write("id_str,file_loc\na,x.fits\nb,y.fits\na,z.fits\n")
whole_run_failure([], ["dup.csv", "'a'"], "duplicate id_str", manifest=dup)
notcat = os.path.join(tmp, "notcat.h5")
with open(notcat, "w") as f:
    f.write("precious user data\n")
whole_run_failure([], ["notcat.h5"], "output path holds a non-HDF5 file", out=notcat)
c.check(open(notcat).read() == "precious user data\n", "... which is left untouched")
# a different job's catalogue (other batch size) is refused
first = os.path.join(tmp, "first.h5")
cp = mctest.mpirun(1, [mctest.MORPHCAT] + pl.run_args(sv, model, first), check=False, timeout=600)
c.check(cp.returncode == 0, "a first job completes")
args = pl.run_args(sv, model, first)
args[args.index("--batch") + 1] = "8"
cp = mctest.mpirun(2, [mctest.MORPHCAT] + args, check=False, timeout=300)
lines = [l for l in cp.stderr.splitlines() if l.startswith("morphcat:")]
c.check(cp.returncode == 1 and len(lines) == 1 and "unit_rows" in lines[0],
        "reopening with another --batch is refused: %r" % lines)
c.finish()
