"""tests/test_weights_formats.py: `morphcat weights` reads every supported weight-file form exactly as torch does.

Protects nn/weights*.c: torch.save zip+pickle (protocols 1, 2, 4), Lightning checkpoints with classes the reader must
skip, parameters, non-contiguous and shared-storage views, f16/bf16/f64 conversion, integer and bool tensors, and
safetensors. References come from torch.load (or the tensors the test wrote); the released reference files under
../shared are checked when present. Tolerances: --values must match float32 bit for bit (%.9g round-trips float32);
float64 sums may differ from torch's only by summation order: |ours - ref| <= 1e-12 * (sum|x| + 1).
"""
import collections
import io
import json
import math
import os
import pickle
import struct
import sys
import types
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mctest  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

C = mctest.Checks()
TMP = mctest.tmpdir()


def listing(path, values=False):
    """Runs morphcat weights; returns (header dict, ordered list of (name, dtype, shape, sum, sumabs, values))."""
    cp = mctest.run(["weights", path] + (["--values"] if values else []), check=False)
    if cp.returncode != 0:
        print("morphcat weights failed on", path, ":", cp.stderr.strip())
        return None, None
    head, rows = {}, []
    for line in cp.stdout.splitlines():
        if line.startswith("# "):
            k, _, v = line[2:].partition(" ")
            head[k] = v
            continue
        f = line.split("\t")
        shape = tuple(int(x) for x in f[2].strip("()").split(",") if x)
        s = None if f[3] == "-" else float(f[3])
        sa = None if f[4] == "-" else float(f[4])
        vals = None
        if values:
            # %.9g picks out exactly one float32: compare in float32
            vals = np.array([float(x) for x in f[5].split()], dtype=np.float64).astype(np.float32)
        rows.append((f[0], f[1], shape, s, sa, vals))
    return head, rows


TORCH_DT = {
    torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


def same_values(ours, ref):
    ref = np.asarray(ref, dtype=np.float32).ravel()
    if ours.shape != ref.shape:
        return False
    both_nan = np.isnan(ours) & np.isnan(ref)
    eq = (ours == ref) & (np.signbit(ours) == np.signbit(ref))
    return bool(np.all(both_nan | eq))


def compare(label, path, ref, values=False, kind=None, arch_hint=None):
    """ref: ordered dict name -> torch tensor (what torch.load gives)."""
    head, rows = listing(path, values)
    if rows is None:
        C.check(False, "%s: morphcat weights reads the file" % label)
        return
    if kind is not None:
        C.check(head.get("kind") == kind, "%s: kind is %s (got %s)" % (label, kind, head.get("kind")))
    if arch_hint is not None or kind == "lightning":
        C.check(head.get("arch_hint") == arch_hint, "%s: arch_hint is %r (got %r)" % (label, arch_hint,
                                                                                     head.get("arch_hint")))
    C.check([r[0] for r in rows] == list(ref.keys()), "%s: same %d names in the same order" % (label, len(ref)))
    bad = []
    for name, dt, shape, s, sa, vals in rows:
        t = ref.get(name)
        if t is None:
            continue
        if dt != TORCH_DT[t.dtype] or shape != tuple(t.shape):
            bad.append("%s: %s %s vs torch %s %s" % (name, dt, shape, t.dtype, tuple(t.shape)))
            continue
        if not t.is_floating_point():
            if s is not None:
                bad.append("%s: integer tensor has a sum" % name)
            continue
        f = t.detach().float().double()
        fin = torch.isfinite(f)
        if bool(fin.all()):
            rs, ra = float(f.sum()), float(f.abs().sum())
            tol = 1e-12 * (ra + 1)
            if abs(s - rs) > tol or abs(sa - ra) > tol:
                bad.append("%s: sums %r %r vs torch %r %r" % (name, s, sa, rs, ra))
        if values and not same_values(vals, t.detach().float().contiguous().numpy()):
            bad.append("%s: values differ from torch's float32" % name)
    C.check(not bad, "%s: dtype, shape, sums%s match torch for every tensor %s" % (
        label, " and values" if values else "", "; ".join(bad[:5])))


# ---- real reference files -----------------------------------------------------------------------------------------

def real_files():
    if not os.path.isdir(mctest.SHARED):
        print("note: ../shared absent, reference files not checked")
        return
    enc = mctest.shared_path("refdata", "encoders")
    for sub in sorted(os.listdir(enc)):
        d = os.path.join(enc, sub)
        for fn in ("pytorch_model.bin", "model.ckpt"):
            p = os.path.join(d, fn)
            if not os.path.exists(p):
                continue
            obj = torch.load(p, map_location="cpu")
            if fn == "model.ckpt":
                ah = obj.get("hyper_parameters", {}).get("architecture_name")
                compare("%s/%s" % (sub, fn), p, obj["state_dict"], kind="lightning", arch_hint=ah)
            else:
                compare("%s/%s" % (sub, fn), p, obj, kind="torch-zip")
        p = os.path.join(d, "model.safetensors")
        if os.path.exists(p):
            compare("%s/model.safetensors" % sub, p, read_safetensors_py(p), kind="safetensors")


# ---- safetensors, written and read in pure Python (Debian has no safetensors package) ------------------------------

ST_DT = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
         "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
         "BOOL": torch.bool}
ST_NAME = {v: k for k, v in ST_DT.items()}


def tensor_bytes(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata=None, pad=0):
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        b = tensor_bytes(t)
        header[name] = {"dtype": ST_NAME[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode() + b" " * pad
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors_py(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = collections.OrderedDict()
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        buf = bytearray(raw[8 + n + b:8 + n + en])
        dt = ST_DT[e["dtype"]]
        if dt == torch.bfloat16:
            t = torch.frombuffer(buf, dtype=torch.int16).view(torch.bfloat16) if buf else torch.zeros(0, dtype=dt)
        else:
            t = torch.frombuffer(buf, dtype=dt) if buf else torch.zeros(0, dtype=dt)
        out[name] = t.reshape(e["shape"])
    return out


# ---- generated torch files -----------------------------------------------------------------------------------------

def dtype_zoo():
    g = torch.Generator().manual_seed(1)
    sd = collections.OrderedDict()
    sd["f32"] = torch.randn(3, 5, generator=g)
    # half: subnormals, the largest finite, infinities, NaN and signed zero all have exact float32 images
    sd["f16"] = torch.tensor([6e-8, -6e-8, 1e-5, 65504, -65504, float("inf"), float("-inf"), float("nan"), -0.0, 0.1,
                              1.0, -2.5], dtype=torch.float16)
    sd["bf16"] = (torch.randn(4, 3, generator=g) * 1e30).to(torch.bfloat16)
    sd["f64"] = torch.randn(7, generator=g, dtype=torch.float64) * 1e10
    sd["f64_tiny"] = torch.tensor([1e-300, 1e300, 1e-40, -1e-46], dtype=torch.float64)  # f32 underflow/overflow
    sd["i64"] = torch.tensor([1, -2, 2 ** 40])
    sd["i32"] = torch.tensor([3, 4], dtype=torch.int32)
    sd["i16"] = torch.tensor([5], dtype=torch.int16)
    sd["i8"] = torch.tensor([-6], dtype=torch.int8)
    sd["u8"] = torch.tensor([7, 8, 9], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False])
    sd["scalar"] = torch.tensor(3.25)
    sd["empty"] = torch.zeros(0, 4)
    sd["ndim8"] = torch.randn(1, 2, 1, 2, 1, 2, 1, 2, generator=g)
    return sd


def views_zoo():
    g = torch.Generator().manual_seed(2)
    base = torch.randn(6, 8, generator=g)
    sd = collections.OrderedDict()
    sd["base"] = base
    sd["transposed"] = base.t()
    sd["strided_slice"] = base[1:5:2, 3:]
    sd["row_offset"] = base[4]
    sd["column"] = base[:, 7]
    sd["expanded"] = torch.randn(3, 1, generator=g).expand(3, 4)
    sd["permuted4d"] = torch.randn(2, 3, 4, 5, generator=g).permute(0, 2, 3, 1)
    h = torch.randn(10, generator=g).half()
    sd["f16_base"] = h
    sd["f16_step"] = h[1::3]
    sd["f64_t"] = torch.randn(3, 4, generator=g, dtype=torch.float64).t()
    sd["param"] = torch.nn.Parameter(torch.randn(4, generator=g))
    sd["param_frozen"] = torch.nn.Parameter(torch.randn(2, 2, generator=g), requires_grad=False)
    sd["param_view"] = torch.nn.Parameter(base[2:4, ::2])
    return sd


def module_state_dict():
    torch.manual_seed(3)
    m = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(5, 2))
    m[1].running_mean.normal_()
    m[1].num_batches_tracked += 7
    return m.state_dict()  # OrderedDict with _metadata, LongStorage for num_batches_tracked


def save_and_compare(label, sd, protocol=2):
    p = os.path.join(TMP, label + ".bin")
    torch.save(sd, p, pickle_protocol=protocol)
    compare(label, p, torch.load(p), values=True, kind="torch-zip")


# ---- a Lightning-style checkpoint with classes morphcat must skip ----------------------------------------------------

def fake_module(name):
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        mod = ".".join(parts[:i])
        if mod not in sys.modules:
            sys.modules[mod] = types.ModuleType(mod)
    return sys.modules[name]


schemas = fake_module("zoobot.shared.schemas")


class Schema:
    def __init__(self, pairs):
        self.question_answer_pairs = pairs
        self.dependencies = {"smooth-or-featured": None}


Schema.__module__ = "zoobot.shared.schemas"
schemas.Schema = Schema

parsing = fake_module("pytorch_lightning.utilities.parsing")


class AttributeDict(dict):
    pass


AttributeDict.__module__ = "pytorch_lightning.utilities.parsing"
parsing.AttributeDict = AttributeDict


class Quirky:
    """Pickled through NEWOBJ_EX (protocol 4) or copyreg (protocol 2), with list and dict state."""

    def __init__(self):
        self.items = [1, 2.5, None]

    def __getnewargs_ex__(self):
        return (), {"k": 1}


Quirky.__module__ = "zoobot.shared.schemas"
schemas.Quirky = Quirky


def lightning_ckpt(hp_class, protocol):
    g = torch.Generator().manual_seed(4)
    enc = torch.randn(8, 3, generator=g)
    sd = collections.OrderedDict()
    sd["encoder.stem.weight"] = enc
    sd["encoder.stem.bias"] = torch.randn(8, generator=g)
    sd["encoder.bn.num_batches_tracked"] = torch.tensor(5)
    sd["head.1.0.weight"] = torch.randn(4, 8, generator=g)
    sd["head.1.0.bias"] = torch.randn(4, generator=g).half()
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("encoder", {"version": 2})])
    hp = hp_class()
    hp.update({
        "architecture_name": "convnext_nano", "channels": 3, "dropout_rate": 0.2, "test_time_dropout": True,
        "schema": Schema([("smooth", ["yes", "no"])]), "quirky": Quirky(), "blob": b"\x00\xff" * 3,
        "blobs": bytearray(b"abc"), "tags": {"a", "b"}, "frozen": frozenset([1, 2]), "huge": 2 ** 100,
        "neg_huge": -(2 ** 70), "neg": -123456789, "ratio": float("nan"), "nothing": None, "triple": (1, 2, 3),
        "nested": [[1], [2, {"deep": (3.5, "x" * 300)}]], "unicode": "gal\u00e4xy \u2728", "device": torch.device("cpu"),
        "dtype": torch.float16,
    })
    return {
        "epoch": 49, "global_step": 37250, "pytorch-lightning_version": "2.1.0", "state_dict": sd,
        "loops": {"fit_loop": {"state_dict": {}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.5)}},
        "optimizer_states": [{"state": {0: {"step": torch.tensor(10.0), "exp_avg": enc.clone()}},
                              "param_groups": [{"lr": 1e-3, "params": [0]}]}],
        "lr_schedulers": [], "hyper_parameters": hp,
    }


def lightning_cases():
    for hp_class, label in ((dict, "dict_hparams"), (AttributeDict, "attrdict_hparams")):
        for protocol in (2, 4):
            ck = lightning_ckpt(hp_class, protocol)
            p = os.path.join(TMP, "%s_p%d.ckpt" % (label, protocol))
            torch.save(ck, p, pickle_protocol=protocol)
            ref = torch.load(p)
            compare("lightning %s protocol %d" % (label, protocol), p, ref["state_dict"], values=True,
                    kind="lightning", arch_hint="convnext_nano")
    # architecture_name that is not a plain string gives no hint, and a ckpt without hyper_parameters is fine
    ck = lightning_ckpt(dict, 2)
    ck["hyper_parameters"]["architecture_name"] = Schema([])
    p = os.path.join(TMP, "odd_arch.ckpt")
    torch.save(ck, p)
    compare("lightning with a non-string architecture_name", p, ck["state_dict"], kind="lightning", arch_hint=None)
    del ck["hyper_parameters"]
    p = os.path.join(TMP, "no_hparams.ckpt")
    torch.save(ck, p)
    compare("lightning without hyper_parameters", p, ck["state_dict"], kind="lightning", arch_hint=None)


# ---- hand-built pickles: forms torch 1.13 does not write but newer torch or other writers do ------------------------

class FakeStorage:
    def __init__(self, key, cls, numel):
        self.key, self.cls, self.numel = key, cls, numel


class FakeTensor:
    def __init__(self, reduce_value):
        self.rv = reduce_value

    def __reduce__(self):
        return self.rv


class StoragePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def write_crafted_zip(path, obj, storages, protocol=2, top="archive", extra=None):
    buf = io.BytesIO()
    StoragePickler(buf, protocol=protocol).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(top + "/data.pkl", buf.getvalue())
        for k, b in storages.items():
            z.writestr("%s/data/%s" % (top, k), b)
        z.writestr(top + "/version", "3\n")
        for k, b in (extra or {}).items():
            z.writestr("%s/%s" % (top, k), b)


def rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    """torch 2.x's torch._utils._rebuild_parameter_with_state, for torch.load under torch 1.13."""
    param = torch.nn.Parameter(data, requires_grad)
    param._backward_hooks = backward_hooks
    return param


if not hasattr(torch._utils, "_rebuild_parameter_with_state"):
    rebuild_parameter_with_state.__module__ = "torch._utils"
    rebuild_parameter_with_state.__qualname__ = "_rebuild_parameter_with_state"
    rebuild_parameter_with_state.__name__ = "_rebuild_parameter_with_state"
    torch._utils._rebuild_parameter_with_state = rebuild_parameter_with_state


def crafted_cases():
    hooks = collections.OrderedDict()
    s0 = FakeStorage("0", torch.FloatStorage, 12)
    s1 = FakeStorage("k1", torch.DoubleStorage, 4)
    data0 = np.arange(12, dtype=np.float32) * 0.5 - 2
    data1 = np.array([1e-3, -7.0, 3.0, 1e20], dtype=np.float64)
    v2 = torch._utils._rebuild_tensor_v2
    sd = collections.OrderedDict()
    # torch 2.x: tensors whose type or state is not plain go through _rebuild_from_type_v2
    sd["from_type"] = FakeTensor((torch._tensor._rebuild_from_type_v2,
                                  (v2, torch.Tensor, (s0, 2, (2, 3), (3, 1), False, hooks), {})))
    sd["from_type_param"] = FakeTensor((torch._tensor._rebuild_from_type_v2,
                                        (v2, torch.nn.Parameter, (s0, 0, (4,), (3,), False, hooks), {})))
    # torch 2.x: _rebuild_tensor_v2's seventh argument, metadata
    sd["v2_metadata"] = FakeTensor((v2, (s1, 1, (3,), (1,), False, hooks, {"meta": 1})))
    sd["param_state"] = FakeTensor((torch._utils._rebuild_parameter_with_state,
                                    (FakeTensor((v2, (s0, 11, (), (), False, hooks))), True, hooks, {"x": 1})))
    sd["old_rebuild"] = FakeTensor((torch._utils._rebuild_tensor, (s1, 0, (2, 2), (1, 2))))
    storages = {"0": data0.tobytes(), "k1": data1.tobytes()}
    # torch 1.13 cannot load the torch 2.x forms: the expected views are built here
    t0, t1 = torch.from_numpy(data0), torch.from_numpy(data1)
    expect = collections.OrderedDict([
        ("from_type", t0.as_strided((2, 3), (3, 1), 2)), ("from_type_param", t0.as_strided((4,), (3,), 0)),
        ("v2_metadata", t1.as_strided((3,), (1,), 1)), ("param_state", t0.as_strided((), (), 11)),
        ("old_rebuild", t1.as_strided((2, 2), (1, 2), 0))])
    for protocol in (2, 4):
        p = os.path.join(TMP, "crafted_p%d.bin" % protocol)
        write_crafted_zip(p, sd, storages, protocol=protocol, top="some folder",
                          extra={"byteorder": "little", ".data/serialization_id": "123"})
        compare("crafted (from_type_v2, metadata, parameter state, _rebuild_tensor) protocol %d" % protocol, p,
                expect, values=True, kind="torch-zip")


def main():
    real_files()
    save_and_compare("dtypes", dtype_zoo())
    save_and_compare("views", views_zoo())
    save_and_compare("module_state_dict", module_state_dict())
    for protocol in (1, 3, 4):
        save_and_compare("views_protocol%d" % protocol, views_zoo(), protocol)
        save_and_compare("dtypes_protocol%d" % protocol, dtype_zoo(), protocol)
    lightning_cases()
    crafted_cases()

    # an empty state_dict is a valid (if useless) file
    p = os.path.join(TMP, "empty.bin")
    torch.save({}, p)
    head, rows = listing(p)
    C.check(rows == [] and head.get("tensors") == "0", "empty state_dict lists no tensors")

    sd = dtype_zoo()
    sd.update(views_zoo())
    st = collections.OrderedDict((k, v.detach().contiguous()) for k, v in sd.items())
    p = os.path.join(TMP, "zoo.safetensors")
    write_safetensors(p, st, metadata={"format": "pt"}, pad=5)
    compare("safetensors, every dtype", p, st, values=True, kind="safetensors")
    p = os.path.join(TMP, "empty.safetensors")
    write_safetensors(p, {})
    head, rows = listing(p)
    C.check(rows == [] and head.get("kind") == "safetensors", "safetensors with no tensors lists none")

    cp = mctest.run(["weights", "--help"], check=False)
    C.check(cp.returncode == 0 and "usage: morphcat weights" in cp.stdout, "weights --help prints usage")
    C.finish()


if __name__ == "__main__":
    main()
