"""fuzz/make_seeds.py DIR: writes the fuzzers' seed corpora into DIR/seeds-NAME/ (one folder per harness in fuzz/):
small valid and broken files generated here (morphcat synth for cutouts, torch.save and hand-made safetensors for
weights, text for the rest) plus the small files of ../shared/realdata when it is there. Run by fuzz/run.sh; nothing
it writes is committed."""
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zipfile

import numpy as np

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = sys.argv[1]
morphcat = os.environ.get("MORPHCAT") or os.path.join(root, "morphcat")
shared = os.environ.get("MC_SHARED") or os.path.join(root, "..", "shared")


def put(kind, name, data):
    d = os.path.join(out, "seeds-" + kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# cutouts: a small synthetic survey (FITS, .fits.fz, PNG, the broken kinds) and real files under 1 MiB
sv = os.path.join(out, "synth")
subprocess.run([morphcat, "synth", "--out", sv, "--n", "30", "--size", "32", "--broken", "12", "--png-fraction", "0.2",
                "--plain-fraction", "0.3"], check=True, capture_output=True)
for dirpath, _, names in os.walk(os.path.join(sv, "cutouts")):
    for n in names:
        data = open(os.path.join(dirpath, n), "rb").read()
        kind = "png" if n.endswith(".png") else "jpeg" if n.endswith(".jpg") else "fits"
        put(kind, n, data)
real = os.path.join(shared, "realdata")
if os.path.isdir(real):
    for dirpath, _, names in os.walk(real):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.getsize(p) > 1 << 20:
                continue
            kind = {".fits": "fits", ".png": "png", ".jpg": "jpeg"}.get(os.path.splitext(n)[1])
            if kind:
                put(kind, "real_" + n, open(p, "rb").read())
from PIL import Image  # noqa: E402

rng = np.random.default_rng(0)
for mode, kw in (("L", {}), ("RGB", {}), ("RGB", {"progressive": True})):
    a = rng.integers(0, 255, (24, 20) if mode == "L" else (24, 20, 3), dtype=np.uint8)
    b = io.BytesIO()
    Image.fromarray(a, mode).save(b, "JPEG", **kw)
    put("jpeg", "gen_%s_%d.jpg" % (mode, len(kw)), b.getvalue())
    b = io.BytesIO()
    Image.fromarray(a, mode).save(b, "PNG")
    put("png", "gen_%s_%d.png" % (mode, len(kw)), b.getvalue())

# weights: torch.save archives (plain state dict, Lightning-style checkpoint), safetensors; their pickles alone
import torch  # noqa: E402

sd = {"conv.weight": torch.arange(12, dtype=torch.float32).reshape(3, 2, 2), "conv.bias": torch.zeros(3),
      "bn.num_batches_tracked": torch.tensor(3), "h.weight": torch.ones(2, 3, dtype=torch.float16)}
for name, obj in (("state_dict.bin", sd), ("lightning.ckpt", {"state_dict": sd, "epoch": 3,
                                                               "hyper_parameters": {"architecture_name": "resnet18"}})):
    b = io.BytesIO()
    torch.save(obj, b)
    put("weights", name, b.getvalue())
    with zipfile.ZipFile(io.BytesIO(b.getvalue())) as z:
        for n in z.namelist():
            if n.endswith("data.pkl"):
                put("pickle", name + ".data.pkl", z.read(n))
for proto in (2, 4):
    put("pickle", "plain_%d.pkl" % proto, pickle.dumps({"a": [1, 2.5, "x", (None, True)], "b": {"c": b"\0\1"}},
                                                        protocol=proto))


def safetensors(tensors):
    header, blob = {}, b""
    for n, (dt, arr) in tensors.items():
        raw = arr.tobytes()
        header[n] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blob


put("weights", "model.safetensors", safetensors({"w": ("F32", np.ones((2, 3), np.float32)),
                                                 "b": ("F16", np.zeros(3, np.float16)),
                                                 "n": ("I64", np.array([7], np.int64))}))
for i, cfg in enumerate([{"architecture": "efficientnet_b0", "num_classes": 34},
                         {"architecture": "convnext_nano.in12k", "num_classes": 0, "pretrained_cfg": {"x": [1, 2]}},
                         {"architecture": "resnet50"}]):
    put("config", "config%d.json" % i, json.dumps(cfg).encode())
put("config", "broken.json", b'{"architecture": "resnet18", "num_classes": [}')
for i, text in enumerate([
        "id_str,file_loc,ra,dec\na,x.fits,10.5,-3.25\nb,\"b, \"\"q\"\".fits\",,\n",
        "\ufeffid_str,file_loc,ra,dec,hdu\nc,c.fits, 1 , 2 ,SCI\nd,,nan,nan,\n",
        "id_str,file_loc\n\"e\nnewline\",e.png\nf,f.jpg,extra\n",
        "file_loc,id_str,dec,ra\ng.fits,g,95,10\n"]):
    put("manifest", "m%d.csv" % i, text.encode())
for i, text in enumerate([
        "[job]\nmanifest = m.csv\nmodel = m.ckpt\noutput = o.h5\nbatch = 8\nembedding = f16\n",
        "manifest=a\nmodel=b\noutput=c\ncommit-seconds = 0.5\nlock-stale-after = 60\n; comment\n",
        "[other]\nx = 1\n", "batch = 99999\nsize=abc\n"]):
    put("ini", "j%d.ini" % i, text.encode())
shutil.rmtree(sv)
