"""tests/test_bf16_accuracy_encoders2.py: --precision bf16 on MaxViT (maxvit_rmlp_small_rw_224: its attention
projections and MLPs take the bf16 product) and EfficientNetV2 (tf_efficientnetv2_s) keeps Galaxy Zoo vote fractions
close to fp32, by the speed issue's rule: on 16 real galaxies, max |fraction_bf16 - fraction_fp32| over every answer
and galaxy <= max(0.005, half of PyTorch's own bf16 error), PyTorch's error being that of the model and input cast
to bfloat16 (channels_last) against PyTorch fp32 on the same images. PyTorch here is tools/timm_ref2.py (timm
0.9.10's structure in torch; timm itself cannot be installed), which test_parity_encoders2 checks against timm's
goldens. Weights: the encoders2 goldens' (materialize.py, batch-norm statistics as timm's outputs were made with),
with a seeded 34-answer Dirichlet head (gz_decals_dr5) in a Lightning checkpoint. Skips without ../shared or AMX.
"""
import collections
import json
import os
import shutil
import subprocess
import sys

import mctest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
CASES = {"maxvit_rmlp_small_rw_224": "maxvit_rmlp_small_rw_224_st", "tf_efficientnetv2_s": "tf_efficientnetv2_s"}
N_GALAXIES = 16
FLOOR = 0.005


def main():
    enc2 = mctest.shared_path("refdata", "encoders2")
    sys.path.insert(0, os.path.dirname(enc2))
    import numpy as np
    import torch

    import make_case
    import materialize
    import timm_ref2

    torch.set_num_threads(1)
    c = mctest.Checks()
    with open(os.path.join(HERE, "..", "nn", "schemas", "gz_decals_dr5.json")) as f:
        questions = json.load(f)["questions"]
    n_answers = sum(len(q["answers"]) for q in questions)
    tmp = mctest.tmpdir()
    x, src = make_case.make_inputs(N_GALAXIES, 224, 3, seed=41)
    inp = os.path.join(tmp, "inputs.npy")
    np.save(inp, x)
    for seed, (arch, golden) in enumerate(CASES.items()):
        _, sd, _ = materialize.state_dict(os.path.join(enc2, golden))
        g = np.random.default_rng(500 + seed)
        enc = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
        net = timm_ref2._Module(timm_ref2.create(arch, dict(enc))).eval()
        with torch.inference_mode():
            emb = net(torch.from_numpy(x[:1]))
        dim = emb.shape[1]
        hw = torch.from_numpy((g.standard_normal((n_answers, dim)) * 0.03).astype(np.float32))
        hb = torch.from_numpy((g.standard_normal(n_answers) * 0.1).astype(np.float32))
        full = collections.OrderedDict(("encoder." + k, v) for k, v in enc.items())
        full["head.1.0.weight"], full["head.1.0.bias"] = hw, hb
        ckpt = os.path.join(tmp, arch + ".ckpt")
        torch.save({"state_dict": full, "hyper_parameters": {"architecture_name": arch, "channels": 3,
                                                             "question_answer_pairs_size": n_answers}}, ckpt)
        conc = {}
        for prec in ("fp32", "bf16"):
            out = os.path.join(tmp, "%s_%s.npy" % (arch, prec))
            p = subprocess.run([mctest.MORPHCAT, "forward", "--model", ckpt, "--input", inp, "--output", out,
                                "--head", "--precision", prec, "--batch", "8"], capture_output=True, text=True)
            if p.returncode != 0 and prec == "bf16" and "needs AMX" in p.stderr:
                mctest.skip("bf16 is refused here: " + p.stderr.strip())
            if p.returncode != 0:
                print(p.stderr)
                return 1
            conc[prec] = np.load(out)
        head = torch.nn.Linear(dim, n_answers)
        head.load_state_dict({"weight": hw, "bias": hb})
        t = torch.from_numpy(x)
        with torch.inference_mode():
            ref32 = (1 + 100 * torch.sigmoid(head(net(t)))).numpy()
            m16 = net.to(torch.bfloat16).to(memory_format=torch.channels_last)
            e16 = m16(t.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
            ref16 = (1 + 100 * torch.sigmoid(head.to(torch.bfloat16)(e16).float())).numpy()
        mctest.check_bf16_rule(c, arch, conc, {"fp32": ref32, "bf16": ref16}, questions, src, FLOOR)
    shutil.rmtree(tmp, ignore_errors=True)
    c.finish()


if __name__ == "__main__":
    sys.exit(main())
