"""tests/test_bf16_accuracy.py: --precision bf16 keeps Galaxy Zoo vote fractions close to fp32, for convnext_nano,
efficientnet_b0 and resnet50 as Zoobot tree checkpoints (seeded, batch norm calibrated on real galaxies, the 34-answer
gz_decals_dr5 head), on 16 real galaxies: max |fraction_bf16 - fraction_fp32| over every answer and galaxy must be
<= max(0.005, half of PyTorch's own bf16 error), where PyTorch's error is that of the model and input cast to
bfloat16 (channels_last) against PyTorch fp32 on the same images. Also: the fp32 path still matches PyTorch (1e-4),
and bf16 is refused with one line where AMX cannot be used (MORPHCAT_AMX=0). Skips where AMX is absent.
"""
import json
import os
import shutil
import subprocess
import sys

import mctest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))

ARCHS = os.environ.get("MC_BF16_ARCHS", "convnext_nano,efficientnet_b0,resnet50").split(",")
N_GALAXIES = 16
SEEDS = {"convnext_nano": 300, "efficientnet_b0": 301, "resnet50": 302}
FLOOR = 0.005


def torch_concentrations(case, x, bf16):
    import torch

    model = case["model"]
    sd = torch.load(case["weights"], map_location="cpu")["state_dict"]
    head = torch.nn.Linear(sd["head.1.0.weight"].shape[1], sd["head.1.0.weight"].shape[0])
    head.load_state_dict({"weight": sd["head.1.0.weight"], "bias": sd["head.1.0.bias"]})
    t = torch.from_numpy(x)
    with torch.inference_mode():
        if bf16:
            m = model.to(torch.bfloat16).to(memory_format=torch.channels_last)
            h = head.to(torch.bfloat16)
            e = m(t.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
            z = h(e).float()
            model.float()
        else:
            z = head(model(t))
    return (1.0 + 100.0 * torch.sigmoid(z)).numpy()


def main():
    exe = os.environ.get("MORPHCAT", os.path.join(HERE, "..", "morphcat"))
    if not os.path.exists(exe):
        print("morphcat binary missing: run make first")
        return 1
    import numpy as np
    import torch

    import make_case

    torch.set_num_threads(1)
    c = mctest.Checks()
    with open(os.path.join(HERE, "..", "nn", "schemas", "gz_decals_dr5.json")) as f:
        questions = json.load(f)["questions"]
    n_answers = sum(len(q["answers"]) for q in questions)
    tmp = mctest.tmpdir()
    probe = None
    for i, arch in enumerate(ARCHS):
        case = make_case.write_case(os.path.join(tmp, arch), arch, size=224, batch=N_GALAXIES, kind="ckpt",
                                    seed=SEEDS[arch], n_answers=n_answers, ref_dtype="float32")
        if probe is None:  # AMX present? the refusal line otherwise
            probe = subprocess.run([exe, "forward", "--model", case["weights"], "--input", case["input"], "--output",
                                    os.path.join(tmp, "probe.npy"), "--precision", "bf16", "--batch", "1"],
                                   capture_output=True, text=True)
            if probe.returncode != 0:
                if "needs AMX" in probe.stderr:
                    mctest.skip("bf16 is refused here: " + probe.stderr.strip())
                print(probe.stderr)
                return 1
            off = subprocess.run([exe, "forward", "--model", case["weights"], "--input", case["input"], "--output",
                                  os.path.join(tmp, "off.npy"), "--precision", "bf16"], capture_output=True, text=True,
                                 env=dict(os.environ, MORPHCAT_AMX="0"))
            lines = off.stderr.strip().splitlines()
            c.check(off.returncode == 1 and len(lines) == 1 and "MORPHCAT_AMX=0" in lines[0]
                    and not os.path.exists(os.path.join(tmp, "off.npy")),
                    "bf16 without AMX: exit 1, one line, nothing written (%r)" % off.stderr.strip())
        x = np.load(case["input"])
        conc = {}
        for prec in ("fp32", "bf16"):
            out = os.path.join(tmp, "%s_%s.npy" % (arch, prec))
            mctest.run(["forward", "--model", case["weights"], "--input", case["input"], "--output", out,
                        "--head", "--precision", prec, "--batch", "8"])
            conc[prec] = np.load(out)
        ref32 = torch_concentrations(case, x, bf16=False)
        ref16 = torch_concentrations(case, x, bf16=True)
        mctest.check_bf16_rule(c, arch, conc, {"fp32": ref32, "bf16": ref16}, questions, case["source"], FLOOR)
    shutil.rmtree(tmp, ignore_errors=True)
    c.finish()


if __name__ == "__main__":
    sys.exit(main())
