#!/bin/sh
# The catalogue tools' part of `make bench`: `morphcat export` (FITS and CSV) and `morphcat report` on a
# synthetic catalogue of MC_BENCH_TABLE_ROWS rows (default 1,000,000) in morphcat's layout, made by
# tools/make_big_catalogue.py under $TMPDIR (about 1.9 GB per million rows; removed afterwards, never in git).
# Wall time, CPU time and peak RSS of each (/usr/bin/time), one JSON line each appended to $1, and a table.
set -e
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
res=${1:-build/bench/results.jsonl}
rows=${MC_BENCH_TABLE_ROWS:-1000000}
d=$(mktemp -d "${TMPDIR:-/tmp}/morphcat-bench-tables.XXXXXX")
trap 'rm -rf "$d"' EXIT
echo "bench: making a $rows-row catalogue in $d"
$PY tools/make_big_catalogue.py "$d/cat.h5" --rows "$rows" >/dev/null
printf '%-28s %10s %10s %10s\n' "command ($rows rows)" "wall s" "cpu s" "peak RSS"
for what in "export-fits" "export-csv" "report"; do
    case $what in
    export-fits) args="export $d/cat.h5 --format fits --output $d/cat.fits" ;;
    export-csv) args="export $d/cat.h5 --format csv --output $d/cat.csv" ;;
    report) args="report $d/cat.h5 --out $d/report" ;;
    esac
    # shellcheck disable=SC2086
    /usr/bin/time -f "%e %U %S %M" -o "$d/time.txt" ./morphcat $args >/dev/null 2>"$d/stderr.txt"
    set -- $(tail -n 1 "$d/time.txt")
    cpu=$(echo "$2 $3" | awk '{printf "%.2f", $1 + $2}')
    echo "{\"impl\": \"morphcat\", \"tool\": \"$what\", \"rows\": $rows, \"wall_s\": $1, \"cpu_s\": $cpu, \"peak_rss_mb\": $(( $4 / 1024 ))}" >> "$res"
    printf '%-28s %10s %10s %8sMB\n' "$what" "$1" "$cpu" "$(( $4 / 1024 ))"
    rm -f "$d/cat.fits" "$d/cat.csv" "$d/cat_clumps.csv"
done
