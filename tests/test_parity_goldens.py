"""tests/test_parity_goldens.py: morphcat forward matches real timm 0.9.10 on the four goldens in ../shared/refdata
(convnext_nano and efficientnet_b0 pytorch_model.bin, convnext_atto safetensors, a greyscale EfficientNet-B0 Lightning
checkpoint with a 98-answer Dirichlet head). Reads the read-only goldens in place; skips when ../shared is absent.
"""
import os
import shutil
import sys

import mctest
import parity_lib


def main():
    enc = mctest.shared_path("refdata", "encoders")
    parity_lib.require_binary()
    work = mctest.tmpdir()
    c = mctest.Checks()
    for folder, fname, by_file in [
        ("convnext_nano", "pytorch_model.bin", False),
        ("efficientnet_b0", "pytorch_model.bin", True),
        ("convnext_atto_safetensors", "model.safetensors", False),
        ("zoobot_tree_effnetb0_grey", "model.ckpt", True),
    ]:
        d = os.path.join(enc, folder)
        model = os.path.join(d, fname) if by_file else d
        label = "golden %s [%s]" % (folder, fname if by_file else "folder")
        inp = os.path.join(d, "input.npy")
        parity_lib.forward(c, label, model, inp, os.path.join(d, "embedding.npy"), workdir=work)
        if os.path.exists(os.path.join(d, "concentrations.npy")):
            parity_lib.forward(c, label, model, inp, os.path.join(d, "concentrations.npy"), head=True, workdir=work)
    if not c.failed:
        shutil.rmtree(work, ignore_errors=True)
    c.finish()


if __name__ == "__main__":
    sys.exit(main())
