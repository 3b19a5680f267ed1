#!/bin/sh
# Runs every morphcat test and ends with one line "N passed, N failed".
# A test is an executable: a compiled unit test in build/tests/, or tests/test_*.sh / tests/test_*.py.
# Exit status 0 passes, 77 skips (the test prints why), anything else fails.
# Run from the repository root (make check does). TESTS='pattern' selects tests by name.
cd "$(dirname "$0")/.." || exit 1
export MORPHCAT="$PWD/morphcat"
export MC_ROOT="$PWD"
export PY=/usr/bin/python3
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export MC_SHARED="${MC_SHARED:-$PWD/../shared}"
pass=0; fail=0; skip=0; failed=""
logdir=build/test-logs; mkdir -p "$logdir"
for t in build/tests/test_* tests/test_*.sh tests/test_*.py; do
    [ -e "$t" ] || continue
    case "$t" in *.d) continue ;; esac
    name=$(basename "$t"); name=${name%.*}
    if [ -n "$TESTS" ]; then case "$name" in *$TESTS*) ;; *) continue ;; esac; fi
    log="$logdir/$name.log"
    start=$(date +%s)
    case "$t" in
        *.sh) sh "$t" >"$log" 2>&1 ;;
        *.py) $PY "$t" >"$log" 2>&1 ;;
        *) "$t" >"$log" 2>&1 ;;
    esac
    rc=$?
    secs=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1)); echo "PASS $name (${secs}s)"
    elif [ $rc -eq 77 ]; then
        skip=$((skip + 1)); echo "SKIP $name: $(tail -n 1 "$log")"
    else
        fail=$((fail + 1)); failed="$failed $name"; echo "FAIL $name (exit $rc, ${secs}s); last lines of $log:"
        tail -n 15 "$log" | sed 's/^/    /'
    fi
done
[ $skip -gt 0 ] && echo "$skip skipped (reasons above)"
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
