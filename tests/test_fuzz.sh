#!/bin/sh
# The libFuzzer harnesses (fuzz/) for a short fixed budget each: 6000 runs from a fixed seed, at most 15 s
# (MC_FUZZ_RUNS, MC_FUZZ_SECONDS), so the result does not depend on the machine's speed; `make fuzz` runs them for
# 600 s each from random seeds): builds them with clang-14 (make fuzz-build), seeds them (fuzz/make_seeds.py plus the committed
# regression inputs) and fails on any crash, hang or sanitizer report.
cd "$(dirname "$0")/.." || exit 1
probe=/tmp/mc-fuzz-probe.$$
if ! printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){(void)d;(void)n;return 0;}\n' |
        clang-14 -fsanitize=fuzzer,address,undefined -x c -o $probe - 2>/dev/null; then
    echo "skipped: clang-14 with libFuzzer is not installed (apt-get install clang-14)"
    exit 77
fi
rm -f $probe
make -s -j2 fuzz-build >build/test-logs/fuzz-build.log 2>&1 || { tail -20 build/test-logs/fuzz-build.log; echo "make fuzz-build failed"; exit 1; }
FUZZ_RUNS="${MC_FUZZ_RUNS:-6000}" sh fuzz/run.sh "${MC_FUZZ_SECONDS:-15}"
