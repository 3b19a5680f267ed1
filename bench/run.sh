#!/bin/sh
# `make bench`: morphcat against Debian's PyTorch (OpenBLAS as libblas, one thread) in the same run, as
# ratios. For convnext_nano, efficientnet_b0 and resnet50 at 224 px, batch 1, 8 and 32: images/s per core
# for both (PyTorch in NCHW and channels_last; its best counts), effective GFLOP/s against a single-core
# sgemm measured in this run, and each process's peak RSS. Configurations alternate between the two
# implementations, each in a fresh process, and every configuration is measured twice (best kept), so
# machine noise hits both sides alike. Both run the same weight file on the same 32 galaxy images (speed
# depends on the values: torch 1.13's EfficientNet-B0 runs 2-8x slower on uniform noise than on galaxies,
# and both flush subnormals). Then bench/pipeline.sh: the catalogue job's galaxies/s against the encoder
# alone, and 2 ranks against 1; bench/avx2.sh: the x86-64-v3 build against PyTorch restricted to AVX2;
# bench/detect.sh: the clump detector (Faster R-CNN) against torchvision,
# seconds per image; bench/tables.sh: export and report on a million-row catalogue; and bench/queue.sh: the MPI
# work queue at hundreds of ranks (build/bench/queue.txt). Writes build/bench/results.jsonl and prints the table.
#
# OpenBLAS core type: SkylakeX kernels on CPUs with AVX-512 (twice Haswell's sgemm there), else Haswell;
# MC_BENCH_CORETYPE overrides. Both implementations run with the same one. Weights: the timm goldens in
# ../shared when present, else generated stand-ins of the same architecture (speed does not depend on values).
set -e
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
SECONDS_PER=${MC_BENCH_SECONDS:-3}
BATCHES=${MC_BENCH_BATCHES:-1 8 32}
MODELS=${MC_BENCH_MODELS:-convnext_nano efficientnet_b0 resnet50 maxvit_rmlp_small_rw_224 tf_efficientnetv2_s}
[ -f "${MC_SHARED:-../shared}/refdata/materialize.py" ] || MODELS=$(echo "$MODELS" | tr ' ' '\n' | grep -v -e maxvit -e efficientnetv2 | tr '\n' ' ')
REPEATS=${MC_BENCH_REPEATS:-2}
if [ -n "$MC_BENCH_CORETYPE" ]; then core=$MC_BENCH_CORETYPE
elif grep -q avx512f /proc/cpuinfo; then core=SkylakeX
else core=Haswell; fi
export OPENBLAS_CORETYPE=$core OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
SHARED=${MC_SHARED:-../shared}
out=build/bench
mkdir -p "$out/models"
res=$out/results.jsonl
: > "$res"
echo "bench: OPENBLAS_CORETYPE=$core, one thread per process, ${SECONDS_PER}s per configuration, best of $REPEATS"

model_dir() {
    case $1 in
    maxvit_rmlp_small_rw_224|tf_efficientnetv2_s) # the encoders2 goldens' weights, rebuilt once into build/
        case $1 in maxvit_*) g=maxvit_rmlp_small_rw_224_st ;; *) g=$1 ;; esac
        d=$out/models/$1
        if [ ! -f "$d/config.json" ]; then $PY "$SHARED/refdata/materialize.py" "$SHARED/refdata/encoders2/$g" "$d"; fi
        echo "$d"; return ;;
    convnext_nano|efficientnet_b0)
        if [ -f "$SHARED/refdata/encoders/$1/pytorch_model.bin" ]; then echo "$SHARED/refdata/encoders/$1"; return; fi ;;
    esac
    d=$out/models/$1
    if [ ! -f "$d/config.json" ]; then
        $PY tools/make_case.py "$d" --arch "$1" --size 64 --batch 1 --kind bin >/dev/null
    fi
    echo "$d"
}

rss() { # peak RSS in MB of the command, appended to its JSON line
    /usr/bin/time -f "%M" -o "$out/rss.tmp" "$@" > "$out/line.tmp"
    kb=$(tail -n 1 "$out/rss.tmp")
    while IFS= read -r line; do
        case "$line" in
        *images_per_s*) echo "${line%\}},\"process_peak_rss_mb\":$((kb / 1024))}" >> "$res" ;;
        *) echo "$line" >> "$res" ;;
        esac
    done < "$out/line.tmp"
}

# the same galaxy images for both: crops of ../shared/realdata, or synthetic galaxies without it
$PY -c "
import sys; sys.path.insert(0, 'tools')
import numpy as np, make_case
x, src = make_case.make_inputs(32, 224, 3, seed=5)
np.save('$out/inputs.npy', x)
print('bench: inputs are 32 images from', src)
"
./build/bench/bench_forward sgemm --seconds 2 >> "$res"
# morphcat bf16 (AMX) beside fp32 where this CPU and kernel allow it
PRECS=fp32
if ./build/bench/bench_forward forward --model "$(model_dir resnet50)" --batch 1 --seconds 0 --precision bf16 >/dev/null 2>"$out/amx.tmp"; then
    PRECS="fp32 bf16"
else
    echo "bench: morphcat bf16 not measured: $(tail -n 1 "$out/amx.tmp")"
fi
for r in $(seq "$REPEATS"); do
    for m in $MODELS; do
        dir=$(model_dir "$m")
        for b in $BATCHES; do
            for p in $PRECS; do
                rss ./build/bench/bench_forward forward --model "$dir" --batch "$b" --seconds "$SECONDS_PER" --label "$m" --input "$out/inputs.npy" --precision "$p"
            done
            rss $PY bench/torch_bench.py --models "$m" --batches "$b" --seconds "$SECONDS_PER" --weights "$dir" --input "$out/inputs.npy"
        done
        echo "bench: round $r, $m done"
    done
done
./build/bench/bench_forward sgemm --seconds 2 >> "$res"
[ -n "$MC_BENCH_SKIP_AVX2" ] || sh bench/avx2.sh "$res" "$out/inputs.npy" \
    $(for m in convnext_nano efficientnet_b0 resnet50; do echo "$MODELS" | grep -q -w "$m" && echo "$m=$(model_dir "$m")"; done)
[ -n "$MC_BENCH_SKIP_PIPELINE" ] || sh bench/pipeline.sh "$res"
[ -n "$MC_BENCH_SKIP_DETECT" ] || sh bench/detect.sh "$res"
[ -n "$MC_BENCH_SKIP_TABLES" ] || sh bench/tables.sh "$res"
[ -n "$MC_BENCH_SKIP_QUEUE" ] || sh bench/queue.sh build/bench/queue.jsonl | tee build/bench/queue.txt
$PY bench/report.py "$res" | tee "$out/report.txt"
