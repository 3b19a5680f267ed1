"""tests/test_parity_efficientnet.py: morphcat forward matches tools/timm_ref.py's EfficientNet-B0, colour and greyscale,
at 224, 300 and 192 px, pytorch_model.bin and safetensors, and Lightning checkpoints with 34- and 98-answer Dirichlet
heads (--head), whose hyper_parameters pickle a class morphcat cannot know. BN statistics are calibrated on real images.
Does not cover tf_efficientnet* (TF 'same' padding, BN eps 1e-3).
"""
import sys

import mctest
import parity_lib

CASES = [
    # size, chans, batch, kind, weight file passed instead of folder, head answers (ckpt)
    (224, 3, 2, "bin", False, None),
    (224, 1, 2, "safetensors", True, None),
    (300, 3, 2, "safetensors", False, None),  # 150 -> 75 -> 38 -> 19 -> 10: odd maps through stride-2 convs
    (300, 1, 2, "bin", True, None),
    (192, 3, 3, "bin", False, None),
    (224, 1, 2, "ckpt", True, 34),
    (224, 3, 2, "ckpt", True, 98),
    (300, 1, 1, "ckpt", True, 98),
]


def main():
    parity_lib.require_binary()
    import torch

    torch.set_num_threads(1)
    c = mctest.Checks()
    for i, (size, chans, batch, kind, by_file, answers) in enumerate(CASES):
        kw = {"n_answers": answers} if answers else {}
        case = parity_lib.new_case("efficientnet_b0", size, chans, batch, kind, seed=300 + i, **kw)
        head = " head %d" % answers if answers else ""
        parity_lib.check_case(c, "efficientnet_b0 %dpx %dch batch %d %s%s" % (size, chans, batch, kind, head), case,
                              by_file)
    c.finish()


if __name__ == "__main__":
    sys.exit(main())
