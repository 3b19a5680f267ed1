#!/bin/sh
# `make demo`: runs morphcat's main job on generated data. Today that job is the encoder forward pass:
# a stand-in model in the released Hub layout (seeded weights: untrained, so the numbers mean nothing)
# unless MORPHCAT_MODEL names real weights, over 16 galaxy images (crops of ../shared/realdata when it is
# beside the clone, synthetic galaxies otherwise), to embeddings in a .npy file.
set -e
cd "$(dirname "$0")/.."
out=${MORPHCAT_DEMO_OUT:-build/demo}
mkdir -p "$out"
PY=/usr/bin/python3
echo "demo: writing an untrained stand-in convnext_nano (Hub layout, seeded weights) and 16 images to $out/standin"
$PY tools/make_case.py "$out/standin" --arch convnext_nano --size 224 --chans 3 --batch 16 --kind bin --seed 7 \
    --ref-dtype float32
model=${MORPHCAT_MODEL:-$out/standin}
./morphcat info --model "$model"
chans=$(./morphcat info --model "$model" | awk '/^in_chans:/ {print $2}')
$PY -c "
import numpy as np
x = np.load('$out/standin/input.npy')
if $chans == 1: x = x.mean(axis=1, keepdims=True)
np.save('$out/galaxies.npy', x.astype(np.float32))
"
start=$(date +%s.%N)
./morphcat forward --model "$model" --input "$out/galaxies.npy" --output "$out/embeddings.npy" --batch 8
end=$(date +%s.%N)
$PY -c "
import numpy as np
e = np.load('$out/embeddings.npy')
print('demo: %d galaxies -> embeddings %s in %.2f s (one core)' % (e.shape[0], e.shape, $end - $start))
if '$model' == '$out/standin':
    ref = np.load('$out/standin/expected_embedding.npy')
    print('demo: relative max error against the PyTorch reference: %.2e' % (np.abs(e - ref).max() / np.abs(ref).max()))
print('demo: embeddings written to $out/embeddings.npy')
"
