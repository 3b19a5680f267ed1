"""bench/torch_bench.py: PyTorch's side of `make bench`: images/s of the reference encoders (tools/timm_ref.py's
convnext_nano and efficientnet_b0, torchvision resnet50) on one thread, eval + inference_mode, NCHW and channels_last.
Prints one JSON object per line (first the environment, then one per model/batch/format); it neither runs morphcat
nor compares results, and does not set OPENBLAS_CORETYPE (the caller does).

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/torch_bench.py --models convnext_nano --batches 1,8 --seconds 2
"""
import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))


def loaded_blas():
    """The BLAS shared objects actually mapped into this process (Debian switches libblas.so.3 by alternatives)."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1]
                base = os.path.basename(p)
                if "blas" in base or "lapack" in base:
                    libs.add(os.path.realpath(p))
    except OSError:
        pass
    return sorted(libs)


def environment(threads):
    import numpy as np
    import torch

    cfg = torch.__config__.show()
    blas = {}
    for ln in cfg.splitlines():  # "Build settings: K=V, K=V, ..." holds BLAS_INFO / LAPACK_INFO / USE_MKLDNN ...
        for kv in ln.split("Build settings:", 1)[-1].split(","):
            k, _, v = kv.strip().partition("=")
            if k in ("BLAS_INFO", "LAPACK_INFO", "USE_MKLDNN", "USE_OPENMP", "PERF_WITH_AVX512", "TORCH_VERSION"):
                blas[k] = v
    return {
        "impl": "torch",
        "kind": "environment",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "requested_threads": threads,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "blas_config": blas,
        "blas_loaded": loaded_blas(),
        "cpu": platform.processor() or platform.machine(),
    }


def build(name, weights=None):
    """The weights morphcat runs in the same bench (a Hub folder's pytorch_model.bin) when given, else realistic ones
    (tools/make_case.py: layer scales near 1, BN calibrated on real images at 96 px): with PyTorch's default init
    efficientnet_b0's activations decay to ~1e-12, which is neither what users run nor safe from subnormal slow
    paths."""
    import make_case

    if not weights:
        return make_case.build_model(name, 3, seed=0, calib_size=96)
    import torch
    import timm_ref
    import timm_ref2

    if name in timm_ref2.MAXVIT or name.replace("tf_", "", 1) in timm_ref2.V2:
        return timm_ref2.module(name, weights)

    model = timm_ref.create(name).eval()
    sd = torch.load(os.path.join(weights, "pytorch_model.bin"), map_location="cpu")
    model.load_state_dict(sd, strict=True)
    return model


def time_one(model, batch, size, fmt, seconds, min_iters, images=None):
    import torch

    if images is None:
        x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    else:  # the same galaxies morphcat's bench runs, cycled to the batch size
        x = torch.from_numpy(images[[i % len(images) for i in range(batch)]]).contiguous()
    if fmt == "bf16_channels_last":  # PyTorch's bf16 as a user casts it: model and input, channels_last
        model = model.to(torch.bfloat16).to(memory_format=torch.channels_last)
        x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    elif fmt == "channels_last":
        model = model.float().to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    else:
        model = model.float().to(memory_format=torch.contiguous_format)
    with torch.inference_mode():
        model(x)  # warm-up: first-call allocations and kernel selection
        n = 0
        t0, c0 = time.perf_counter(), time.process_time()
        while True:
            model(x)
            n += 1
            el = time.perf_counter() - t0
            if el >= seconds and n >= min_iters:
                break
    time_one.cpu = time.process_time() - c0  # CPU seconds of the timed loop (robust to a loaded machine)
    return n, el


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="convnext_nano,efficientnet_b0,resnet50")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--formats", default="nchw,channels_last,bf16_channels_last")
    ap.add_argument("--seconds", type=float, default=2.0, help="minimum timed duration per configuration")
    ap.add_argument("--min-iters", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--input", help="(N, 3, size, size) float32 .npy of images to cycle through (default: uniform "
                    "noise, on which torch 1.13's EfficientNet-B0 speed varies 2-8x with the values)")
    ap.add_argument("--weights", help="Hub folder whose pytorch_model.bin to load (one model only)")
    ap.add_argument("--keep-denormals", action="store_true",
                    help="leave subnormal floats on: uniform-noise inputs then make efficientnet_b0 3-6x slower in "
                         "torch 1.13; the default flushes them, PyTorch's best")
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(not a.keep_denormals)
    env = environment(a.threads)
    env["flush_denormal"] = not a.keep_denormals
    print(json.dumps(env), flush=True)
    images = None
    if a.input:
        import numpy as np

        images = np.load(a.input).astype(np.float32)
    for name in a.models.split(","):
        model = build(name, a.weights)
        for batch in [int(b) for b in a.batches.split(",")]:
            for fmt in a.formats.split(","):
                n, el = time_one(model, batch, a.size, fmt, a.seconds, a.min_iters, images)
                rec = {"impl": "torch", "precision": "bf16" if fmt.startswith("bf16") else "fp32", "model": name,
                       "batch": batch, "format": fmt, "images_per_s": round(n * batch / el, 3),
                       "images_per_cpu_s": round(n * batch / max(time_one.cpu, 1e-9), 3),
                       "size": a.size, "iters": n, "seconds": round(el, 3), "threads": a.threads,
                       "coretype": os.environ.get("OPENBLAS_CORETYPE")}
                print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
