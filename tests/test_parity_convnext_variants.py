"""tests/test_parity_convnext_variants.py: morphcat forward matches tools/timm_ref.py on every ConvNeXt variant
(atto..nano with the 1x1-conv MLP, tiny..large with the Linear MLP, and each MLP form on the other kind of variant),
colour and greyscale, pytorch_model.bin and safetensors, 224 px and other square sizes (odd ones included). The Linear
path is also tied to a live reference: torchvision's convnext_tiny, remapped to timm's key names.
Big variants (small/base/large) run once each at a small size, batch 1, to keep the suite's time down.
"""
import collections
import sys

import mctest
import parity_lib

CASES = [
    # arch, size, chans, batch, kind, weight file passed instead of folder, conv_mlp override
    ("convnext_atto", 224, 3, 2, "bin", False, None),
    ("convnext_atto", 160, 1, 2, "safetensors", True, None),
    ("convnext_femto", 224, 1, 2, "bin", True, None),
    ("convnext_femto", 256, 3, 2, "safetensors", False, None),
    ("convnext_pico", 224, 3, 2, "safetensors", False, None),
    ("convnext_pico", 288, 1, 1, "bin", False, None),
    ("convnext_nano", 224, 3, 2, "bin", True, None),
    ("convnext_nano", 224, 1, 2, "safetensors", False, None),
    ("convnext_nano", 300, 3, 1, "bin", False, None),  # 75 -> 37 -> 18 -> 9: odd maps, floor in the 2x2 downsamples
    ("convnext_tiny", 224, 3, 2, "bin", False, None),
    ("convnext_tiny", 256, 1, 1, "safetensors", True, None),
    ("convnext_atto", 128, 3, 2, "bin", False, False),  # Linear MLP on conv_mlp dims
    ("convnext_tiny", 96, 3, 1, "safetensors", False, True),  # 1x1-conv MLP on tiny dims
    ("convnext_small", 96, 3, 1, "safetensors", False, None),
    ("convnext_base", 80, 1, 1, "bin", False, None),
    ("convnext_large", 64, 3, 1, "bin", True, None),
]


def torchvision_to_timm(tv_sd):
    """torchvision convnext_* state_dict -> timm key names: features.0 stem; features.1,3,5,7 stages' blocks
    (block.0 dw conv, block.2 LayerNorm, block.3/5 Linear, layer_scale (C,1,1) -> gamma (C)); features.2,4,6
    downsamples; classifier.0 -> head.norm (classifier.2, the Linear classifier, is dropped)."""
    out = collections.OrderedDict()
    sub = {"0": "conv_dw", "2": "norm", "3": "mlp.fc1", "5": "mlp.fc2"}
    for k, v in tv_sd.items():
        p = k.split(".")
        if p[0] == "classifier":
            if p[1] == "0":
                out["head.norm." + p[2]] = v
            continue
        f = int(p[1])
        if f == 0:
            out["stem.%s.%s" % (p[2], p[3])] = v
        elif f % 2 == 0:
            out["stages.%d.downsample.%s.%s" % (f // 2, p[2], p[3])] = v
        elif p[3] == "layer_scale":
            out["stages.%d.blocks.%s.gamma" % (f // 2, p[2])] = v.reshape(-1)
        else:
            out["stages.%d.blocks.%s.%s.%s" % (f // 2, p[2], sub[p[4]], p[5])] = v
    return out


def torchvision_live(c):
    """timm_ref's Linear-path ConvNeXt and morphcat both match torchvision's convnext_tiny run live."""
    import os

    import numpy as np
    import torch
    import torch.nn as nn
    import torchvision

    import make_case
    import timm_ref

    torch.manual_seed(7)
    tv = torchvision.models.convnext_tiny(weights=None)
    tv.classifier[2] = nn.Identity()
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():  # layer scales near 1 (torchvision inits 1e-6), norm affines near 1/0, nonzero biases
        for m in tv.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.copy_(0.02 * torch.randn(m.bias.shape, generator=g))
        for name, p in tv.named_parameters():
            if name.endswith("layer_scale"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
    tv.eval()
    sd = torchvision_to_timm(tv.state_dict())
    ours = timm_ref.create("convnext_tiny")
    timm_ref.load_strict(ours, sd)
    ours.eval()
    x_np, _ = make_case.make_inputs(2, 224, 3, seed=9)
    x = torch.from_numpy(x_np)
    with torch.inference_mode():
        ref = tv(x).numpy()
        mine = ours(x).numpy()
        ref64 = tv.double()(x.double()).float().numpy()
    err = mctest.rel_max_err(mine, ref)
    c.check(err <= 1e-5, "timm_ref convnext_tiny vs live torchvision convnext_tiny: rel max err %.3g (tol 1e-05)" % err)
    d = mctest.tmpdir()
    case = {"dir": d, "weights": os.path.join(d, "model.safetensors"), "input": os.path.join(d, "input.npy"),
            "expected": os.path.join(d, "expected_embedding.npy")}
    import json

    import safetensors_io

    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(make_case.config_json("convnext_tiny", ours), f)
    safetensors_io.save(sd, case["weights"], metadata={"format": "pt"})
    np.save(case["input"], x_np)
    np.save(case["expected"], ref64)
    parity_lib.check_case(c, "convnext_tiny from live torchvision 224px 3ch batch 2 safetensors", case)


def main():
    parity_lib.require_binary()
    import torch

    torch.set_num_threads(1)
    c = mctest.Checks()
    torchvision_live(c)
    for i, (arch, size, chans, batch, kind, by_file, conv_mlp) in enumerate(CASES):
        case = parity_lib.new_case(arch, size, chans, batch, kind, seed=200 + i, conv_mlp=conv_mlp)
        form = "" if conv_mlp is None else (" conv_mlp=%s" % conv_mlp)
        parity_lib.check_case(c, "%s%s %dpx %dch batch %d %s" % (arch, form, size, chans, batch, kind), case, by_file)
    c.finish()


if __name__ == "__main__":
    sys.exit(main())
