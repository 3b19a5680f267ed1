"""tools/make_case.py: writes one parity case folder for morphcat (weights in a released layout, input.npy, expected
outputs from tools/timm_ref.py or torchvision), importable by tests and usable from the command line.
It does not run morphcat and does not compare anything; cases go to a folder the caller chooses (never into git).

    /usr/bin/python3 tools/make_case.py OUT --arch convnext_nano --size 224 --chans 3 --batch 2 --kind bin
"""
import argparse
import collections
import json
import os
import sys
import time
import types

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
import timm_ref  # noqa: E402

KINDS = ("bin", "safetensors", "ckpt")
WEIGHT_FILE = {"bin": "pytorch_model.bin", "safetensors": "model.safetensors", "ckpt": "model.ckpt"}
REAL_IMAGES = ("decals_grz/example_a.png", "decals_grz/example_b.png", "skimage/hubble_deep_field.jpg")

# --------------------------------------------------------------------------------------------------------------------
# Inputs: real galaxy pixels (random crops of ../shared/realdata images), or synthetic galaxies when absent.


def shared_dir():
    """../shared as the tests find it (mctest.SHARED: env MC_SHARED, else beside the clone)."""
    try:
        import mctest

        return mctest.SHARED
    except ImportError:
        here = os.path.dirname(os.path.abspath(__file__))
        return os.environ.get("MC_SHARED") or os.path.join(here, "..", "..", "shared")


def _real_images():
    from PIL import Image

    root = os.path.join(shared_dir(), "realdata")
    paths = [os.path.join(root, p) for p in REAL_IMAGES]
    if not all(os.path.exists(p) for p in paths):
        return None
    return [Image.open(p).convert("RGB") for p in paths]


def _synthetic_galaxy(size, rng):
    """A Sersic-like blob (random index, axis ratio, angle, colour) plus a few faint companions and noise, in [0,1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    img = np.zeros((3, size, size))
    for k in range(1 + rng.integers(0, 4)):
        cx, cy = (0.5, 0.5) if k == 0 else rng.uniform(0.1, 0.9, 2)
        re = rng.uniform(0.05, 0.2) * (1.0 if k == 0 else 0.4)
        n = rng.uniform(0.5, 4.0)
        q, th = rng.uniform(0.3, 1.0), rng.uniform(0, np.pi)
        dx, dy = xx - cx, yy - cy
        u = dx * np.cos(th) + dy * np.sin(th)
        v = (-dx * np.sin(th) + dy * np.cos(th)) / q
        r = np.sqrt(u * u + v * v) / re
        prof = np.exp(-2.0 * n * (r ** (1.0 / n) - 1.0)) * rng.uniform(0.2, 1.0) * (1.0 if k == 0 else 0.5)
        img += prof[None] * rng.uniform(0.5, 1.0, 3)[:, None, None]
    img = np.arcsinh(3 * img) / np.arcsinh(3 * max(img.max(), 1e-6))
    img += rng.normal(0, 0.03, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def make_inputs(n, size, chans, seed):
    """(n, chans, size, size) float32 in [0,1] and a description of where the pixels came from.
    Real: a random square crop (40-100% of the short side) of one of the real images, PIL bilinear resize, /255.
    Greyscale: the unweighted channel mean (Zoobot 1.x's convention)."""
    rng = np.random.default_rng(seed)
    ims = _real_images()
    out = np.empty((n, 3, size, size), np.float32)
    if ims is None:
        for i in range(n):
            out[i] = _synthetic_galaxy(size, rng)
        src = "synthetic galaxies (../shared/realdata absent)"
    else:
        from PIL import Image

        for i in range(n):
            im = ims[rng.integers(0, len(ims))]
            w, h = im.size
            side = int(min(w, h) * rng.uniform(0.4, 1.0))
            x0, y0 = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
            crop = im.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.BILINEAR)
            out[i] = np.asarray(crop, np.float32).transpose(2, 0, 1) / 255.0
        src = "real images: " + ", ".join(REAL_IMAGES)
    if chans == 1:
        out = out.mean(axis=1, keepdims=True)
    elif chans != 3:
        raise ValueError("chans must be 1 or 3")
    return np.ascontiguousarray(out, np.float32), src


# --------------------------------------------------------------------------------------------------------------------
# Weights: seeded, realistic (layer scales and norm affines near 1, BN statistics calibrated on real images).


def randomize(model, seed):
    """Seeded re-initialisation of norm affines and ConvNeXt layer scales; conv/linear keep PyTorch's default init
    (drawn at construction under the same seed). gamma ~ 1 +- 0.1, not timm's 1e-6, so no block vanishes."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
                m.weight.copy_(1.0 + 0.15 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
            if hasattr(m, "gamma") and isinstance(m.gamma, nn.Parameter):
                m.gamma.copy_(1.0 + 0.1 * torch.randn(m.gamma.shape, generator=g))
        for m in model.modules():
            last = _residual_last_bn(m)
            if last is not None:
                last.weight.mul_(RESIDUAL_BN_SCALE)


# The last BN of a residual branch gets its gamma scaled by this (trained ResNets/EfficientNets have small ones there).
# With gamma ~1 a deep random BN net is chaotic: ResNet-152's fp32 output then differs from fp64 by 6e-5 relative, too
# close to the parity tolerance; at 0.2 it is ~2e-6 and the output still depends on the input as much.
RESIDUAL_BN_SCALE = 0.2


def _residual_last_bn(m):
    kind = type(m).__name__
    if kind == "Bottleneck":
        return m.bn3
    if kind == "BasicBlock":
        return m.bn2
    if kind == "InvertedResidual" and m.has_skip:
        return m.bn3
    if kind == "DepthwiseSeparable" and m.has_skip:
        return m.bn2
    return None


def calibrate_bn(model, batches):
    """Running statistics = the exact average of batch statistics over the given batches (momentum=None, train mode)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for b in batches:
            model(torch.from_numpy(b))
    for m in bns:
        m.momentum = 0.1
    model.eval()


def build_model(arch, chans, seed, calib_size=None, conv_mlp=None, calib_images=8):
    """A seeded encoder; BN models are calibrated on calib_images real crops of calib_size px (other crops than any
    case input: the seed is offset)."""
    torch.manual_seed(seed)
    model = timm_ref.create(arch, in_chans=chans, conv_mlp=conv_mlp)
    randomize(model, seed)
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        x, _ = make_inputs(calib_images, calib_size or 224, chans, seed + 1000)
        calibrate_bn(model, [x[i : i + 4] for i in range(0, len(x), 4)])
    return model.eval()


def make_head(embedding, n_answers, seed):
    """A Linear(num_features, n_answers) whose logits on these embeddings spread over about +-2 (sigmoid not saturated),
    so the concentrations (1 + 100 sigmoid) vary with the input."""
    g = torch.Generator().manual_seed(seed + 2)
    e = torch.as_tensor(embedding, dtype=torch.float32)
    n, d = e.shape
    w = torch.randn(n_answers, d, generator=g)
    if n > 1:  # scale by the input-dependent part of the embedding, then centre the logits
        w *= 1.5 / (w @ (e - e.mean(0)).T).std().clamp_min(1e-12)
        b = -(w @ e.mean(0)) + 0.5 * torch.randn(n_answers, generator=g)
    else:  # one image: logits w.e ~ N(0, 1.5^2) over the answers
        w *= 1.5 / (w @ e[0]).std().clamp_min(1e-12)
        b = 0.5 * torch.randn(n_answers, generator=g)
    lin = nn.Linear(d, n_answers)
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)
    return lin


# --------------------------------------------------------------------------------------------------------------------
# A stand-in for zoobot's schema classes, so a .ckpt pickles objects the C loader cannot know and must skip.

_schemas = types.ModuleType("zoobot.shared.schemas")


class Answer:
    def __init__(self, text, question, index):
        self.text, self.question, self.index = text, question, index


class Question:
    def __init__(self, text, answer_texts, start):
        self.text = text
        self.answers = [Answer(text + a, self, start + i) for i, a in enumerate(answer_texts)]
        self.start_index, self.end_index = start, start + len(answer_texts) - 1
        self.asked_after = None


class Schema:
    def __init__(self, pairs, dependencies):
        self.question_answer_pairs = pairs
        self.dependencies = dependencies
        self.questions = []
        i = 0
        for q, answers in pairs.items():
            self.questions.append(Question(q, answers, i))
            i += len(answers)
        by_answer = {a.text: a for q in self.questions for a in q.answers}
        for q in self.questions:
            q.asked_after = by_answer.get(dependencies.get(q.text))
        self.label_cols = [a.text for q in self.questions for a in q.answers]


for _cls in (Answer, Question, Schema):
    _cls.__module__ = _schemas.__name__
    setattr(_schemas, _cls.__name__, _cls)
for _name in ("zoobot", "zoobot.shared"):
    sys.modules.setdefault(_name, types.ModuleType(_name))
sys.modules[_schemas.__name__] = _schemas

_DR5 = collections.OrderedDict([
    ("smooth-or-featured", ["_smooth", "_featured-or-disk", "_artifact"]), ("disk-edge-on", ["_yes", "_no"]),
    ("has-spiral-arms", ["_yes", "_no"]), ("bar", ["_strong", "_weak", "_no"]),
    ("bulge-size", ["_dominant", "_large", "_moderate", "_small", "_none"]),
    ("how-rounded", ["_round", "_in-between", "_cigar-shaped"]), ("edge-on-bulge", ["_boxy", "_none", "_rounded"]),
    ("spiral-winding", ["_tight", "_medium", "_loose"]),
    ("spiral-arm-count", ["_1", "_2", "_3", "_4", "_more-than-4", "_cant-tell"]),
    ("merging", ["_none", "_minor-disturbance", "_major-disturbance", "_merger"]),
])
_DR5_DEPS = {"disk-edge-on": "smooth-or-featured_featured-or-disk", "has-spiral-arms": "disk-edge-on_no",
             "bar": "disk-edge-on_no", "bulge-size": "disk-edge-on_no", "how-rounded": "smooth-or-featured_smooth",
             "edge-on-bulge": "disk-edge-on_yes", "spiral-winding": "has-spiral-arms_yes",
             "spiral-arm-count": "has-spiral-arms_yes"}


def make_schema(n_answers):
    """GZ DECaLS DR5-style questions (34 answers), repeated with campaign suffixes and cut to n_answers."""
    pairs, deps = collections.OrderedDict(), {}
    total = 0
    for suffix in ("-dr5", "-dr12", "-dr8", "-x1", "-x2", "-x3", "-x4", "-x5"):
        for q, answers in _DR5.items():
            if total >= n_answers:
                break
            answers = answers[: n_answers - total]
            pairs[q + suffix] = answers
            total += len(answers)
            if q in _DR5_DEPS:
                dq, da = _DR5_DEPS[q].split("_", 1)
                deps[q + suffix] = dq + suffix + "_" + da
    assert total == n_answers, "n_answers too large for the generated schema"
    return Schema(pairs, deps)


# --------------------------------------------------------------------------------------------------------------------
# The case folder


def config_json(arch, model):
    """config.json as the Hub encoders carry it (inherited ImageNet metadata, as in ../shared/refdata goldens)."""
    first = {"c": "stem.0", "e": "conv_stem", "r": "conv1"}[arch[0]]
    cls = {"c": "head.fc", "e": "classifier", "r": "fc"}[arch[0]]
    return {
        "architecture": arch,
        "num_classes": 0,
        "num_features": int(model.num_features),
        "pretrained_cfg": {
            "input_size": [3, 224, 224],
            "interpolation": "bicubic",
            "crop_pct": 0.95,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "first_conv": first,
            "classifier": cls,
        },
    }


def forward(model, x, ref_dtype):
    """The reference output: float64 by default (the exact math, so a test measures only morphcat's error)."""
    if ref_dtype == "float64":
        import copy

        m = copy.deepcopy(model).double()
        with torch.inference_mode():
            return m(torch.from_numpy(x).double()).float().numpy()
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


def write_case(out, arch, size=224, chans=3, batch=2, kind="bin", seed=0, n_answers=98, conv_mlp=None,
               ref_dtype="float64", model=None, verbose=True):
    """Write a case folder and return a dict: dir, weights (file path), input, expected, expected_concentrations
    (ckpt only), model, source, seconds. model: reuse an already built encoder (then arch/chans must match it)."""
    t0 = time.time()
    if kind not in KINDS:
        raise ValueError("kind must be one of %s" % (KINDS,))
    os.makedirs(out, exist_ok=True)
    if model is None:
        model = build_model(arch, chans, seed, calib_size=size, conv_mlp=conv_mlp)
    x, src = make_inputs(batch, size, chans, seed + 7)
    emb = forward(model, x, ref_dtype)
    res = {"dir": out, "input": os.path.join(out, "input.npy"), "model": model, "source": src,
           "expected": os.path.join(out, "expected_embedding.npy")}
    np.save(res["input"], x)
    np.save(res["expected"], emb.astype(np.float32))
    sd = model.state_dict()
    wpath = os.path.join(out, WEIGHT_FILE[kind])
    if kind == "ckpt":
        head = make_head(emb, n_answers, seed)
        tree = timm_ref.ZoobotTree(model, n_answers)
        tree.head[1][0].load_state_dict(head.state_dict())
        conc = forward(nn.Sequential(tree.head[1]).eval(), emb, ref_dtype)
        res["expected_concentrations"] = os.path.join(out, "expected_concentrations.npy")
        np.save(res["expected_concentrations"], conc.astype(np.float32))
        ckpt = {
            "epoch": 49,
            "global_step": 37250,
            "pytorch-lightning_version": "2.1.0",
            "state_dict": tree.state_dict(),
            "hparams_name": "kwargs",
            "hyper_parameters": {
                "architecture_name": arch,
                "channels": chans,
                "dropout_rate": 0.2,
                "test_time_dropout": True,
                "schema": make_schema(n_answers),
                "question_answer_pairs_size": n_answers,
                "timm_kwargs": {"drop_path_rate": 0.2},
                "learning_rate": 1e-4,
                "betas": (0.9, 0.999),
                "scheduler_params": None,
            },
        }
        torch.save(ckpt, wpath)
    else:
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(config_json(arch, model), f, indent=2)
        if kind == "bin":
            torch.save(sd, wpath)
        else:
            safetensors_io.save(timm_ref.strip_batches_tracked(sd), wpath, metadata={"format": "pt"})
    res["weights"] = wpath
    res["seconds"] = time.time() - t0
    if verbose:
        spread = float(np.std(emb, axis=0).mean() / (np.abs(emb).max() + 1e-30)) if batch > 1 else float("nan")
        print("case %s: %s %dpx %dch batch %d %s, embedding %s (spread across batch %.3g of max), %s, %.1fs"
              % (out, arch, size, chans, batch, kind, emb.shape, spread, src, res["seconds"]))
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="case folder to write")
    ap.add_argument("--arch", required=True, choices=timm_ref.ARCHS)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--chans", type=int, default=3, choices=(1, 3))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--kind", default="bin", choices=KINDS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--answers", type=int, default=98, help="Dirichlet head size (ckpt only)")
    ap.add_argument("--conv-mlp", choices=("auto", "true", "false"), default="auto",
                    help="ConvNeXt MLP form: 1x1 convs (true) or Linear (false); auto = the variant's own")
    ap.add_argument("--ref-dtype", choices=("float64", "float32"), default="float64")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    conv_mlp = {"auto": None, "true": True, "false": False}[a.conv_mlp]
    write_case(a.out, a.arch, a.size, a.chans, a.batch, a.kind, a.seed, a.answers, conv_mlp, a.ref_dtype)


if __name__ == "__main__":
    main()
