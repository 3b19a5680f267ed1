"""tools/timm_ref2.py: plain-PyTorch forward passes of timm 0.9.10's MaxViT (rw, rmlp and tf configurations) and
EfficientNetV2 (S/M/L, TF and PyTorch ports), num_classes=0, written from ../shared/notes/encoders2.md as functions
of a state_dict (every tensor must be used: strict). timm is not installable here; this is the reference for speed
(`make bench`) and for variants no golden covers, and tests/test_timm_ref2_matches_goldens.py checks it against real
timm's goldens. Eval only: no dropout, drop path or training paths; batch norm stays unfolded as in timm.
"""
import math

import torch
import torch.nn.functional as F

MAXVIT = {  # name: (kind, dims, depths, stem, hidden, window)
    "maxvit_tiny_rw_224": ("rw", (64, 128, 256, 512), (2, 2, 5, 2), (32, 64), 0, 7),
    "maxvit_rmlp_tiny_rw_256": ("rmlp", (64, 128, 256, 512), (2, 2, 5, 2), (32, 64), 0, 8),
    "maxvit_rmlp_small_rw_224": ("rmlp", (96, 192, 384, 768), (2, 2, 5, 2), (32, 64), 0, 7),
    "maxvit_rmlp_base_rw_224": ("rmlp", (96, 192, 384, 768), (2, 6, 14, 2), (32, 64), 768, 7),
    "maxvit_tiny_tf_224": ("tf", (64, 128, 256, 512), (2, 2, 5, 2), (64, 64), 512, 7),
    "maxvit_small_tf_224": ("tf", (96, 192, 384, 768), (2, 2, 5, 2), (64, 64), 768, 7),
    "maxvit_base_tf_224": ("tf", (96, 192, 384, 768), (2, 6, 14, 2), (64, 64), 768, 7),
    "maxvit_large_tf_224": ("tf", (128, 256, 512, 1024), (2, 6, 14, 2), (128, 128), 1024, 7),
}
V2 = {  # (type, repeats, stride, expand, out); all k3
    "efficientnetv2_s": (24, [("cn", 2, 1, 1, 24), ("er", 4, 2, 4, 48), ("er", 4, 2, 4, 64), ("ir", 6, 2, 4, 128),
                              ("ir", 9, 1, 6, 160), ("ir", 15, 2, 6, 256)]),
    "efficientnetv2_m": (24, [("cn", 3, 1, 1, 24), ("er", 5, 2, 4, 48), ("er", 5, 2, 4, 80), ("ir", 7, 2, 4, 160),
                              ("ir", 14, 1, 6, 176), ("ir", 18, 2, 6, 304), ("ir", 5, 1, 6, 512)]),
    "efficientnetv2_l": (32, [("cn", 4, 1, 1, 32), ("er", 7, 2, 4, 64), ("er", 7, 2, 4, 96), ("ir", 10, 2, 4, 192),
                              ("ir", 19, 1, 6, 224), ("ir", 25, 2, 6, 384), ("ir", 7, 1, 6, 640)]),
}


class Weights:
    """A state_dict that records which keys were read, so a forward pass can check it used them all."""

    def __init__(self, sd):
        self.sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
        self.used = set()

    def __call__(self, k):
        self.used.add(k)
        return self.sd[k]

    def has(self, k):
        return k in self.sd

    def check_all_used(self):
        left = sorted(set(self.sd) - self.used)
        if left:
            raise RuntimeError("unused keys: %s" % left[:5])


def pad_same(x, k, s):
    """timm pad_same: total max((ceil(i/s)-1)*s + k - i, 0), the odd pixel after."""
    ih, iw = x.shape[-2:]
    ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
    pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


def conv(x, w, b, stride, groups, same):
    k = w.shape[-1]
    if same and stride > 1:
        return F.conv2d(pad_same(x, k, stride), w, b, stride, 0, 1, groups)
    return F.conv2d(x, w, b, stride, ((stride - 1) + (k - 1)) // 2, 1, groups)


def bn(W, p, x, eps):
    return F.batch_norm(x, W(p + ".running_mean"), W(p + ".running_var"), W(p + ".weight"), W(p + ".bias"), False, 0.0, eps)


def act_fn(kind):
    return (lambda t: F.gelu(t, approximate="tanh")) if kind == "tf" else F.silu


# ---- MaxViT ----------------------------------------------------------------------------------------------------------

def rel_index(p):
    c = torch.stack(torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")).flatten(1)
    r = (c[:, :, None] - c[:, None, :]).permute(1, 2, 0)
    return (r[..., 0] + p - 1) * (2 * p - 1) + (r[..., 1] + p - 1)  # query minus key


def rel_bias(W, pre, kind, p, heads):
    n = p * p
    if kind == "tf":
        t = W(pre + ".attn.rel_pos.relative_position_bias_table")  # (heads, 2p-1, 2p-1), key minus query
        i = torch.arange(p)
        d = i[None, :] - i[:, None] + p - 1  # [query, key]
        b = t[:, d[:, None, :, None], d[None, :, None, :]]  # (heads, qy, qx, ky, kx)
        return b.reshape(heads, n, n)
    if kind == "rw":
        tab = W(pre + ".attn.rel_pos.relative_position_bias_table")
    else:
        r = torch.arange(-(p - 1), p, dtype=torch.float32)
        coords = torch.stack(torch.meshgrid(r, r, indexing="ij")).permute(1, 2, 0).reshape(-1, 2)
        coords = (torch.sign(coords) * torch.log(1.0 + coords.abs())).to(W(pre + ".attn.rel_pos.mlp.fc1.weight").dtype)
        h = F.relu(F.linear(coords, W(pre + ".attn.rel_pos.mlp.fc1.weight"), W(pre + ".attn.rel_pos.mlp.fc1.bias")))
        tab = F.linear(h, W(pre + ".attn.rel_pos.mlp.fc2.weight"), W(pre + ".attn.rel_pos.mlp.fc2.bias"))
    return tab[rel_index(p).reshape(-1)].reshape(n, n, heads).permute(2, 0, 1).contiguous()


def partition(x, p, grid):
    B, H, Wd, C = x.shape
    if grid:
        x = x.view(B, p, H // p, p, Wd // p, C).permute(0, 2, 4, 1, 3, 5)
    else:
        x = x.view(B, H // p, p, Wd // p, p, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, p * p, C)


def unpartition(t, p, grid, B, H, Wd):
    C = t.shape[-1]
    if grid:
        return t.view(B, H // p, Wd // p, p, p, C).permute(0, 3, 1, 4, 2, 5).reshape(B, H, Wd, C)
    return t.view(B, H // p, Wd // p, p, p, C).permute(0, 1, 3, 2, 4, 5).reshape(B, H, Wd, C)


def partition_attn(W, pre, x, kind, p, grid, bias, ln_eps, ls):
    B, H, Wd, C = x.shape
    heads = C // 32
    t = F.layer_norm(x, (C,), W(pre + ".norm1.weight"), W(pre + ".norm1.bias"), ln_eps)
    t = partition(t, p, grid)
    n = t.shape[1]
    qkv = F.linear(t, W(pre + ".attn.qkv.weight"), W(pre + ".attn.qkv.bias"))
    if kind == "tf":
        q, k, v = qkv.reshape(-1, n, 3, heads, 32).transpose(1, 3).unbind(2)
    else:
        q, k, v = qkv.view(-1, n, heads, 96).transpose(1, 2).chunk(3, dim=3)
    a = (q * 32 ** -0.5) @ k.transpose(-2, -1) + bias.to(q.dtype)
    o = (a.softmax(dim=-1) @ v).transpose(1, 2).reshape(-1, n, C)
    o = F.linear(o, W(pre + ".attn.proj.weight"), W(pre + ".attn.proj.bias"))
    o = unpartition(o, p, grid, B, H, Wd)
    if ls:
        o = o * W(pre + ".ls1.gamma")
    x = x + o
    t = F.layer_norm(x, (C,), W(pre + ".norm2.weight"), W(pre + ".norm2.bias"), ln_eps)
    t = F.linear(t, W(pre + ".mlp.fc1.weight"), W(pre + ".mlp.fc1.bias"))
    t = F.gelu(t, approximate="tanh") if kind == "tf" else F.gelu(t)
    t = F.linear(t, W(pre + ".mlp.fc2.weight"), W(pre + ".mlp.fc2.bias"))
    if ls:
        t = t * W(pre + ".ls2.gamma")
    return x + t


def mbconv(W, pre, x, kind, cout, stride):
    tf = kind == "tf"
    eps = 1e-3 if tf else 1e-5
    act = act_fn(kind)
    sc = x
    if stride == 2:
        sc = F.avg_pool2d(x, 2)
        if W.has(pre + ".shortcut.expand.weight"):
            sc = F.conv2d(sc, W(pre + ".shortcut.expand.weight"), W(pre + ".shortcut.expand.bias") if tf else None)
    x = bn(W, pre + ".pre_norm", x, eps)
    x = act(bn(W, pre + ".norm1", F.conv2d(x, W(pre + ".conv1_1x1.weight")), eps))
    x = conv(x, W(pre + ".conv2_kxk.weight"), None, stride, x.shape[1], tf)
    x = act(bn(W, pre + ".norm2", x, eps))
    s = x.mean((2, 3), keepdim=True)
    s = F.silu(F.conv2d(s, W(pre + ".se.fc1.weight"), W(pre + ".se.fc1.bias")))
    x = x * torch.sigmoid(F.conv2d(s, W(pre + ".se.fc2.weight"), W(pre + ".se.fc2.bias")))
    return F.conv2d(x, W(pre + ".conv3_1x1.weight"), W(pre + ".conv3_1x1.bias") if tf else None) + sc


class MaxViT:
    """forward(x NCHW) -> embedding, with the relative-position biases computed once here (as morphcat does)."""

    def __init__(self, arch, sd):
        self.kind, self.dims, self.depths, self.stem, self.hidden, self.p = MAXVIT[arch]
        self.W = Weights(sd)
        self.ls = self.W.has("stages.0.blocks.0.attn_block.ls1.gamma")
        self.bias = {}
        with torch.inference_mode():
            for s, d in enumerate(self.depths):
                for i in range(d):
                    for part in ("attn_block", "attn_grid"):
                        pre = "stages.%d.blocks.%d.%s" % (s, i, part)
                        self.bias[pre] = rel_bias(self.W, pre, self.kind, self.p, self.dims[s] // 32)

    def __call__(self, x):
        W, kind, tf = self.W, self.kind, self.kind == "tf"
        ln_eps, bn_eps, act = (1e-5 if tf else 1e-6), (1e-3 if tf else 1e-5), act_fn(kind)
        x = conv(x, W("stem.conv1.weight"), W("stem.conv1.bias") if tf else None, 2, 1, tf)
        x = act(bn(W, "stem.norm1", x, bn_eps))
        x = conv(x, W("stem.conv2.weight"), W("stem.conv2.bias") if tf else None, 1, 1, tf)
        for s, d in enumerate(self.depths):
            for i in range(d):
                pre = "stages.%d.blocks.%d" % (s, i)
                x = mbconv(W, pre + ".conv", x, kind, self.dims[s], 2 if i == 0 else 1)
                x = x.permute(0, 2, 3, 1)
                for part, grid in (("attn_block", False), ("attn_grid", True)):
                    x = partition_attn(W, pre + "." + part, x, kind, self.p, grid, self.bias[pre + "." + part], ln_eps,
                                       self.ls)
                x = x.permute(0, 3, 1, 2)
        C = self.dims[3]
        if not self.hidden:
            x = F.layer_norm(x.permute(0, 2, 3, 1), (C,), W("norm.weight"), W("norm.bias"), ln_eps)
            return x.mean((1, 2))
        x = F.layer_norm(x.mean((2, 3)), (C,), W("head.norm.weight"), W("head.norm.bias"), ln_eps)
        return torch.tanh(F.linear(x, W("head.pre_logits.fc.weight"), W("head.pre_logits.fc.bias")))


# ---- EfficientNetV2 --------------------------------------------------------------------------------------------------

class EfficientNetV2:
    def __init__(self, arch, sd):
        self.tf = arch.startswith("tf_")
        self.stem, self.stages = V2[arch[3:] if self.tf else arch]
        self.W = Weights(sd)

    def __call__(self, x):
        W, tf = self.W, self.tf
        eps = 1e-3 if tf else 1e-5
        x = F.silu(bn(W, "bn1", conv(x, W("conv_stem.weight"), None, 2, 1, tf), eps))
        cin = self.stem
        for s, (t, reps, stride, e, cout) in enumerate(self.stages):
            for r in range(reps):
                st = stride if r == 0 else 1
                pre = "blocks.%d.%d." % (s, r)
                skip = st == 1 and cin == cout
                if t == "cn":
                    y = F.silu(bn(W, pre + "bn1", conv(x, W(pre + "conv.weight"), None, st, 1, tf), eps))
                elif t == "er":
                    y = F.silu(bn(W, pre + "bn1", conv(x, W(pre + "conv_exp.weight"), None, st, 1, tf), eps))
                    y = bn(W, pre + "bn2", F.conv2d(y, W(pre + "conv_pwl.weight")), eps)
                else:
                    y = F.silu(bn(W, pre + "bn1", F.conv2d(x, W(pre + "conv_pw.weight")), eps))
                    y = conv(y, W(pre + "conv_dw.weight"), None, st, y.shape[1], tf)
                    y = F.silu(bn(W, pre + "bn2", y, eps))
                    g = y.mean((2, 3), keepdim=True)
                    g = F.silu(F.conv2d(g, W(pre + "se.conv_reduce.weight"), W(pre + "se.conv_reduce.bias")))
                    y = y * torch.sigmoid(F.conv2d(g, W(pre + "se.conv_expand.weight"), W(pre + "se.conv_expand.bias")))
                    y = bn(W, pre + "bn3", F.conv2d(y, W(pre + "conv_pwl.weight")), eps)
                x = y + x if skip else y
                cin = cout
        x = F.silu(bn(W, "bn2", F.conv2d(x, W("conv_head.weight")), eps))
        return x.mean((2, 3))


def create(arch, sd):
    if arch in MAXVIT:
        return MaxViT(arch, sd)
    return EfficientNetV2(arch, sd)


def load_folder(path):
    """The state_dict of a Hub folder: model.safetensors (read with numpy) or pytorch_model.bin."""
    import os

    st = os.path.join(path, "model.safetensors")
    if os.path.exists(st):
        import sys

        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import safetensors_io

        return dict(safetensors_io.load(st)[0])
    return torch.load(os.path.join(path, "pytorch_model.bin"), map_location="cpu")


class _Module(torch.nn.Module):
    """An nn.Module face for the bench (eval(), .to(memory_format) on the weights, call)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def to(self, *args, memory_format=None, **kw):
        """.to(dtype) casts every floating weight (PyTorch bf16 as a user casts a model); .to(memory_format=)
        re-lays the 4-d weights."""
        for a in args:
            if isinstance(a, torch.dtype):
                for k, v in self.net.W.sd.items():
                    if v.is_floating_point():
                        self.net.W.sd[k] = v.to(a)
        if memory_format is not None:
            for k, v in self.net.W.sd.items():
                if v.dim() == 4:
                    self.net.W.sd[k] = v.contiguous(memory_format=memory_format)
        return self

    def float(self):
        return self.to(torch.float32)

    def forward(self, x):
        return self.net(x)


def module(arch, folder):
    return _Module(create(arch, load_folder(folder))).eval()
