"""tests/pipeline_lib.py: shared set-up for the catalogue-job tests: a small synthetic survey (morphcat synth) and a
stand-in Zoobot checkpoint in the released layout (tools/make_case.py: EfficientNet-B0, greyscale, 98-answer
Dirichlet head, seeded weights), cached per test process. Not a test itself."""
import os

import h5py
import numpy as np

import mctest

_cache = {}


def survey(n=90, size=64, seed=3, broken=11, png_fraction=0.05):
    key = ("survey", n, size, seed, broken, png_fraction)
    if key not in _cache:
        d = mctest.tmpdir()
        mctest.run(["synth", "--out", d, "--n", str(n), "--size", str(size), "--seed", str(seed), "--broken", str(broken),
                    "--png-fraction", str(png_fraction)])
        _cache[key] = d
    return _cache[key]


def model(arch="efficientnet_b0", chans=1, answers=98):
    key = ("model", arch, chans, answers)
    if key not in _cache:
        import make_case

        d = mctest.tmpdir()
        make_case.write_case(d, arch, size=64, chans=chans, batch=1, kind="ckpt", seed=4, n_answers=answers)
        _cache[key] = os.path.join(d, "model.ckpt")
    return _cache[key]


def run_args(survey_dir, model_path, out, *extra):
    return ["run", "--manifest", os.path.join(survey_dir, "manifest.csv"), "--model", model_path, "--output", out,
            "--size", "64", "--batch", "4", "--progress-seconds", "1000", "--recipe", "gz_decals"] + list(extra)


def read_catalogue(path):
    """Every dataset of a catalogue as numpy arrays, plus the root attributes."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and not name.startswith("columns/"):
                out[name] = obj[:]
        f.visititems(visit)
        attrs = dict(f.attrs)
    return out, attrs


def same_values(a, b):
    """Equal arrays, NaN equal to NaN, bit for bit."""
    if a.dtype.kind in "fc":
        return a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))
    return a.shape == b.shape and np.array_equal(a, b)
