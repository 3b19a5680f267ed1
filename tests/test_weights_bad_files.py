"""tests/test_weights_bad_files.py: every malformed or unsafe weight file fails with one clear line, never a crash.

Protects nn/weights*.c and `morphcat weights`: for each bad file the command exits 1, prints nothing on stdout and
exactly one line on stderr, "morphcat: <file>: <reason>", naming the file and the reason (key, global, opcode or
offset where there is one). Covers broken archives, hostile pickles (unknown globals, opcodes, memo and stack
abuse), views outside their storage, corrupt safetensors headers, legacy and foreign files; ends with a seeded
mutation loop (byte flips, truncation, pickle mutation re-zipped with valid CRCs, header mutation) in which every
run must exit 0 or 1 with at most one stderr line.
"""
import collections
import concurrent.futures
import io
import json
import os
import pickle
import random
import struct
import subprocess
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mctest  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

C = mctest.Checks()
TMP = mctest.tmpdir()
HOOKS = collections.OrderedDict()
V2 = torch._utils._rebuild_tensor_v2


def path_of(name):
    return os.path.join(TMP, name)


def expect_fail(label, path, *fragments, args=None):
    """The file must be refused with one stderr line naming it and holding every fragment."""
    argv = ["weights", path] if args is None else args
    cp = mctest.run(argv, check=False)
    lines = cp.stderr.splitlines()
    one = len(lines) == 1 and cp.stderr.endswith("\n") and lines[0].startswith("morphcat: ")
    line = lines[0] if lines else ""
    named = args is not None or os.path.basename(path) in line
    missing = [f for f in fragments if f not in line]
    ok = cp.returncode == 1 and cp.stdout == "" and one and named and not missing
    C.check(ok, "%s: refused with one line%s%s" % (
        label, "" if ok else " [rc=%d, stderr=%r, missing %r]" % (cp.returncode, cp.stderr, missing),
        "" if not ok else ": " + line))


# ---- helpers to build files ---------------------------------------------------------------------------------------

class FakeStorage:
    def __init__(self, key, cls, numel):
        self.key, self.cls, self.numel = key, cls, numel


class Reduced:
    """Pickles as whatever (callable, args) it is given: lets a test write tensors torch itself never would."""

    def __init__(self, rv):
        self.rv = rv

    def __reduce__(self):
        return self.rv


class StoragePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        if isinstance(obj, str) and obj == "PERSID-STRING":
            return "not-a-tuple"
        return None


def pickle_bytes(obj, protocol=2):
    buf = io.BytesIO()
    StoragePickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def write_zip(path, entries, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for k, b in entries.items():
            z.writestr(k, b)
    return path


def write_torch_zip(name, obj, storages, top="archive", pkl=None):
    entries = {top + "/data.pkl": pkl if pkl is not None else pickle_bytes(obj)}
    for k, b in storages.items():
        entries["%s/data/%s" % (top, k)] = b
    entries[top + "/version"] = "3\n"
    return write_zip(path_of(name), entries)


def floats(n):
    return np.arange(n, dtype=np.float32).tobytes()


def view(storage, offset, size, stride):
    return Reduced((V2, (storage, offset, tuple(size), tuple(stride), False, HOOKS)))


class Evil:
    """A value whose unpickling would run a shell command."""

    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def raw_pickle_zip(name, pkl):
    return write_zip(path_of(name), {"m/data.pkl": pkl, "m/version": "3\n"})


def write_safetensors_raw(name, header, data=b"", hlen=None):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(h) if hlen is None else hlen
    p = path_of(name)
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", n) + h + data)
    return p


def st_entry(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


# ---- cases --------------------------------------------------------------------------------------------------------

def archive_cases():
    good = path_of("good.bin")
    torch.save({"w": torch.randn(50, 20), "b": torch.randn(20)}, good)
    raw = open(good, "rb").read()
    for frac, label in ((0.5, "half"), (0.98, "missing its end record")):
        p = path_of("truncated_%d.bin" % int(frac * 100))
        open(p, "wb").write(raw[:int(len(raw) * frac)])
        expect_fail("zip truncated (%s)" % label, p, "truncated or not a zip archive", "libzip")
    p = write_zip(path_of("no_pickle.bin"), {"archive/data/0": floats(4), "archive/version": "3\n"})
    expect_fail("zip without data.pkl", p, "data.pkl", "not written by torch.save")
    p = write_zip(path_of("two_pickles.bin"), {"a/data.pkl": pickle_bytes({}), "b/data.pkl": pickle_bytes({})})
    expect_fail("zip with two data.pkl", p, "more than one")
    p = path_of("empty.zip")
    zipfile.ZipFile(p, "w").close()
    expect_fail("empty zip archive", p, "data.pkl")
    p = write_zip(path_of("big_endian.bin"), {"a/data.pkl": pickle_bytes({}), "a/byteorder": "big"})
    expect_fail("big-endian byteorder", p, "big-endian")
    s = FakeStorage("0", torch.FloatStorage, 10)
    p = write_torch_zip("short_storage.bin", {"w": view(s, 0, (10,), (1,))}, {"0": floats(7)})
    expect_fail("storage entry shorter than numel", p, "storage '0'", "tensor 'w'", "holds 28 bytes", "declares 40")
    p = write_torch_zip("missing_storage.bin", {"w": view(s, 0, (10,), (1,))}, {})
    expect_fail("storage entry missing", p, "storage '0'", "missing", "archive/data/0")
    # a flipped byte in a stored entry is caught by libzip's CRC check
    with zipfile.ZipFile(good) as z:
        info = [i for i in z.infolist() if i.filename.endswith("/data/0")][0]
    blob = bytearray(raw)
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    blob[info.header_offset + 30 + name_len + extra_len + 5] ^= 0x40
    p = path_of("crc.bin")
    open(p, "wb").write(bytes(blob))
    expect_fail("flipped byte in a stored entry", p, "good/data/0", "corrupt data", "CRC")


def pickle_cases():
    expect_fail("unknown opcode", raw_pickle_zip("opcode.bin", b"\x80\x02\xff"), "unknown pickle opcode",
                "0xff", "byte 2", "data.pkl")
    expect_fail("pickle without STOP", raw_pickle_zip("nostop.bin", b"\x80\x02}"), "without a STOP")
    expect_fail("stack underflow", raw_pickle_zip("underflow.bin", b"\x80\x02R."), "stack underflow", "0x52")
    expect_fail("undefined memo key", raw_pickle_zip("memo.bin", b"\x80\x02h\x05."), "memo key 5")
    expect_fail("huge memo index", raw_pickle_zip("memo_big.bin", b"\x80\x02}r\xff\xff\xff\xff."), "memo index")
    expect_fail("EXT1", raw_pickle_zip("ext1.bin", b"\x80\x02\x82\x01."), "EXT1")
    expect_fail("protocol 5 buffer", raw_pickle_zip("buffer.bin", b"\x80\x05\x97."), "out-of-band")
    expect_fail("protocol 6", raw_pickle_zip("proto6.bin", b"\x80\x06}."), "protocol 6")
    expect_fail("string past the end", raw_pickle_zip("longstr.bin", b"\x80\x02X\xff\xff\xff\x7fab."), "truncated")
    expect_fail("invalid UTF-8", raw_pickle_zip("utf8.bin", b"\x80\x02X\x02\x00\x00\x00\xc3\x28."), "UTF-8")
    expect_fail("odd SETITEMS", raw_pickle_zip("odd.bin", b"\x80\x02}(X\x01\x00\x00\x00au."), "odd number")
    expect_fail("POP_MARK without MARK", raw_pickle_zip("popmark.bin", b"\x80\x02}1."), "MARK")
    expect_fail("APPEND on a dict", raw_pickle_zip("append.bin", b"\x80\x02}Na."), "APPEND")
    expect_fail("FRAME past the end", raw_pickle_zip("frame.bin", b"\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00}."),
                "FRAME")
    expect_fail("top-level list", raw_pickle_zip("list.bin", b"\x80\x02]."), "top-level object is a list")
    # deep nesting is just data to an iterative VM: 200000 nested lists, then a dict refusing them as tensors
    deep = b"\x80\x02}X\x01\x00\x00\x00a" + b"]" * 200000 + b"a" * 199999 + b"s."
    expect_fail("deeply nested value", raw_pickle_zip("deep.bin", deep), "'a'", "not a tensor")
    expect_fail("persistent id not a tuple", write_torch_zip("persid.bin", {"w": "PERSID-STRING"}, {}),
                "persistent id")


def policy_cases():
    p = path_of("evil_state_dict.bin")
    torch.save({"w": torch.ones(2), "evil": Evil()}, p)
    expect_fail("os.system in a state_dict", p, "unknown global posix.system", "state_dict")
    ck = {"state_dict": collections.OrderedDict([("encoder.w", torch.ones(2)), ("x", Evil())]),
          "hyper_parameters": {"architecture_name": "convnext_nano"}}
    p = path_of("evil_in_ckpt.ckpt")
    torch.save(ck, p)
    expect_fail("os.system inside a checkpoint's state_dict", p, "unknown global posix.system",
                "checkpoint's state_dict")
    sd = collections.OrderedDict([("encoder.w", torch.ones(2))])
    sd._metadata = {"": Evil()}
    p = path_of("evil_metadata.ckpt")
    torch.save({"state_dict": sd, "epoch": 1}, p)
    expect_fail("unknown global in the state_dict's _metadata", p, "posix.system")
    p = path_of("whole_module.bin")
    torch.save(torch.nn.Linear(2, 2), p)
    expect_fail("torch.save of a whole module", p, "torch.nn.modules.linear.Linear", "model.state_dict()")
    p = path_of("tensor_only.bin")
    torch.save(torch.ones(3), p)
    expect_fail("torch.save of a single tensor", p, "top-level object is a tensor")
    p = path_of("int_value.bin")
    torch.save({"w": torch.ones(1), "n": 3}, p)
    expect_fail("non-tensor entry", p, "'n'", "an int, not a tensor")
    p = path_of("int_key.bin")
    torch.save({1: torch.ones(1)}, p)
    expect_fail("non-string key", p, "key #0", "an int")
    p = path_of("bad_state_dict.ckpt")
    torch.save({"state_dict": [torch.ones(1)], "epoch": 1}, p)
    expect_fail("checkpoint whose state_dict is a list", p, "'state_dict' is a list")
    # duplicate keys cannot come from a Python dict: patch the second name into the first
    pkl = pickle_bytes({"dupkeyA": view(FakeStorage("0", torch.FloatStorage, 1), 0, (), ()),
                        "dupkeyB": view(FakeStorage("0", torch.FloatStorage, 1), 0, (), ())})
    p = write_torch_zip("dup.bin", None, {"0": floats(1)}, pkl=pkl.replace(b"dupkeyB", b"dupkeyA"))
    expect_fail("duplicate tensor names", p, "'dupkeyA' appears twice")
    # a crafted name cannot break the one-line message
    s = FakeStorage("0", torch.FloatStorage, 1)
    p = write_torch_zip("newline_name.bin", {"bad\nname": view(s, 0, (5,), (1,))}, {"0": floats(1)})
    expect_fail("tensor name with a newline", p, "bad\\x0aname")


def view_cases():
    s4 = FakeStorage("0", torch.FloatStorage, 4)
    data = {"0": floats(4)}
    cases = [
        ("offset past the storage", view(s4, 3, (2,), (1,)), ("reaches element 4", "storage '0'", "holds 4")),
        ("strides past the storage", view(s4, 0, (2, 2), (3, 1)), ("reaches element 4",)),
        ("negative stride", view(s4, 3, (2,), (-1,)), ("negative size or stride",)),
        ("negative offset", view(s4, -1, (1,), (1,)), ("negative storage offset",)),
        ("nine dimensions", view(s4, 0, (1,) * 9, (1,) * 9), ("9 dimensions", "at most 8")),
        ("size and stride of different length", view(s4, 0, (2, 2), (1,)), ("size and stride",)),
        ("stride 0 expansion to 2^40 elements", view(s4, 0, (1 << 20, 1 << 20), (0, 0)), ("refusing",)),
        ("index overflow", view(s4, 0, (1 << 40, 1 << 40), (1 << 40, 1)), ("overflow",)),
        ("five arguments to _rebuild_tensor_v2", Reduced((V2, (s4, 0, (1,), (1,), False))), ("5 arguments",)),
        ("storage argument not a storage", Reduced((V2, (3, 0, (1,), (1,), False, HOOKS))), ("storage argument",)),
        ("complex storage", view(FakeStorage("0", torch.ComplexFloatStorage, 2), 0, (2,), (1,)),
         ("unsupported type torch.ComplexFloatStorage",)),
        ("storage bigger than the file", view(FakeStorage("0", torch.FloatStorage, 1 << 40), 0, (1,), (1,)),
         ("more than the file holds",)),
        ("parameter of a non-tensor", Reduced((torch._utils._rebuild_parameter, (3, False, HOOKS))),
         ("_rebuild_parameter",)),
    ]
    for i, (label, value, frags) in enumerate(cases):
        p = write_torch_zip("view%d.bin" % i, {"t%d" % i: value}, data)
        expect_fail(label, p, "tensor 't%d'" % i, *frags)
    p = write_torch_zip("unknown_storage.bin", {"w": view(FakeStorage("0", os.system, 4), 0, (4,), (1,))}, data)
    expect_fail("unknown global as a storage type", p, "unknown global posix.system")


def safetensors_cases():
    f8 = np.arange(2, dtype=np.float32).tobytes()
    ok = {"a": st_entry("F32", [2], 0, 8)}
    expect_fail("safetensors bad JSON", write_safetensors_raw("badjson.safetensors", b'{"a": {"dtype": '),
                "not valid JSON")
    expect_fail("safetensors header length past EOF", write_safetensors_raw("pasteof.safetensors", ok, f8, hlen=5000),
                "header length 5000 runs past the end")
    cases = [
        ("offsets out of range", {"a": st_entry("F32", [2], 0, 16)}, ("'a'", "past the end of the data")),
        ("wrong size", {"a": st_entry("F32", [3], 0, 8)}, ("'a'", "span 8 bytes", "need 12")),
        ("offsets backwards", {"a": st_entry("F32", [0], 8, 0)}, ("run backwards",)),
        ("unknown dtype", {"a": st_entry("F8_E4M3", [8], 0, 8)}, ("unsupported dtype 'F8_E4M3'",)),
        ("negative shape", {"a": st_entry("F32", [-2], 0, 8)}, ("shape",)),
        ("fractional shape", {"a": st_entry("F32", [1.5], 0, 8)}, ("shape",)),
        ("shape overflow", {"a": st_entry("F32", [2 ** 40, 2 ** 40], 0, 8)}, ("overflows",)),
        ("nine dimensions", {"a": st_entry("F32", [1] * 9, 0, 8)}, ("at most 8",)),
        ("overlapping tensors", {"a": st_entry("F32", [2], 0, 8), "b": st_entry("F32", [1], 4, 8)}, ("overlap",)),
        ("entry not an object", {"a": 3}, ("'a'", "not an object")),
        ("missing data_offsets", {"a": {"dtype": "F32", "shape": [2]}}, ("lacks",)),
        ("header not an object", [1, 2], ("not a JSON object",)),
    ]
    for i, (label, header, frags) in enumerate(cases):
        expect_fail("safetensors " + label, write_safetensors_raw("st%d.safetensors" % i, header, f8), *frags)
    expect_fail("safetensors trailing garbage", write_safetensors_raw("trail.safetensors",
                                                                      json.dumps(ok).encode() + b"  x", f8),
                "bytes after its JSON")
    expect_fail("safetensors name with control characters",
                write_safetensors_raw("ctl.safetensors", {"a\nb": st_entry("F32", [9], 0, 8)}, f8), "a\\x0ab")


def foreign_cases():
    p = path_of("legacy.bin")
    torch.save({"w": torch.ones(2)}, p, _use_new_zipfile_serialization=False)
    expect_fail("legacy torch serialization", p, "legacy", "torch >= 1.6")
    rng = random.Random(7)
    p = path_of("random.bin")
    open(p, "wb").write(bytes(rng.randrange(256) for _ in range(4096)).replace(b"{", b"x"))
    expect_fail("random bytes", p, "not a weight file")
    p = path_of("empty.bin")
    open(p, "wb").close()
    expect_fail("empty file", p, "empty file")
    expect_fail("missing file", path_of("does_not_exist.bin"), "cannot open", "No such file")
    expect_fail("directory", TMP, "not a regular file")
    p = path_of("short.safetensors")
    open(p, "wb").write(b"\x02\x00\x00")
    expect_fail("three bytes", p, "not a weight file")
    expect_fail("no PATH", "", "no weight file", args=["weights"])
    expect_fail("unknown option", "", "unknown option '--bogus'", args=["weights", "x.bin", "--bogus"])
    expect_fail("two paths", "", "more than one PATH", args=["weights", "a.bin", "b.bin"])


# ---- mutation loop ------------------------------------------------------------------------------------------------

def run_mutant(data, name):
    p = path_of(name)
    with open(p, "wb") as f:
        f.write(data)
    cp = subprocess.run([mctest.MORPHCAT, "weights", p], capture_output=True)
    lines = cp.stderr.splitlines()
    if cp.returncode == 0:
        return not lines
    return cp.returncode == 1 and len(lines) == 1 and lines[0].startswith(b"morphcat: ")


def rezip(pkl, storages, top):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(top + "/data.pkl", pkl)
        for k, b in storages.items():
            z.writestr("%s/data/%s" % (top, k), b)
    return buf.getvalue()


def mutate(rng, b):
    b = bytearray(b)
    r = rng.random()
    if r < 0.4 or len(b) < 4:
        for _ in range(rng.randint(1, 4)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
    elif r < 0.6:
        b = b[:rng.randrange(len(b))]
    elif r < 0.8:
        i = rng.randrange(len(b))
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    else:
        i, j = sorted(rng.randrange(len(b)) for _ in range(2))
        del b[i:j]
    return bytes(b)


def mutation_cases():
    rng = random.Random(1234)
    g = torch.Generator().manual_seed(5)
    sd = collections.OrderedDict([("w", torch.randn(4, 3, generator=g)), ("h", torch.randn(5, generator=g).half()),
                                  ("n", torch.tensor(3)), ("p", torch.nn.Parameter(torch.randn(2, generator=g)))])
    sd["t"] = sd["w"].t()
    bin_path = path_of("mut_base.bin")
    torch.save(sd, bin_path)
    ck = {"state_dict": sd, "epoch": 2, "hyper_parameters": {"architecture_name": "x", "s": {1, 2}, "b": b"q"}}
    ck_path = path_of("mut_base.ckpt")
    torch.save(ck, ck_path, pickle_protocol=4)
    st_header = {"__metadata__": {"format": "pt"}, "w": st_entry("F32", [4, 3], 0, 48),
                 "h": st_entry("F16", [5], 48, 58), "n": st_entry("I64", [1], 58, 66)}
    st = write_safetensors_raw("mut_base.safetensors", st_header, bytes(range(66)))
    mutants = []  # (label, bytes)
    # 1. raw bytes of whole files
    for base in (bin_path, ck_path, st):
        raw = open(base, "rb").read()
        mutants += [("raw %s #%d" % (os.path.basename(base), i), mutate(rng, raw)) for i in range(40)]
    # 2. the pickle itself, re-zipped with valid CRCs so that the VM sees the damage
    for base in (bin_path, ck_path):
        with zipfile.ZipFile(base) as z:
            names = z.namelist()
            top = names[0].split("/")[0]
            pkl = z.read(top + "/data.pkl")
            storages = {nm.split("/data/")[1]: z.read(nm) for nm in names if "/data/" in nm}
        mutants += [("pickle of %s #%d" % (os.path.basename(base), i), rezip(mutate(rng, pkl), storages, top))
                    for i in range(100)]
    # 3. the safetensors header
    raw = open(st, "rb").read()
    hn = struct.unpack("<Q", raw[:8])[0]
    for i in range(80):
        h = mutate(rng, raw[8:8 + hn])
        mutants.append(("safetensors header #%d" % i, struct.pack("<Q", len(h)) + h + raw[8 + hn:]))
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        ok = list(ex.map(lambda im: run_mutant(im[1][1], "mut%d" % im[0]), enumerate(mutants)))
    failures = [m[0] for m, good in zip(mutants, ok) if not good]
    C.check(not failures, "mutation loop: %d mutants, each exits 0 or 1 with at most one stderr line %s" % (
        len(mutants), failures[:5]))


def main():
    archive_cases()
    pickle_cases()
    policy_cases()
    view_cases()
    safetensors_cases()
    foreign_cases()
    mutation_cases()
    C.finish()


if __name__ == "__main__":
    main()
