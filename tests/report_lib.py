"""tests/report_lib.py: the small catalogue the report, export and mosaic tests read: a synthetic survey (morphcat synth:
FITS cubes with a TAN WCS, a few PNGs, broken files) catalogued by `morphcat run` on 2 ranks with the stand-in Zoobot
model (tests/pipeline_lib.py), so it has real morphology columns and real failures. Its clump table is written here
with h5py in the catalogue's layout (docs/catalogue.md: clumps/count, status, label, score, box, ra, dec and the
group's attributes), seeded: running the Faster R-CNN stand-in (tests/test_detect_catalog.py) costs minutes on 2
cores for what these tests check, which is how the commands read whatever clumps a catalogue holds. Not a test."""
import atexit
import os
import shutil
import tempfile

import h5py
import numpy as np

import mctest
import pipeline_lib

# every temporary folder of the test process (survey, catalogue, outputs, Chromium's profile) under one, removed at exit
tempfile.tempdir = tempfile.mkdtemp(prefix="mctest-report-")
atexit.register(shutil.rmtree, tempfile.tempdir, True)


def add_clumps(path, K=12, seed=5):
    """A clumps/ group in the catalogue's layout: for ok rows 0..K clumps by decreasing score with boxes inside the
    cutout, RA/Dec NaN for PNGs, one ok row whose detection failed (status 4, no clumps); failed rows status 0."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "r+") as f:
        st = f["galaxies/status"][:]
        files = [x.decode() for x in f["galaxies/file"][:]]
        n = len(st)
        count = np.zeros(n, np.uint16)
        cst = np.zeros(n, np.uint8)
        label = np.zeros((n, K), np.uint8)
        score = np.full((n, K), np.nan, np.float32)
        box = np.full((n, K, 4), np.nan, np.float32)
        ra = np.full((n, K), np.nan)
        dec = np.full((n, K), np.nan)
        ok = np.nonzero(st == 1)[0]
        for j, i in enumerate(ok):
            if j == 1:
                cst[i] = 4
                continue
            cst[i] = 1
            k = int(rng.integers(0, K + 1)) if j > 0 else K
            count[i] = k
            label[i, :k] = rng.integers(1, 3, k)
            score[i, :k] = np.sort(rng.uniform(0.3, 1.0, k))[::-1]
            xy = rng.uniform(20, 70, (k, 2))
            wh = rng.uniform(4, 18, (k, 2))
            box[i, :k] = np.concatenate([xy, xy + wh], axis=1)
            if not files[i].endswith(".png"):
                ra[i, :k] = f["galaxies/ra"][i] + rng.normal(0, 1e-3, k)
                dec[i, :k] = f["galaxies/dec"][i] + rng.normal(0, 1e-3, k)
        g = f.create_group("clumps")
        for name, v in (("count", count), ("status", cst), ("label", label), ("score", score), ("box", box),
                        ("ra", ra), ("dec", dec)):
            g[name] = v
        g.attrs["class_names"] = ["background", "clump", "odd_clump"]
        g.attrs["max_per_galaxy"] = str(K)


def catalogue(n=14, size=96, seed=31, broken=4):
    """(path of the catalogue, folder of the survey). Failures: the survey's broken files."""
    d = pipeline_lib.survey(n=n, size=size, seed=seed, broken=broken, png_fraction=0.2)
    out = os.path.join(mctest.tmpdir(), "cat.h5")
    r = mctest.mpirun(2, [mctest.MORPHCAT] + pipeline_lib.run_args(d, pipeline_lib.model(), out))
    print(r.stdout[-400:])
    add_clumps(out)
    return out, d


def read(path):
    """The catalogue's columns as numpy, read with h5py (the reference the exports are compared with)."""
    with h5py.File(path, "r") as f:
        t = {k: f["galaxies/" + k][:] for k in ("id_str", "ra", "dec", "status", "message", "release", "file")}
        for k in ("id_str", "message", "release", "file"):
            t[k] = np.array([x.decode() for x in t[k]])
        t["answers"] = [x.decode() if isinstance(x, bytes) else str(x) for x in f["morphology"].attrs["answer_columns"]]
        for suffix, ds in (("_fraction", "fraction"), ("_90pc-lower", "fraction_90pc_lower"),
                           ("_90pc-upper", "fraction_90pc_upper"), ("_proportion-asked", "proportion_asked"),
                           ("_dirichlet", "concentration")):
            t[suffix] = f["morphology/" + ds][:]
        if "clumps" in f:
            g = f["clumps"]
            t["clumps"] = {k: g[k][:] for k in ("count", "status", "label", "score", "box", "ra", "dec")}
            t["class_names"] = [x.decode() if isinstance(x, bytes) else str(x) for x in g.attrs["class_names"]]
        t["attrs"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    return t


def clump_rows(t):
    """The catalogue's clumps as one row per clump, in catalogue order: (row, slot) pairs."""
    cl = t["clumps"]
    K = cl["score"].shape[1]
    return np.nonzero(np.arange(K) < cl["count"][:, None])
