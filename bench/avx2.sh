#!/bin/sh
# The AVX2-only node's part of `make bench`: survey clusters also run nodes without AVX-512, where the fp32 path
# must stay ahead of PyTorch (target 1.2x). morphcat built for x86-64-v3 (AVX2, FMA; `make MC_ARCH=x86-64-v3` into
# build-avx2/) with OpenBLAS's Haswell kernels, against PyTorch with oneDNN restricted to AVX2
# (ONEDNN_MAX_CPU_ISA=AVX2) and the same OpenBLAS kernels, NCHW and channels_last (its best counts); PyTorch's
# bf16 is no peer there (no AMX). Same weights and galaxy images as the encoder part, one thread, configurations
# alternating in fresh processes, MC_BENCH_REPEATS rounds (default 2). Records carry "build": "x86-64-v3".
# Usage: bench/avx2.sh RESULTS.jsonl INPUTS.npy name=weights_dir ...   (called by bench/run.sh)
set -e
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
res=$1 inputs=$2
shift 2
if ! grep -q -w avx2 /proc/cpuinfo || ! grep -q -w fma /proc/cpuinfo; then
    echo "bench: the AVX2 build not measured: this CPU has no AVX2 and FMA"
    exit 0
fi
make -s -j2 B=build-avx2 BIN=build-avx2/morphcat MC_ARCH=x86-64-v3 build-avx2/bench/bench_forward
tag() { sed 's/^{/{"build": "x86-64-v3", /'; }
export OPENBLAS_CORETYPE=Haswell
for r in $(seq "${MC_BENCH_REPEATS:-2}"); do
    for pair; do
        m=${pair%%=*} dir=${pair#*=}
        for b in ${MC_BENCH_AVX2_BATCHES:-8}; do
            ./build-avx2/bench/bench_forward forward --model "$dir" --batch "$b" --seconds "${MC_BENCH_SECONDS:-3}" \
                --label "$m" --input "$inputs" | tag >> "$res"
            ONEDNN_MAX_CPU_ISA=AVX2 $PY bench/torch_bench.py --models "$m" --batches "$b" --formats nchw,channels_last \
                --seconds "${MC_BENCH_SECONDS:-3}" --weights "$dir" --input "$inputs" | tag >> "$res"
        done
    done
    echo "bench: AVX2 build, round $r done"
done
