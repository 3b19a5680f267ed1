"""bench/report.py: the table of `make bench` from build/bench/results.jsonl: per model and batch, morphcat's and
PyTorch's best images/s (PyTorch: best of NCHW and channels_last), their ratio, effective GFLOP/s as a share of the
sgemm measured in the same run, and peak RSS. It measures nothing itself."""
import collections
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
sgemm = max((r["gflops"] for r in rows if r.get("impl") == "sgemm"), default=float("nan"))
blas = next((r["blas"] for r in rows if r.get("impl") == "sgemm"), "?")
# best images/s per (model, batch) for each side: morphcat fp32, morphcat bf16, PyTorch fp32 (best of NCHW and
# channels_last), PyTorch bf16 (model and input cast, channels_last)
SIDES = [("morphcat", "fp32"), ("morphcat", "bf16"), ("torch", "fp32"), ("torch", "bf16")]
best_of = collections.defaultdict(dict)
for r in rows:
    if "images_per_s" not in r or str(r.get("model", "")).startswith("encoder_only") or r.get("build"):
        continue
    side = (r["impl"], r.get("precision", "fp32"))
    key = (r["model"], r["batch"])
    if r["images_per_s"] > best_of[side].get(key, {}).get("images_per_s", -1):
        best_of[side][key] = r
print("sgemm 2048^3, one thread: %.1f GFLOP/s (%s)" % (sgemm, blas))
print("%-16s %5s %10s %10s %10s %10s %9s %7s %9s %9s" % ("model", "batch", "ours fp32", "ours bf16", "torch fp32",
                                                         "torch bf16", "fp32 GF/s", "%sgemm", "RSS ours", "RSS torch"))
nan = float("nan")
models = sorted({k[0] for side in best_of.values() for k in side})
summary = {}
for m in models:
    batches = sorted({k[1] for side in best_of.values() for k in side if k[0] == m})
    top = {side: 0.0 for side in SIDES}
    for b in batches:
        v = {side: best_of[side].get((m, b), {}).get("images_per_s", nan) for side in SIDES}
        for side in SIDES:
            if v[side] == v[side]:
                top[side] = max(top[side], v[side])
        o = best_of[("morphcat", "fp32")].get((m, b), {})
        t = best_of[("torch", "fp32")].get((m, b), {})
        gf = o.get("gflops", nan)
        print("%-16s %5d %10.2f %10.2f %10.2f %10.2f %9.1f %6.0f%% %7.0fMB %7.0fMB" % (
            m, b, v[SIDES[0]], v[SIDES[1]], v[SIDES[2]], v[SIDES[3]], gf, 100 * gf / sgemm,
            o.get("process_peak_rss_mb", nan), t.get("process_peak_rss_mb", nan)))
    summary[m] = top
print()
TARGET_BF16 = {"efficientnet_b0": 1.5}
for m, top in sorted(summary.items()):
    of, ob, tf, tb = (top[s] or nan for s in SIDES)
    ours_best = max(x for x in (of, ob) if x == x) if (of == of or ob == ob) else nan
    need = TARGET_BF16.get(m, 2.0)
    print("%-16s fp32 %.2f vs PyTorch fp32 %.2f: %.2fx (target 1.5x)   best %.2f vs PyTorch bf16 %.2f: %.2fx (target %.1fx)"
          % (m, of, tf, of / tf, ours_best, tb, ours_best / tb, need))

# the AVX2-only node (bench/avx2.sh): the x86-64-v3 build against PyTorch with oneDNN restricted to AVX2
avx2 = collections.defaultdict(dict)
for r in rows:
    if r.get("build") == "x86-64-v3" and "images_per_s" in r:
        k = (r["model"], r["batch"])
        for unit in ("images_per_s", "images_per_cpu_s"):
            avx2[(r["impl"], unit)][k] = max(avx2[(r["impl"], unit)].get(k, 0.0), r[unit])
if avx2:
    print()
    print("AVX2 build (make MC_ARCH=x86-64-v3, OpenBLAS Haswell) against PyTorch fp32 with ONEDNN_MAX_CPU_ISA=AVX2 "
          "(best of NCHW, channels_last), images/s, best of the rounds:")
    for k in sorted(avx2[("morphcat", "images_per_s")]):
        o, t = avx2[("morphcat", "images_per_s")][k], avx2[("torch", "images_per_s")].get(k, nan)
        oc, tc = avx2[("morphcat", "images_per_cpu_s")][k], avx2[("torch", "images_per_cpu_s")].get(k, nan)
        print("  %-16s batch %2d: %.2f vs %.2f: %.2fx (per CPU second %.2f vs %.2f: %.2fx; target 1.2x)"
              % (k[0], k[1], o, t, o / t, oc, tc, oc / tc))

# the catalogue job (bench/pipeline.sh)
enc = collections.defaultdict(float)
for r in rows:
    if str(r.get("model", "")).startswith("encoder_only_"):
        m = r["model"][len("encoder_only_"):]
        enc[m] = max(enc[m], r["images_per_s"])
pipe = collections.defaultdict(float)
share = collections.defaultdict(list)
for r in rows:
    if r.get("impl") == "pipeline":
        k = (r["model"], r["survey"], r["ranks"])
        pipe[k] = max(pipe[k], r["galaxies_per_s"])
        if r.get("encoder_cpu_pct"):
            share[k].append(r["encoder_cpu_pct"])
if enc and pipe:
    print()
    print("catalogue job (stand-in checkpoints with the 98-answer head; 256 px g,r,z cubes -> 224 px; batch 16):")
    for m in sorted(enc):
        for survey in ("plain", "rice"):
            p1 = pipe.get((m, survey, 1))
            if not p1:
                continue
            print("  %-16s %-5s FITS: encoder alone %.1f images/s, FITS-to-catalogue on one core %.1f galaxies/s: "
                  "overhead %.1f%% (goal <= 10%%)" % (m, survey, enc[m], p1, 100 * (1 - p1 / enc[m])))
            sh = share.get((m, survey, 1))
            if sh:  # the same question asked inside each job, immune to the machine's drift between runs
                print("  %-16s %-5s FITS: in the job itself, %s%% of the CPU in the encoder: the rest is %s%% of the "
                      "encoder's" % (m, survey, "/".join("%.1f" % v for v in sh),
                                     "/".join("%.1f" % (100 * (100 - v) / v) for v in sh)))
            p2 = pipe.get((m, survey, 2))
            if p2:
                print("  %-16s %-5s FITS: 2 ranks %.1f galaxies/s = %.2fx one rank, on 2 cores" % (m, survey, p2, p2 / p1))

# the clump detector (bench/detect.sh)
det = {}
for r in rows:
    if r.get("model") == "fasterrcnn_resnet50_fpn":
        k = (r["impl"], r.get("precision", "fp32"))
        if k not in det or r["best"] < det[k]["best"]:
            det[k] = r
ours_d = [v for k, v in det.items() if k[0] == "morphcat"]
theirs_d = [v for k, v in det.items() if k[0] == "torchvision"]
if ours_d and theirs_d:
    print()
    print("clump detector (fasterrcnn_resnet50_fpn, 3 classes, %dx%d image -> 800 px, batch 1, one thread), s/image:" %
          tuple(ours_d[0]["input_hw"]))
    for (impl, prec), r in sorted(det.items()):
        extra = ""
        if impl == "morphcat":
            extra = " (%.0f GFLOP/s; arena %.0f MB, peak RSS %.0f MB)" % (r["gflops"], r["arena_mb"], r["peak_rss_mb"])
        else:
            extra = " (peak RSS %s MB)" % r.get("peak_rss_mb", "?")
        cpu = " (CPU %.2f s, median)" % r["cpu_s_per_image"] if "cpu_s_per_image" in r else ""
        print("  %-11s %-18s %.2f%s%s" % (impl, prec, r["best"], cpu, extra))
    bo, bt = min(r["best"] for r in ours_d), min(r["best"] for r in theirs_d)
    print("  morphcat's best is %.2fx the best torchvision configuration per image (target >= 2x)" % (bt / bo))
    cpu_o = [r["cpu_s_per_image"] for r in ours_d if "cpu_s_per_image" in r]
    cpu_t = [r["cpu_s_per_image"] for r in theirs_d if "cpu_s_per_image" in r]
    if cpu_o and cpu_t:  # CPU time: what a loaded or oversubscribed machine's wall clock hides
        print("  in CPU seconds per image (medians): %.2fx" % (min(cpu_t) / min(cpu_o)))
