"""The catalogue layer under 1, 2 and 3 MPI ranks (build/tests/test_catalog: create, interleaved independent
writes, kill-like close and resume, refusals), then the kept file read back with h5py the way a user reads it:
datasets, Zoobot-named column views, float16 embeddings, attributes."""
import os

import h5py
import numpy as np

import mctest

c = mctest.Checks()
prog = os.path.join(mctest.ROOT, "build", "tests", "test_catalog")
for n in (1, 2, 3):
    d = mctest.tmpdir()
    cp = mctest.mpirun(n, [prog, d], check=False, timeout=300)
    c.check(cp.returncode == 0, "%d rank(s): C checks pass (%s)" % (n, cp.stdout.strip().splitlines()[-1:]))
    if cp.returncode:
        print(cp.stdout, cp.stderr)
        continue
    with h5py.File(os.path.join(d, "cat.h5"), "r") as f:
        N, U, A = 37, 4, 3
        rows = np.arange(N)
        ids = f["galaxies/id_str"][:].astype(str)
        c.check(list(ids) == ["gal_%03d" % i for i in rows], "%d: id_str in manifest order, each once" % n)
        st = f["galaxies/status"][:]
        c.check(np.array_equal(st, np.where(rows % 11 == 5, 3, 1)), "%d: status column" % n)
        frac = f["morphology/fraction"][:]
        want = rows[:, None] * 100 + np.arange(A)[None, :] + 0.25
        c.check(np.array_equal(frac, want.astype(np.float32)), "%d: fractions (N, A) written by every rank" % n)
        c.check(np.array_equal(f["columns/q-one_b_fraction"][:], frac[:, 1]), "%d: Zoobot-named column view" % n)
        c.check(np.array_equal(f["columns/q-two_yes_proportion-asked"][:], (want[:, 2] + 0.75).astype(np.float32)),
                "%d: proportion-asked view" % n)
        e = f["embedding/features"]
        c.check(e.dtype == np.float16 and np.array_equal(e[:], ((rows % 7)[:, None] + 0.5 * np.arange(5)).astype(np.float16)),
                "%d: float16 embeddings read as numpy float16" % n)
        c.check(f.attrs["manifest_sha256"] == "sha-one" and f.attrs["layout"] == "morphcat-catalogue-1",
                "%d: attributes read as str" % n)
        c.check(list(f["morphology"].attrs["answer_columns"]) == ["q-one_a", "q-one_b", "q-two_yes"],
                "%d: answer column names" % n)
        c.check(f["galaxies/message"][5].decode() == "gal: truncated", "%d: message of a failed row" % n)
        c.check(np.allclose(f["galaxies/ra"][:], 10.0 + rows), "%d: ra from the WCS path" % n)
        c.check(list(f["galaxies/file_xxh3"][:].astype(str)) == ["%032d" % i for i in rows], "%d: file_xxh3" % n)
        c.check(set(f["galaxies/release"][:].astype(str)) == {"dr-test"}, "%d: release column" % n)
c.finish()
