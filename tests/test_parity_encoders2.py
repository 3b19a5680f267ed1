"""tests/test_parity_encoders2.py: morphcat forward matches real timm 0.9.10 on every golden in
../shared/refdata/encoders2 (MaxViT rw / rmlp / tf, EfficientNetV2-S; pytorch_model.bin, model.safetensors and a
Lightning checkpoint with a Dirichlet head), embeddings and concentrations, relative max error <= 1e-4.
The weight files are rebuilt by the golden's own materialize.py into a temporary folder (never into the clone) and
removed afterwards; skips when ../shared is absent.
"""
import json
import os
import shutil
import subprocess
import sys

import mctest
import parity_lib


def materialize(case_dir, out):
    tool = mctest.shared_path("refdata", "materialize.py")
    cp = subprocess.run([sys.executable, tool, case_dir, out], capture_output=True, text=True)
    if cp.returncode != 0:
        print(cp.stdout + cp.stderr)
        raise SystemExit("materialize.py failed on %s" % case_dir)


def main():
    enc2 = mctest.shared_path("refdata", "encoders2")
    parity_lib.require_binary()
    cases = sorted(d for d in os.listdir(enc2) if os.path.exists(os.path.join(enc2, d, "spec.json")))
    c = mctest.Checks()
    c.check(len(cases) >= 5, "encoders2 holds %d goldens (%s)" % (len(cases), ", ".join(cases)))
    for case in cases:
        d = os.path.join(enc2, case)
        work = mctest.tmpdir()
        try:
            materialize(d, work)
            spec = json.load(open(os.path.join(d, "spec.json")))
            if spec["kind"] == "ckpt":
                model, label = os.path.join(work, "model.ckpt"), "%s [model.ckpt]" % case
            else:
                model, label = work, "%s [folder, %s]" % (case, spec["kind"])
            inp = os.path.join(d, "input.npy")
            parity_lib.forward(c, label, model, inp, os.path.join(d, "embedding.npy"), workdir=work)
            if os.path.exists(os.path.join(d, "concentrations.npy")):
                parity_lib.forward(c, label, model, inp, os.path.join(d, "concentrations.npy"), head=True,
                                   workdir=work)
            info = mctest.run(["info", "--model", model], check=False)
            arch = spec["architecture"]
            c.check(info.returncode == 0 and ("architecture: " + arch) in info.stdout,
                    "%s: morphcat info names %s" % (case, arch))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    c.finish()


if __name__ == "__main__":
    sys.exit(main())
