"""tests/test_detect_bf16.py: the clump detector with --precision bf16 (backbone, FPN, RPN conv and box head on AMX)
finds again what fp32 finds: on real galaxy images (synthetic without ../shared, said so) with the seeded, calibrated
reference detector (tools/frcnn_ref.py), at least 95% of the fp32 detections have a bf16 detection of the same label
with IoU >= 0.9, and matched scores differ by at most 0.02 (the speed issue's accuracy rule). The fp32 run itself is
test_detect_parity's business. Skips where AMX cannot be used, saying so."""
import os
import shutil
import sys

import numpy as np

import mctest

sys.path.insert(0, os.path.join(mctest.ROOT, "tools"))
from test_detect_parity import box_iou  # noqa: E402


def main():
    import torch

    import frcnn_ref as F

    torch.set_num_threads(1)
    c = mctest.Checks()
    tmp = mctest.tmpdir()
    real = os.path.join(mctest.SHARED, "realdata")
    if os.path.isdir(real):
        dec, hdf = os.path.join(real, "decals_grz"), os.path.join(real, "skimage", "hubble_deep_field.jpg")
        imgs = [F.load_image(os.path.join(dec, "example_a.png")), F.load_image(os.path.join(dec, "example_b.png")),
                F.load_image(hdf, (150, 200, 600, 500))]
        src = "real images"
    else:
        print("note: ../shared/realdata is absent: synthetic galaxy images are used instead")
        imgs = [F.load_image("synthetic:11:400x400"), F.load_image("synthetic:12:400x400")]
        src = "synthetic images"
    model = F.make_model(seed=23)
    weights = os.path.join(tmp, "det.pth")
    F.save(model, weights, prefix="module.")
    total = found = 0
    worst = 0.0
    refused = None
    for i, img in enumerate(imgs):
        x = np.ascontiguousarray(np.asarray(img, np.float32)[None])
        xin = os.path.join(tmp, "x%d.npy" % i)
        np.save(xin, x)
        out = {}
        for prec in ("fp32", "bf16"):
            o = os.path.join(tmp, "d%d_%s.npy" % (i, prec))
            cp = mctest.run(["detect", "--model", weights, "--input", xin, "--output", o, "--precision", prec],
                            check=False)
            if cp.returncode != 0 and prec == "bf16" and "needs AMX" in cp.stderr:
                refused = cp.stderr.strip()
                break
            c.check(cp.returncode == 0, "detect %s on image %d (exit %d) %s" % (prec, i, cp.returncode, cp.stderr[-300:]))
            out[prec] = np.load(o).reshape(-1, 7)
        if refused:
            break
        a, b = out["fp32"], out["bf16"]
        total += len(a)
        if len(a) and len(b):
            iou = box_iou(a[:, 3:7], b[:, 3:7])
            iou[a[:, 1][:, None] != b[:, 1][None, :]] = 0
            j = iou.argmax(axis=1)
            hit = iou[np.arange(len(a)), j] >= 0.9
            found += int(hit.sum())
            if hit.any():
                worst = max(worst, float(np.abs(a[hit, 2] - b[j[hit], 2]).max()))
        print("image %d: fp32 %d detections, bf16 %d" % (i, len(a), len(b)))
    shutil.rmtree(tmp, ignore_errors=True)
    if refused:
        mctest.skip("bf16 is refused on this machine: " + refused)
    c.check(total >= 20, "the reference detector makes enough detections to judge (%d)" % total)
    frac = found / max(total, 1)
    c.check(frac >= 0.95, "bf16 finds %.1f%% of fp32's %d detections again (same label, IoU >= 0.9; rule >= 95%%)"
            % (100 * frac, total))
    c.check(worst <= 0.02, "matched scores within 0.02 (max %.4f)" % worst)
    print("figure: detector bf16 vs fp32 on %s: %.1f%% of %d detections found again, max score change %.4f"
          % (src, 100 * frac, total, worst))
    c.finish()


if __name__ == "__main__":
    sys.exit(main())
