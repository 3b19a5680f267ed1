"""bench/report.py: the table of `make bench` from build/bench/results.jsonl: per model and batch, morphcat's and
PyTorch's best images/s (PyTorch: best of NCHW and channels_last), their ratio, effective GFLOP/s as a share of the
sgemm measured in the same run, and peak RSS. It measures nothing itself."""
import collections
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
sgemm = max((r["gflops"] for r in rows if r.get("impl") == "sgemm"), default=float("nan"))
blas = next((r["blas"] for r in rows if r.get("impl") == "sgemm"), "?")
ours = collections.defaultdict(dict)
theirs = collections.defaultdict(dict)
for r in rows:
    if "images_per_s" not in r or str(r.get("model", "")).startswith("encoder_only"):
        continue
    key = (r["model"], r["batch"])
    side = ours if r["impl"] == "morphcat" else theirs
    prev = side[key].get("images_per_s", -1)
    if r["images_per_s"] > prev:
        side[key] = r
print("sgemm 2048^3, one thread: %.1f GFLOP/s (%s)" % (sgemm, blas))
print("%-16s %5s %12s %12s %7s %9s %7s %10s %10s" % ("model", "batch", "morphcat/s", "pytorch/s", "ratio", "GFLOP/s",
                                                    "%sgemm", "RSS ours", "RSS torch"))
best = collections.defaultdict(lambda: [0.0, 0.0])
for key in sorted(ours):
    o, t = ours[key], theirs.get(key, {})
    ti = t.get("images_per_s", float("nan"))
    best[key[0]][0] = max(best[key[0]][0], o["images_per_s"])
    best[key[0]][1] = max(best[key[0]][1], ti)
    print("%-16s %5d %12.2f %12.2f %6.2fx %9.1f %6.0f%% %8.0fMB %8.0fMB" % (
        key[0], key[1], o["images_per_s"], ti, o["images_per_s"] / ti, o["gflops"], 100 * o["gflops"] / sgemm,
        o.get("process_peak_rss_mb", float("nan")), t.get("process_peak_rss_mb", float("nan"))))
print()
ok = True
for m, (a, b) in sorted(best.items()):
    print("%-16s best morphcat %.2f images/s vs best PyTorch %.2f images/s: %.2fx" % (m, a, b, a / b))
    ok &= a >= b
if best:
    print("target (>= 1.0x PyTorch's best on every model):", "met" if ok else "NOT met")

# the catalogue job (bench/pipeline.sh)
enc = collections.defaultdict(float)
for r in rows:
    if str(r.get("model", "")).startswith("encoder_only_"):
        m = r["model"][len("encoder_only_"):]
        enc[m] = max(enc[m], r["images_per_s"])
pipe = collections.defaultdict(float)
for r in rows:
    if r.get("impl") == "pipeline":
        k = (r["model"], r["survey"], r["ranks"])
        pipe[k] = max(pipe[k], r["galaxies_per_s"])
if enc and pipe:
    print()
    print("catalogue job (stand-in checkpoints with the 98-answer head; 256 px g,r,z cubes -> 224 px; batch 16):")
    for m in sorted(enc):
        for survey in ("plain", "rice"):
            p1 = pipe.get((m, survey, 1))
            if not p1:
                continue
            print("  %-16s %-5s FITS: encoder alone %.1f images/s, FITS-to-catalogue on one core %.1f galaxies/s: "
                  "overhead %.1f%% (goal < 15%%)" % (m, survey, enc[m], p1, 100 * (1 - p1 / enc[m])))
            p2 = pipe.get((m, survey, 2))
            if p2:
                print("  %-16s %-5s FITS: 2 ranks %.1f galaxies/s = %.2fx one rank, on 2 cores" % (m, survey, p2, p2 / p1))

# the clump detector (bench/detect.sh)
det = {}
for r in rows:
    if r.get("model") == "fasterrcnn_resnet50_fpn":
        impl = r["impl"]
        if impl not in det or r["best"] < det[impl]["best"]:
            det[impl] = r
if "morphcat" in det and "torchvision" in det:
    o, t = det["morphcat"], det["torchvision"]
    print()
    print("clump detector (fasterrcnn_resnet50_fpn, 3 classes, %dx%d image -> 800 px, batch 1, one thread):" %
          tuple(o["input_hw"]))
    print("  morphcat %.2f s/image (%.0f GFLOP/s, %.0f%% of sgemm; arena %.0f MB, peak RSS %.0f MB)" % (
        o["best"], o["gflops"], 100 * o["gflops"] / sgemm, o["arena_mb"], o["peak_rss_mb"]))
    print("  torchvision %.2f s/image (peak RSS %s MB)" % (t["best"], t.get("peak_rss_mb", "?")))
    print("  morphcat is %.2fx torchvision per image (target >= 1.0x: %s)" % (
        t["best"] / o["best"], "met" if t["best"] >= o["best"] else "NOT met"))
