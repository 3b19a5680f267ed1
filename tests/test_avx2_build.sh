#!/bin/sh
# The fp32 path on AVX2-only nodes: builds morphcat for x86-64-v3 (AVX2, FMA; no AVX-512) into build-avx2/ and runs
# fp32 parity tests against that binary with OpenBLAS's Haswell kernels: the live torchvision ResNet (needs nothing
# from ../shared), and the timm goldens of every family when ../shared is there (those skip themselves without it);
# and test_cutout_read and test_preprocess_reference, for the loader's code that has an AVX-512 form and a form without
# (RICE_1 sums, resampling).
# Only AMX code carries AVX-512, behind per-function target attributes, and runs only under --precision bf16 on a
# CPU with AMX; this test checks the rest builds and keeps parity without it. Speed: make bench (docs/bench.md).
cd "$(dirname "$0")/.." || exit 1
start=$(date +%s)
make -s -j2 B=build-avx2 BIN=build-avx2/morphcat MC_ARCH=x86-64-v3 build-avx2/morphcat >build/test-logs/avx2-build.log 2>&1 ||
    { tail -20 build/test-logs/avx2-build.log; echo "FAIL the x86-64-v3 build"; exit 1; }
echo "ok   make MC_ARCH=x86-64-v3 ($(( $(date +%s) - start )) s)"
export MORPHCAT="$PWD/build-avx2/morphcat" MC_ROOT="$PWD" OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=Haswell
export MC_SHARED="${MC_SHARED:-$PWD/../shared}"
fail=0; ran=0
for t in test_parity_resnet_torchvision test_parity_goldens test_parity_efficientnet test_parity_encoders2 test_cutout_read test_preprocess_reference; do
    start=$(date +%s)
    /usr/bin/python3 "tests/$t.py" >"build/test-logs/avx2-$t.log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then ran=$((ran + 1)); echo "ok   $t on the x86-64-v3 build ($(( $(date +%s) - start )) s): $(tail -n 1 "build/test-logs/avx2-$t.log")"
    elif [ $rc -eq 77 ]; then echo "skip $t: $(tail -n 1 "build/test-logs/avx2-$t.log")"
    else fail=1; echo "FAIL $t on the x86-64-v3 build (exit $rc)"; tail -n 8 "build/test-logs/avx2-$t.log"; fi
done
[ $ran -ge 1 ] || { echo "FAIL no parity test ran"; exit 1; }
exit $fail
