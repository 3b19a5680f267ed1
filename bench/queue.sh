#!/bin/sh
# The work queue's share of `make bench`: build/bench/bench_queue (pipeline/work.c, the queue `morphcat run`
# uses, in run's loop, with the forward pass a timed sleep) on many oversubscribed ranks, against the number
# of ranks and the batch time: workers' idle share, rank 0's answer latency and its serving time per request;
# then a projection to 10,000 ranks from the measured serving cost. Appends JSON lines to $1 (default
# build/bench/queue.jsonl) and prints the table. MC_BENCH_QUEUE_RANKS, MC_BENCH_QUEUE_BATCH_S and
# MC_BENCH_QUEUE_UNITS (units per rank) override the grid.
set -e
cd "$(dirname "$0")/.."
res=${1:-build/bench/queue.jsonl}
mkdir -p build/bench
RANKS=${MC_BENCH_QUEUE_RANKS:-16 64 256}
BATCH=${MC_BENCH_QUEUE_BATCH_S:-0.05 0.5}
UNITS=${MC_BENCH_QUEUE_UNITS:-20}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=build/bench/queue.tmp
: > "$tmp"
for t in $BATCH; do
    for n in $RANKS; do
        mpirun -n "$n" --oversubscribe -quiet ./build/bench/bench_queue --batch-seconds "$t" \
            --units-per-rank "$UNITS" --label "queue" >> "$tmp"
        echo "bench: queue, $n ranks, $t s batches done" >&2
    done
done
cat "$tmp" >> "$res"
/usr/bin/python3 - "$tmp" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("work queue (sleeping 'forward pass', %d units per rank, oversubscribed on %s cores):" % (
    rows[0]["units"] // rows[0]["ranks"], __import__("os").cpu_count()))
print("| ranks | batch s | wall / ideal | workers idle % | blocked on answer % | answer latency mean / p99 / max ms "
      "| rank 0 us per request |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print("| %d | %.2f | %.2f / %.2f s | %.1f | %.2f | %.0f / %.0f / %.0f | %.1f |" % (
        r["ranks"], r["batch_s"], r["wall_s"], r["ideal_s"], r["idle_pct"], r["blocked_pct"], r["latency_mean_ms"],
        r["latency_p99_ms"], r["latency_max_ms"], r["serve_us_per_request"]))
# projection: rank 0 answers between its batches; a burst of one request from every rank costs N * s
s = max(r["serve_us_per_request"] for r in rows) * 1e-6
req_per_unit = max(r["requests"] / r["units"] for r in rows)
for T in (0.5, 1.0):
    N = 10000
    burst = N * s
    load = N * req_per_unit / T * s  # share of rank 0's time spent answering, steady state
    print("projection, 10,000 ranks, %.1f s batches: a burst of 10,000 requests takes rank 0 %.0f ms (%.0f%% of a "
          "batch), answering costs rank 0 %.2f%% of its time; the longest wait stays one batch + %.0f ms" % (
              T, 1e3 * burst, 100 * burst / T, 100 * load, 1e3 * burst))
PYEOF
