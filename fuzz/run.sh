#!/bin/sh
# fuzz/run.sh SECONDS [NAME...]: runs each libFuzzer harness (build-fuzz/fuzz_NAME, made by `make fuzz-build`) for
# SECONDS, seeded from fuzz/make_seeds.py and the committed regression inputs in fuzz/regress/NAME/ (if any), in a
# scratch folder it removes afterwards. Prints one line per harness (runs, coverage, corpus) and fails on any crash,
# leaving the crashing input in the scratch folder it names. FUZZ_LOGDIR=DIR keeps a copy of each libFuzzer log there.
# Run from the repository root.
cd "$(dirname "$0")/.." || exit 1
secs=${1:-600}
shift 2>/dev/null
names=${*:-$(ls build-fuzz/fuzz_* 2>/dev/null | grep -v '\.d$' | sed 's|build-fuzz/fuzz_||')}
[ -n "$names" ] || { echo "no harnesses in build-fuzz/ (make fuzz-build)"; exit 1; }
work=$(mktemp -d /tmp/morphcat-fuzz-XXXXXX)
# the harnesses' per-process input files: in memory where /dev/shm is, and removed with the rest afterwards
scratch=$(mktemp -d /dev/shm/morphcat-fuzz-XXXXXX 2>/dev/null) || scratch=$work/scratch
mkdir -p "$scratch"
export FUZZ_SCRATCH="$scratch"
/usr/bin/python3 fuzz/make_seeds.py "$work" || { echo "seed generation failed"; exit 1; }
# malloc may return NULL as it does outside ASan (CFITSIO then reports a memory error); a 2 GB RSS cap still catches
# allocations that succeed and blow up
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:allocator_may_return_null=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
fail=0
for n in $names; do
    mkdir -p "$work/corpus-$n" "$work/seeds-$n"
    [ -d "fuzz/regress/$n" ] && cp fuzz/regress/"$n"/* "$work/seeds-$n/" 2>/dev/null
    # FUZZ_RUNS (make check): a fixed number of runs from a fixed seed, so the short run is repeatable, not a lottery
    build-fuzz/fuzz_"$n" -max_total_time="$secs" ${FUZZ_RUNS:+-runs=$FUZZ_RUNS -seed=1414} -max_len=65536 -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/crash-$n-" "$work/corpus-$n" "$work/seeds-$n" >"$work/log-$n" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log-$n" | grep -o '[0-9]*$')
    cov=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$work/log-$n" | tail -1 | grep -o 'cov: [0-9]*' | grep -o '[0-9]*')
    ft=$(grep -E '^#[0-9]+' "$work/log-$n" | tail -1 | grep -o 'ft: [0-9]*' | grep -o '[0-9]*')
    eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$work/log-$n" | grep -o '[0-9]*$')
    corp=$(ls "$work/corpus-$n" | wc -l)
    [ -n "$FUZZ_LOGDIR" ] && mkdir -p "$FUZZ_LOGDIR" && cp "$work/log-$n" "$FUZZ_LOGDIR/"
    if [ $rc -ne 0 ] || ls "$work"/crash-"$n"-* >/dev/null 2>&1; then
        echo "FAIL fuzz_$n: exit $rc after ${runs:-?} runs; input(s): $(ls "$work"/crash-"$n"-* 2>/dev/null | tr '\n' ' ')"
        grep -E 'ERROR|SUMMARY|#[0-9] 0x' "$work/log-$n" | head -15
        fail=1
    else
        echo "ok   fuzz_$n: up to ${secs} s, ${runs:-?} runs (${eps:-?}/s), coverage ${cov:-?} edges, ${ft:-?} features, corpus $corp"
    fi
done
rm -rf "$scratch"
[ $fail -eq 0 ] && rm -rf "$work"
exit $fail
