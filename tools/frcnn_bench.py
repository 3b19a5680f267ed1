#!/usr/bin/python3
"""tools/frcnn_bench.py: time torchvision 0.14's fasterrcnn_resnet50_fpn full forward (eval, batch 1) on one image,
the baseline for the C port. One thread, torch.set_flush_denormal(True), one warm-up run, then N timed runs.

    tools/frcnn_bench.py --model DIR/model.pth --image IMG [--crop x0,y0,x1,y1] [--runs N] [--threads 1]

--model is a checkpoint from `tools/frcnn_ref.py make` (any prefix; see frcnn_ref.load); --image as in
frcnn_ref (PNG/JPEG, .npy CHW float32, or synthetic:SEED:HxW). A 400x400 image is upsampled to 800x800 by the
model's own transform, as Clump Scout's GZ2 inference does. Prints one JSON line:
{"model": "fasterrcnn_resnet50_fpn", "impl": "torchvision", "s_per_image": <median>, "best": <min>, "runs": N, ...}
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import frcnn_ref  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--crop", type=frcnn_ref._parse_crop, default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bf16", action="store_true", help="backbone and FPN cast to bfloat16 (torchvision's NMS and "
                    "RoI heads have no bf16 kernels here: the features are cast back to float32 for them)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    model = frcnn_ref.load(args.model)
    img = frcnn_ref.load_image(args.image, args.crop)
    if args.bf16:
        body = model.backbone.to(torch.bfloat16).to(memory_format=torch.channels_last)

        class Bf16Backbone(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner, self.out_channels = inner, inner.out_channels

            def forward(self, x):
                feats = self.inner(x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
                return type(feats)((k, v.float()) for k, v in feats.items())

        model.backbone = Bf16Backbone(body)
    times, cpu = [], []
    with torch.no_grad():
        out = model([img])[0]  # warm-up (also fills MultiScaleRoIAlign's cached scales)
        for _ in range(args.runs):
            t0, c0 = time.perf_counter(), time.process_time()
            out = model([img])[0]
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    print(json.dumps({"model": "fasterrcnn_resnet50_fpn", "impl": "torchvision",
                      "precision": "bf16 backbone+FPN" if args.bf16 else "fp32",
                      "s_per_image": round(statistics.median(times), 4), "best": round(min(times), 4),
                      "cpu_s_per_image": round(statistics.median(cpu), 4),
                      "runs": args.runs, "threads": args.threads, "input_hw": list(img.shape[1:]),
                      "detections": int(out["scores"].numel()), "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
