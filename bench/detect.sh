#!/bin/sh
# The clump detector's part of `make bench`: torchvision 0.14's fasterrcnn_resnet50_fpn (3 classes, Clump Scout's
# configuration, seeded weights with calibrated batch norm from tools/frcnn_ref.py) against morphcat's C port on
# the same 400x400 galaxy image (upsampled to 800x800 by the model's transform, as Clump Scout's GZ2 inference
# does), one thread each, alternating, 2 rounds; seconds per image (best of the round's runs after a warm-up).
# Appends JSON lines to the results file given as $1. Run by bench/run.sh with its OpenBLAS settings.
set -e
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
res=${1:-build/bench/results.jsonl}
out=build/bench/detect
mkdir -p "$out"
if [ ! -f "$out/model.pth" ]; then
    $PY tools/frcnn_ref.py make --seed 3 --out "$out" >/dev/null
fi
$PY -c "
import sys; sys.path.insert(0, 'tools')
import os, numpy as np, frcnn_ref as F
hdf = os.path.join('${MC_SHARED:-../shared}', 'realdata', 'skimage', 'hubble_deep_field.jpg')
img = F.load_image(hdf, (100, 150, 500, 550)) if os.path.exists(hdf) else F.load_image('synthetic:5:400x400')
np.save('$out/image.npy', img.numpy())
np.save('$out/batch.npy', img.numpy()[None])
print('bench: detector input', 'hubble_deep_field.jpg 400x400 crop' if os.path.exists(hdf) else 'synthetic 400x400')
"
PRECS=fp32
./build/bench/bench_forward detect --model "$out/model.pth" --input "$out/batch.npy" --runs 1 --precision bf16 \
    >/dev/null 2>&1 && PRECS="fp32 bf16"
for r in 1 2; do
    for p in $PRECS; do
        ./build/bench/bench_forward detect --model "$out/model.pth" --input "$out/batch.npy" --runs 3 --precision "$p" >> "$res"
    done
    for flag in "" --bf16; do
        /usr/bin/time -f "%M" -o "$out/rss.tmp" $PY tools/frcnn_bench.py --model "$out/model.pth" --image "$out/image.npy" \
            --runs 3 $flag > "$out/line.tmp"
        line=$(tail -n 1 "$out/line.tmp")
        echo "${line%\}}, \"peak_rss_mb\": $(( $(tail -n 1 "$out/rss.tmp") / 1024 ))}" >> "$res"
    done
    echo "bench: detector round $r done"
done
