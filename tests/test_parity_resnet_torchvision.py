"""tests/test_parity_resnet_torchvision.py: morphcat forward matches live torchvision ResNets (timm's ResNet keys are
torchvision's): ResNet-18 and -50 at 224 and 300 px, ResNet-34/101/152 at 224; seeded weights, BN calibrated on real images.
Does not test timm-only ResNet variants (resnet*d, ...) or a classifier head.
"""
import sys

import mctest
import parity_lib

CASES = [
    # arch, size, chans, batch, kind, weight file passed instead of folder
    ("resnet18", 224, 3, 2, "bin", False),
    ("resnet18", 300, 1, 2, "safetensors", True),
    ("resnet50", 224, 3, 2, "safetensors", False),
    ("resnet50", 300, 3, 2, "bin", True),
    ("resnet50", 224, 1, 1, "bin", False),
    ("resnet34", 224, 3, 2, "bin", False),
    ("resnet101", 224, 3, 1, "safetensors", False),
    ("resnet152", 224, 3, 1, "bin", True),
]


def main():
    parity_lib.require_binary()
    import torch

    torch.set_num_threads(1)
    c = mctest.Checks()
    for i, (arch, size, chans, batch, kind, by_file) in enumerate(CASES):
        case = parity_lib.new_case(arch, size, chans, batch, kind, seed=100 + i)
        parity_lib.check_case(c, "%s %dpx %dch batch %d %s" % (arch, size, chans, batch, kind), case, by_file)
    c.finish()


if __name__ == "__main__":
    sys.exit(main())
