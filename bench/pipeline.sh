#!/bin/sh
# The catalogue job's share of `make bench`: FITS-to-catalogue galaxies/s on one core (rank and loader
# thread bound to the same core) against the encoder-only images/s of the same model at the same batch
# size, and 2 ranks against 1 on this 2-core machine. Surveys from `morphcat synth`, 256 px g,r,z cubes:
# plain float32 FITS (as the Legacy Surveys cutout service delivers them) and RICE-compressed FITS (the
# synth default; decompression is CPU work the loader must do). Models: stand-in Zoobot checkpoints with
# the 98-answer head, EfficientNet-B0 (the fastest encoder: the largest relative overhead) and
# ConvNeXt-nano (Zoobot's recommended one). Each figure is the best of two interleaved runs.
# MC_BENCH_CPU=N puts the rank, its loader and the encoder-alone run on CPU N (mpirun's --bind-to core ignores
# an inherited taskset mask and takes core 0); with it the 2-rank runs are left out (one core cannot show scaling).
# Appends JSON lines to $1.
set -e
cd "$(dirname "$0")/.."
res=$1
PY=/usr/bin/python3
out=build/bench/pipeline
N=${MC_BENCH_PIPELINE_N:-800}
mkdir -p "$out"
[ -f "$out/plain/manifest.csv" ] ||
    ./morphcat synth --out "$out/plain" --n "$N" --size 256 --seed 2 --broken 0 --plain-fraction 1 >/dev/null
[ -f "$out/rice/manifest.csv" ] ||
    ./morphcat synth --out "$out/rice" --n "$N" --size 256 --seed 2 --broken 0 --plain-fraction 0 >/dev/null
for arch in efficientnet_b0 convnext_nano; do
    [ -f "$out/$arch/model.ckpt" ] || $PY -c "
import sys; sys.path.insert(0, 'tools')
import make_case
make_case.write_case('$out/$arch', '$arch', size=64, chans=3, batch=1, kind='ckpt', seed=3, n_answers=98)
" >/dev/null
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bind="--bind-to core" pin="" max_ranks=2
if [ -n "$MC_BENCH_CPU" ]; then
    bind="--cpu-set $MC_BENCH_CPU --bind-to core" pin="taskset -c $MC_BENCH_CPU" max_ranks=1
fi
# the encoder alone sees the galaxies as the job does (morphcat cutout tensors of the survey)
$PY - "$out" <<'PYEOF'
import csv, os, subprocess, sys, numpy as np
out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "plain", "manifest.csv"))))
xs = []
for r in rows:
    if not r["file_loc"].endswith(".fits"):
        continue
    p = os.path.join(out, "t.npy")
    subprocess.run(["./morphcat", "cutout", os.path.join(out, "plain", r["file_loc"]), "--recipe", "gz_decals",
                    "--size", "224", "--chans", "3", "--tensor", p], check=True, capture_output=True)
    xs.append(np.load(p))
    if len(xs) == 16:
        break
np.save(os.path.join(out, "inputs.npy"), np.stack(xs).astype(np.float32))
PYEOF

job() { # ranks survey arch -> "galaxies/s after start-up" "% of the job's CPU in the encoder" (one run)
    rm -f "$out/cat.h5"
    $pin mpirun -n "$1" $bind ./morphcat run --manifest "$out/$2/manifest.csv" --model "$out/$3/model.ckpt" \
        --output "$out/cat.h5" --batch 16 --recipe gz_decals --progress-seconds 1000 2>/dev/null >"$out/job.txt"
    echo "$(sed -n 's/.*steady \([0-9.]*\) galaxies\/s.*/\1/p' "$out/job.txt")" \
        "$(sed -n 's/.*CPU after start-up: .* s (\([0-9.]*\)%) of it in the encoder.*/\1/p' "$out/job.txt")"
}
for round in 1 2; do
    for arch in efficientnet_b0 convnext_nano; do
        $pin ./build/bench/bench_forward forward --model "$out/$arch/model.ckpt" --batch 16 --seconds 5 \
            --label "encoder_only_$arch" --input "$out/inputs.npy" >> "$res"
        for survey in plain rice; do
            for ranks in 1 2; do
                [ "$ranks" -gt "$max_ranks" ] && continue
                [ "$arch" = convnext_nano ] && [ "$ranks" = 2 ] && continue
                set -- $(job $ranks $survey $arch)
                rate=$1 share=$2
                echo "{\"impl\":\"pipeline\",\"model\":\"$arch\",\"survey\":\"$survey\",\"ranks\":$ranks,\"galaxies\":$N,\"galaxies_per_s\":${rate:-0},\"encoder_cpu_pct\":${share:-0}}" >> "$res"
                rest=$(awk -v s="${share:-0}" 'BEGIN { if (s > 0) printf "%.1f", 100 * 100 / s - 100; else print "?" }')
                echo "bench: pipeline $arch, $survey FITS, $ranks rank(s): ${rate:-?} galaxies/s, ${share:-?}% of the CPU in the encoder (the rest: $rest% of the encoder's)"
            done
        done
    done
done
