#!/bin/sh
# The bf16 path on CPUs without AMX: builds morphcat and test_amx with the AMX tile instructions emulated in
# software (make MC_AMX_EMU=1: nn/amx_emu.h, checked against the SDM by test_amx_emulator) into build-amxemu/,
# and runs the bf16 tests against that binary: test_amx (the real kernels against a double-precision product) and
# the Python bf16 tests (accuracy of five encoders, the detector, the bf16 catalogue job). It shows that the bf16
# code is correct and as accurate as on AMX, not how fast it is. Skips without AVX-512, which the emulator needs.
cd "$(dirname "$0")/.." || exit 1
mkdir -p build/test-logs
start=$(date +%s)
make -s -j2 MC_AMX_EMU=1 B=build-amxemu BIN=build-amxemu/morphcat build-amxemu/morphcat build-amxemu/tests/test_amx \
    build-amxemu/tests/test_amx_emulator >build/test-logs/amxemu-build.log 2>&1 ||
    { tail -20 build/test-logs/amxemu-build.log; echo "FAIL the MC_AMX_EMU=1 build"; exit 1; }
echo "ok   make MC_AMX_EMU=1 ($(( $(date +%s) - start )) s)"
export MORPHCAT="$PWD/build-amxemu/morphcat" MC_ROOT="$PWD" OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export MC_SHARED="${MC_SHARED:-$PWD/../shared}"
fail=0
for t in test_amx_emulator test_amx; do
    start=$(date +%s)
    "build-amxemu/tests/$t" >"build/test-logs/amxemu-$t.log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then echo "ok   unit $t on emulated AMX ($(( $(date +%s) - start )) s): $(tail -n 1 "build/test-logs/amxemu-$t.log")"
    elif [ $rc -eq 77 ]; then echo "skipped: $(tail -n 1 "build/test-logs/amxemu-$t.log")"; exit 77
    else fail=1; echo "FAIL unit $t on emulated AMX (exit $rc)"; grep FAIL "build/test-logs/amxemu-$t.log" | head -8; fi
done
for t in test_bf16_accuracy test_bf16_accuracy_encoders2 test_detect_bf16 test_run_precision; do
    start=$(date +%s)
    /usr/bin/python3 "tests/$t.py" >"build/test-logs/amxemu-$t.log" 2>&1
    rc=$?
    last=$(tail -n 1 "build/test-logs/amxemu-$t.log")
    if [ $rc -eq 0 ]; then echo "ok   $t on emulated AMX ($(( $(date +%s) - start )) s): $last"
        grep '^figure:' "build/test-logs/amxemu-$t.log" | sed 's/^/     /'
    # a skip for want of ../shared is fine; bf16 refused by this build is not
    elif [ $rc -eq 77 ] && ! grep -q 'needs AMX' "build/test-logs/amxemu-$t.log"; then echo "skip $t: $last"
    else fail=1; echo "FAIL $t on emulated AMX (exit $rc)"; tail -n 8 "build/test-logs/amxemu-$t.log"; fi
done
exit $fail
