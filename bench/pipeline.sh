#!/bin/sh
# The catalogue job's share of `make bench`: FITS-to-catalogue galaxies/s on one core (rank and loader thread
# bound to the same core) against the encoder-only images/s of the same model at the same batch size, and
# 2 ranks against 1 on this 2-core machine. Survey: `morphcat synth`, 256 px g,r,z cubes (RICE-compressed
# FITS, a few PNGs), no broken files. Model: a stand-in Zoobot checkpoint (EfficientNet-B0, colour,
# 98-answer head: the fastest encoder, so the largest relative overhead). Appends JSON lines to $1.
set -e
cd "$(dirname "$0")/.."
res=$1
PY=/usr/bin/python3
out=build/bench/pipeline
N=${MC_BENCH_PIPELINE_N:-1500}
mkdir -p "$out"
[ -f "$out/survey/manifest.csv" ] || ./morphcat synth --out "$out/survey" --n "$N" --size 256 --seed 2 --broken 0 >/dev/null
[ -f "$out/model/model.ckpt" ] || $PY -c "
import sys; sys.path.insert(0, 'tools')
import make_case
make_case.write_case('$out/model', 'efficientnet_b0', size=64, chans=3, batch=1, kind='ckpt', seed=3, n_answers=98)
" >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# encoder only, same model and batch, on the same galaxies as the job sees them (morphcat cutout tensors)
$PY - "$out" <<'PYEOF'
import csv, os, subprocess, sys, numpy as np
out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "survey", "manifest.csv"))))[:16]
xs = []
for r in rows:
    p = os.path.join(out, "t.npy")
    subprocess.run(["./morphcat", "cutout", os.path.join(out, "survey", r["file_loc"]), "--recipe", "auto",
                    "--size", "224", "--chans", "3", "--tensor", p], check=True, capture_output=True)
    xs.append(np.load(p))
np.save(os.path.join(out, "inputs.npy"), np.stack(xs).astype(np.float32))
PYEOF
./build/bench/bench_forward forward --model "$out/model/model.ckpt" --batch 16 --seconds 5 --label encoder_only \
    --input "$out/inputs.npy" >> "$res"
for ranks in 1 2 1 2; do
    rm -f "$out/cat.h5"
    mpirun -n $ranks --bind-to core ./morphcat run --manifest "$out/survey/manifest.csv" --model "$out/model/model.ckpt" \
        --output "$out/cat.h5" --batch 16 --progress-seconds 1000 > "$out/run.txt" 2> "$out/run.err"
    rate=$(sed -n 's/.*steady \([0-9.]*\) galaxies\/s.*/\1/p' "$out/run.txt")
    echo "{\"impl\":\"pipeline\",\"ranks\":$ranks,\"galaxies\":$N,\"galaxies_per_s\":${rate:-0}}" >> "$res"
    echo "bench: pipeline on $ranks rank(s): ${rate:-?} galaxies/s"
done
