#!/bin/sh
# `make demo`: the main job on generated data. `morphcat synth` writes a synthetic survey (DECaLS-style g,r,z
# FITS cutouts with WCS, some PNGs, a few deliberately broken files) and `morphcat run` catalogues it on 2 MPI
# ranks with a stand-in Zoobot model in the released Lightning-checkpoint layout (EfficientNet-B0, greyscale,
# 98-answer decision-tree head, seeded weights: untrained, so the numbers mean nothing, and the catalogue says
# so). MORPHCAT_MODEL=PATH runs real weights instead (a Zoobot checkpoint or Hub encoder folder). It ends by
# writing the release report of the catalogue (morphcat report) and printing where it is.
set -e
cd "$(dirname "$0")/.."
out=${MORPHCAT_DEMO_OUT:-build/demo}
n=${MORPHCAT_DEMO_N:-2000}
PY=/usr/bin/python3
mkdir -p "$out"
if [ ! -f "$out/survey/manifest.csv" ]; then
    ./morphcat synth --out "$out/survey" --n "$n" --seed 1
fi
if [ -n "$MORPHCAT_MODEL" ]; then
    model=$MORPHCAT_MODEL
    note="weights from $MORPHCAT_MODEL"
else
    model=$out/standin/model.ckpt
    note="UNTRAINED stand-in (seeded weights in the released layout): the numbers mean nothing"
    if [ ! -f "$model" ]; then
        echo "demo: writing an untrained stand-in Zoobot checkpoint to $out/standin"
        $PY -c "
import sys; sys.path.insert(0, 'tools')
import make_case
make_case.write_case('$out/standin', 'efficientnet_b0', size=64, chans=1, batch=1, kind='ckpt', seed=7, n_answers=98)
" >/dev/null
    fi
fi
./morphcat info --model "$model"
rm -f "$out/catalogue.h5"
echo "demo: mpirun -n 2 morphcat run ..."
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 \
mpirun -n 2 --oversubscribe ./morphcat run --manifest "$out/survey/manifest.csv" --model "$model" \
    --output "$out/catalogue.h5" --recipe gz_decals --model-note "$note" --progress-seconds 5
$PY - "$out/catalogue.h5" <<'PYEOF'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    st = f["galaxies/status"][:]
    ids = f["galaxies/id_str"][:].astype(str)
    print("demo: catalogue %s: %d galaxies, %d ok, %d failed" % (sys.argv[1], len(st), (st == 1).sum(), (st > 1).sum()))
    for i in np.nonzero(st > 1)[0][:12]:
        print("   failed:", f["galaxies/message"][i].decode())
    if "morphology" in f:
        ok = np.nonzero(st == 1)[0][:3]
        smooth = f["columns/smooth-or-featured-dr5_smooth_fraction"][:]
        for i in ok:
            print("   %s: smooth-or-featured-dr5_smooth_fraction %.3f" % (ids[i], smooth[i]))
    print("demo: model note:", f.attrs["model_note"])
PYEOF
./morphcat report "$out/catalogue.h5" --out "$out/report"
echo "demo: the release report of the demo catalogue is $out/report/index.html (a static page: open it in any browser)"
