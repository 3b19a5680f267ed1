"""tools/safetensors_io.py: a small safetensors reader and writer (Debian has no safetensors package).
Format: u64 little-endian header length, JSON header {name: {dtype, shape, data_offsets}, "__metadata__"}, raw bytes.
Reads whole files into memory (no mmap, no lazy slices); writes tensors in the order given, header padded to 8 bytes.
"""
import collections
import json
import struct

import numpy as np
import torch

# safetensors dtype code -> numpy dtype (BF16 goes through int16 and torch.bfloat16).
_NP = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_CODE = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
    torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def load(path):
    """Returns (OrderedDict name -> torch tensor in file order, metadata dict or None)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    base = 8 + n
    items = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    out = collections.OrderedDict()
    for name, info in items:
        a, b = info["data_offsets"]
        raw = blob[base + a : base + b]
        shape = tuple(info["shape"])
        if info["dtype"] == "BF16":
            t = torch.from_numpy(np.frombuffer(raw, dtype=np.int16).copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype=_NP[info["dtype"]]).copy())
        out[name] = t.reshape(shape)
    return out, meta


def save(tensors, path, metadata=None):
    """Write name -> tensor (torch or numpy) in the given order; metadata is a dict of str -> str."""
    header = {}
    chunks = []
    off = 0
    for name, t in tensors.items():
        t = torch.as_tensor(t).detach().contiguous().cpu()
        code = _CODE[t.dtype]
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    if metadata is not None:
        header = dict([("__metadata__", {str(k): str(v) for k, v in metadata.items()})] + list(header.items()))
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for c in chunks:
            f.write(c)
