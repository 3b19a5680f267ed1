"""Bad model files and bad inputs through the real binary: each gives one clear line naming the file and
the reason, and a nonzero exit; NaN/Inf images are reported and get NaN rows while the rest are computed.
Model files are made here with torch (a small ResNet-18 state_dict in the released Hub layout)."""
import json
import os
import shutil

import numpy as np
import torch
import torchvision

import mctest

c = mctest.Checks()
tmp = mctest.tmpdir()
torch.manual_seed(0)


def hub(name, sd, arch="resnet18", config=None):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    torch.save(sd, os.path.join(d, "pytorch_model.bin"))
    cfg = config if config is not None else json.dumps({"architecture": arch, "num_classes": 0, "num_features": 512})
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(cfg)
    return d


def one_line_error(args, must_contain, what):
    cp = mctest.run(args, check=False)
    lines = [l for l in cp.stderr.splitlines() if l.strip()]
    ok = cp.returncode != 0 and len(lines) == 1 and all(s in lines[0] for s in must_contain)
    c.check(ok, "%s -> exit %d, stderr %r" % (what, cp.returncode, cp.stderr.strip()[:300]))


base = torchvision.models.resnet18().state_dict()
base.pop("fc.weight")
base.pop("fc.bias")
good = hub("good", base)
cp = mctest.run(["info", "--model", good], check=False)
c.check(cp.returncode == 0 and "resnet18" in cp.stdout, "a good resnet18 Hub folder loads")

sd = dict(base)
sd["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
d = hub("misshaped", sd)
one_line_error(["info", "--model", d], ["pytorch_model.bin", "layer2.0.conv1.weight", "(128, 64, 5, 5)", "(128, 64, 3, 3)"],
               "mis-shaped key")

sd = dict(base)
sd.pop("layer3.1.bn2.running_var")
d = hub("missing", sd)
one_line_error(["info", "--model", d], ["pytorch_model.bin", "missing key", "layer3.1.bn2.running_var"], "missing key")

sd = dict(base)
sd["layer5.0.conv1.weight"] = torch.zeros(3)
d = hub("extra", sd)
one_line_error(["info", "--model", d], ["pytorch_model.bin", "unexpected key", "layer5.0.conv1.weight"], "extra key")

sd = dict(base)
sd["layer5.0.bn1.num_batches_tracked"] = torch.tensor(0)
d = hub("extra_counter", sd)
one_line_error(["info", "--model", d], ["pytorch_model.bin", "layer5.0.bn1.num_batches_tracked"],
               "stray batch-norm counter of a layer the network lacks")

d = hub("unknown_arch", base, arch="vit_base_patch16_224")
one_line_error(["info", "--model", d], ["config.json", "unknown architecture", "vit_base_patch16_224"],
               "unknown architecture")

d = hub("wrong_arch", base, arch="resnet34")
one_line_error(["info", "--model", d], ["pytorch_model.bin", "resnet34"], "config says resnet34, weights are resnet18")

d = hub("bad_json", base, config='{"architecture": "resnet18", ')
one_line_error(["info", "--model", d], ["config.json", "not valid JSON"], "config.json that is not JSON")

sd = dict(base)
sd["conv1.weight"] = sd["conv1.weight"].clone()
sd["conv1.weight"][0, 0, 0, 0] = float("nan")
d = hub("nan_weight", sd)
one_line_error(["info", "--model", d], ["pytorch_model.bin", "conv1.weight", "NaN"], "NaN in the weights")

d = os.path.join(tmp, "truncated")
shutil.copytree(good, d)
wp = os.path.join(d, "pytorch_model.bin")
size = os.path.getsize(wp)
with open(wp, "r+b") as f:
    f.truncate(size // 2)
one_line_error(["info", "--model", d], ["pytorch_model.bin"], "truncated zip")

one_line_error(["info", "--model", os.path.join(tmp, "nowhere")], ["nowhere", "no such file"], "missing path")

# whole-model pickle (torch.save(model)) is refused with a hint, not unpickled
d = os.path.join(tmp, "whole_model")
os.makedirs(d)
torch.save(torchvision.models.resnet18(), os.path.join(d, "pytorch_model.bin"))
one_line_error(["info", "--model", os.path.join(d, "pytorch_model.bin")], ["pytorch_model.bin"], "whole pickled module")

# ---- inputs -------------------------------------------------------------------------------------------
rng = np.random.default_rng(1)
x = rng.random((3, 3, 64, 64), dtype=np.float32)
xp = os.path.join(tmp, "x.npy")
np.save(xp, x)
ref_out = os.path.join(tmp, "ref.npy")
# same batch size as the run below: OpenBLAS's sgemm rounds a row differently for different row counts
mctest.run(["forward", "--model", good, "--input", xp, "--output", ref_out, "--batch", "2"])
ref = np.load(ref_out)

xb = x.copy()
xb[1, 2, 10, 10] = np.nan
xb[1, 0, 0, 0] = np.inf
xbp = os.path.join(tmp, "xbad.npy")
np.save(xbp, xb)
outp = os.path.join(tmp, "out.npy")
cp = mctest.run(["forward", "--model", good, "--input", xbp, "--output", outp, "--batch", "2"], check=False)
out = np.load(outp) if os.path.exists(outp) else None
c.check(cp.returncode == 3, "NaN/Inf input: exit status 3 (partial), got %d" % cp.returncode)
c.check("image 1" in cp.stderr and "xbad.npy" in cp.stderr and "2 non-finite" in cp.stderr,
        "NaN/Inf input: the message names the file, the image and the count: %r" % cp.stderr.strip()[:200])
c.check(out is not None and np.isnan(out[1]).all(), "NaN/Inf input: its output row is NaN")
c.check(out is not None and np.array_equal(out[[0, 2]], ref[[0, 2]]),
        "NaN/Inf input: the other images' rows equal a clean run exactly")

x1 = rng.random((2, 1, 64, 64), dtype=np.float32)
x1p = os.path.join(tmp, "x1.npy")
np.save(x1p, x1)
one_line_error(["forward", "--model", good, "--input", x1p, "--output", outp], ["x1.npy", "1 channels", "takes 3"],
               "greyscale input to a colour model")
np.save(x1p, rng.random((2, 3, 16), dtype=np.float32))
one_line_error(["forward", "--model", good, "--input", x1p, "--output", outp], ["x1.npy", "3-D"], "3-D input")
np.save(x1p, rng.random((2, 3, 64, 64)).astype(np.int32))
one_line_error(["forward", "--model", good, "--input", x1p, "--output", outp], ["x1.npy", "dtype"], "integer input")
with open(x1p, "wb") as f:
    f.write(b"not an array")
one_line_error(["forward", "--model", good, "--input", x1p, "--output", outp], ["x1.npy", "not a .npy"], "not an npy")

cnx = os.path.join(tmp, "cnx")
os.makedirs(cnx)
import timm_ref  # noqa: E402  (tools/, the timm re-implementation)
m = timm_ref.create("convnext_atto")
torch.save(m.state_dict(), os.path.join(cnx, "pytorch_model.bin"))
with open(os.path.join(cnx, "config.json"), "w") as f:
    json.dump({"architecture": "convnext_atto", "num_classes": 0}, f)
np.save(x1p, rng.random((1, 3, 24, 24), dtype=np.float32))
one_line_error(["forward", "--model", cnx, "--input", x1p, "--output", outp], ["x1.npy", "too small", "convnext_atto"],
               "image too small for ConvNeXt")
one_line_error(["forward", "--model", good, "--input", xp, "--output", os.path.join(tmp, "no", "dir", "o.npy")],
               ["o.npy"], "unwritable output")
one_line_error(["forward", "--model", good, "--input", xp, "--output", outp, "--head"], ["--head", "no head"],
               "--head on an encoder-only file")
c.finish()
