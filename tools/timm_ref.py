"""tools/timm_ref.py: PyTorch re-implementations of timm 0.9.10's ConvNeXt and EfficientNet-B0 (num_classes=0), with
timm's exact state_dict keys and shapes, so released Zoobot encoders load with strict=True; plus the Dirichlet head.
Reference and benchmark baseline only: no training paths (drop path, dropout), no other timm models or options.
"""
import collections

import torch
import torch.nn as nn
import torch.nn.functional as F

# ConvNeXt variants: (dims, depths, conv_mlp) as timm 0.9.10 registers them (convnext.py @v0.9.10).
CONVNEXT_VARIANTS = {
    "convnext_atto": ((40, 80, 160, 320), (2, 2, 6, 2), True),
    "convnext_femto": ((48, 96, 192, 384), (2, 2, 6, 2), True),
    "convnext_pico": ((64, 128, 256, 512), (2, 2, 6, 2), True),
    "convnext_nano": ((80, 160, 320, 640), (2, 2, 8, 2), True),
    "convnext_tiny": ((96, 192, 384, 768), (3, 3, 9, 3), False),
    "convnext_small": ((96, 192, 384, 768), (3, 3, 27, 3), False),
    "convnext_base": ((128, 256, 512, 1024), (3, 3, 27, 3), False),
    "convnext_large": ((192, 384, 768, 1536), (3, 3, 27, 3), False),
}
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
ARCHS = tuple(CONVNEXT_VARIANTS) + ("efficientnet_b0",) + RESNETS

LN_EPS = 1e-6  # every ConvNeXt norm (timm LayerNorm / LayerNorm2d default)
BN_EPS = 1e-5  # efficientnet_b0 (PyTorch default; only tf_* variants use 1e-3)


# --------------------------------------------------------------------------------------------------------------------
# ConvNeXt


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of an NCHW tensor, written as timm writes it: NHWC view, F.layer_norm, back to NCHW."""

    def __init__(self, channels, eps=LN_EPS):
        super().__init__(channels, eps=eps)

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class LayerNormLast(nn.LayerNorm):
    """timm.layers.LayerNorm: plain LayerNorm over the last (channel) dim of an NHWC tensor."""

    def __init__(self, channels, eps=LN_EPS):
        super().__init__(channels, eps=eps)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class Mlp(nn.Module):
    """fc1 -> exact-erf GELU -> fc2. 1x1 convs on NCHW when use_conv (conv_mlp models), else Linear on NHWC."""

    def __init__(self, channels, hidden, use_conv):
        super().__init__()
        if use_conv:
            self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
            self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)
        else:
            self.fc1 = nn.Linear(channels, hidden)
            self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # F.gelu default is the erf form, as timm's GELU


class ConvNeXtBlock(nn.Module):
    """x + gamma * mlp(norm(dwconv7x7(x))). gamma is the block's own parameter, so it comes first in the state_dict."""

    def __init__(self, dim, conv_mlp, mlp_ratio=4, kernel_size=7, ls_init_value=1e-6):
        super().__init__()
        self.conv_mlp = conv_mlp
        self.gamma = nn.Parameter(ls_init_value * torch.ones(dim))
        self.conv_dw = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=True)
        self.norm = LayerNorm2d(dim) if conv_mlp else LayerNormLast(dim)
        self.mlp = Mlp(dim, mlp_ratio * dim, use_conv=conv_mlp)

    def forward(self, x):
        shortcut = x
        x = self.conv_dw(x)
        if self.conv_mlp:
            x = self.mlp(self.norm(x))
        else:
            x = x.permute(0, 2, 3, 1)
            x = self.mlp(self.norm(x))
            x = x.permute(0, 3, 1, 2)
        x = x.mul(self.gamma.reshape(1, -1, 1, 1))
        return x + shortcut


class ConvNeXtStage(nn.Module):
    def __init__(self, in_dim, out_dim, depth, conv_mlp, downsample):
        super().__init__()
        if downsample:
            self.downsample = nn.Sequential(LayerNorm2d(in_dim), nn.Conv2d(in_dim, out_dim, kernel_size=2, stride=2))
        else:
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(*[ConvNeXtBlock(out_dim, conv_mlp) for _ in range(depth)])

    def forward(self, x):
        return self.blocks(self.downsample(x))


class NormHead(nn.Module):
    """timm NormMlpClassifierHead with num_classes=0: global average pool, THEN LayerNorm2d, then flatten."""

    def __init__(self, dim):
        super().__init__()
        self.norm = LayerNorm2d(dim)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(x, 1)
        return self.norm(x).flatten(1)


class ConvNeXt(nn.Module):
    """timm ConvNeXt with the 'patch' stem (4x4 stride 4), kernel 7, mlp_ratio 4, num_classes=0: returns (N, dims[-1])."""

    def __init__(self, dims, depths, conv_mlp, in_chans=3):
        super().__init__()
        assert len(dims) == len(depths) == 4
        self.num_features = dims[-1]
        self.stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0]))
        stages = []
        prev = dims[0]
        for i, (d, n) in enumerate(zip(dims, depths)):
            stages.append(ConvNeXtStage(prev, d, n, conv_mlp, downsample=i > 0))
            prev = d
        self.stages = nn.Sequential(*stages)
        self.head = NormHead(dims[-1])

    def forward_features(self, x):
        return self.stages(self.stem(x))

    def forward(self, x):
        return self.head(self.forward_features(x))


# --------------------------------------------------------------------------------------------------------------------
# EfficientNet-B0 (timm layout, PyTorch-style symmetric padding, BN eps 1e-5, SiLU)

# Per stage: (block type, repeats, kernel, stride, expansion, out channels); all with SE ratio 0.25 of block input.
EFFNET_B0_ARCH = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)


class SqueezeExcite(nn.Module):
    """x * sigmoid(conv_expand(SiLU(conv_reduce(mean_HW(x))))); both 1x1 convs carry a bias."""

    def __init__(self, channels, rd_channels):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, rd_channels, 1, bias=True)
        self.conv_expand = nn.Conv2d(rd_channels, channels, 1, bias=True)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        s = F.silu(self.conv_reduce(s))
        return x * torch.sigmoid(self.conv_expand(s))


class DepthwiseSeparable(nn.Module):
    """blocks.0.0: dw conv -> bn1+SiLU -> SE -> pw conv -> bn2 (no act); skip only when stride 1 and in == out."""

    def __init__(self, in_ch, out_ch, k, stride, se_rd):
        super().__init__()
        self.has_skip = stride == 1 and in_ch == out_ch
        self.conv_dw = nn.Conv2d(in_ch, in_ch, k, stride, padding=k // 2, groups=in_ch, bias=False)
        self.bn1 = nn.BatchNorm2d(in_ch, eps=BN_EPS)
        self.se = SqueezeExcite(in_ch, se_rd)
        self.conv_pw = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)

    def forward(self, x):
        shortcut = x
        x = F.silu(self.bn1(self.conv_dw(x)))
        x = self.se(x)
        x = self.bn2(self.conv_pw(x))
        return x + shortcut if self.has_skip else x


class InvertedResidual(nn.Module):
    """pw expand -> bn1+SiLU -> dw kxk -> bn2+SiLU -> SE -> pw project -> bn3 (no act) [+ input]."""

    def __init__(self, in_ch, out_ch, k, stride, exp, se_rd):
        super().__init__()
        mid = in_ch * exp
        self.has_skip = stride == 1 and in_ch == out_ch
        self.conv_pw = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self.conv_dw = nn.Conv2d(mid, mid, k, stride, padding=k // 2, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self.se = SqueezeExcite(mid, se_rd)
        self.conv_pwl = nn.Conv2d(mid, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=BN_EPS)

    def forward(self, x):
        shortcut = x
        x = F.silu(self.bn1(self.conv_pw(x)))
        x = F.silu(self.bn2(self.conv_dw(x)))
        x = self.se(x)
        x = self.bn3(self.conv_pwl(x))
        return x + shortcut if self.has_skip else x


class EfficientNetB0(nn.Module):
    """timm efficientnet_b0, num_classes=0: conv_stem/bn1, 7 stages of blocks, conv_head/bn2, average pool -> (N, 1280)."""

    def __init__(self, in_chans=3, stem=32, num_features=1280, se_ratio=0.25):
        super().__init__()
        self.num_features = num_features
        self.conv_stem = nn.Conv2d(in_chans, stem, 3, 2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, eps=BN_EPS)
        stages = []
        ch = stem
        for kind, reps, k, s, exp, out in EFFNET_B0_ARCH:
            blocks = []
            for r in range(reps):
                stride = s if r == 0 else 1
                rd = max(1, int(round(ch * se_ratio)))  # SE width from the block's input channels
                if kind == "ds":
                    blocks.append(DepthwiseSeparable(ch, out, k, stride, rd))
                else:
                    blocks.append(InvertedResidual(ch, out, k, stride, exp, rd))
                ch = out
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = nn.Conv2d(ch, num_features, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(num_features, eps=BN_EPS)

    def forward_features(self, x):
        x = F.silu(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        return F.silu(self.bn2(self.conv_head(x)))

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.forward_features(x), 1).flatten(1)


# --------------------------------------------------------------------------------------------------------------------
# Factory, Dirichlet head, loading helpers


def torchvision_resnet(name, in_chans=3):
    """torchvision ResNet (keys equal timm's) with fc removed: returns the pooled (N, 512 or 2048) embedding."""
    import torchvision

    m = getattr(torchvision.models, name)(weights=None)
    if in_chans != 3:
        m.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    m.num_features = m.fc.in_features
    m.fc = nn.Identity()
    return m


def create(arch_name, in_chans=3, conv_mlp=None):
    """Build an encoder by timm name (num_classes=0). conv_mlp overrides a ConvNeXt variant's MLP form."""
    if arch_name in CONVNEXT_VARIANTS:
        dims, depths, cm = CONVNEXT_VARIANTS[arch_name]
        return ConvNeXt(dims, depths, cm if conv_mlp is None else conv_mlp, in_chans=in_chans)
    if arch_name == "efficientnet_b0":
        return EfficientNetB0(in_chans=in_chans)
    if arch_name in RESNETS:
        return torchvision_resnet(arch_name, in_chans)
    raise ValueError("unknown architecture %r (known: %s)" % (arch_name, ", ".join(ARCHS)))


class ScaledSigmoid(nn.Module):
    def forward(self, z):
        return torch.sigmoid(z) * 100.0 + 1.0


class DirichletHead(nn.Sequential):
    """Zoobot's head = Sequential(Dropout, Sequential(Linear, ScaledSigmoid)): keys head.1.0.weight/bias.
    Evaluated without dropout (the expected-value behaviour): concentrations = 1 + 100 * sigmoid(W f + b)."""

    def __init__(self, in_features, n_answers):
        super().__init__(nn.Dropout(0.0), nn.Sequential(nn.Linear(in_features, n_answers), ScaledSigmoid()))


def dirichlet(embedding, weight, bias):
    """Concentrations from an embedding and a head's Linear parameters (tensors or arrays)."""
    z = F.linear(torch.as_tensor(embedding), torch.as_tensor(weight), torch.as_tensor(bias))
    return 1.0 + 100.0 * torch.sigmoid(z)


class ZoobotTree(nn.Module):
    """Encoder + Dirichlet head, with Lightning-checkpoint key names: encoder.*, head.1.0.*."""

    def __init__(self, encoder, n_answers):
        super().__init__()
        self.encoder = encoder
        self.head = DirichletHead(encoder.num_features, n_answers)

    def forward(self, x):
        return self.head(self.encoder(x))


def strip_batches_tracked(state_dict):
    return collections.OrderedDict((k, v) for k, v in state_dict.items() if not k.endswith("num_batches_tracked"))


def load_strict(model, state_dict):
    """load_state_dict(strict=True), accepting BN num_batches_tracked whether present in the file or not."""
    sd = dict(state_dict)
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = v
    model.load_state_dict(sd, strict=True)
    return model


def in_chans_of(state_dict, arch_name):
    """Input channels from the stem weight (greyscale repos' config.json does not say)."""
    if arch_name.startswith("convnext"):
        key = "stem.0.weight"
    elif arch_name.startswith("efficientnet"):
        key = "conv_stem.weight"
    else:
        key = "conv1.weight"
    return int(state_dict[key].shape[1])


class _Stub:
    """Stands in for any class a checkpoint's pickle names that is not importable here (e.g. zoobot schemas)."""

    def __init__(self, *a, **k):
        self.args = a

    def __setstate__(self, state):
        self.state = state


def _stub_missing_globals(path):
    """Register stand-in modules/classes for every GLOBAL in the zip's data.pkl that cannot be imported; returns the
    names added to sys.modules. (Debian's torch 1.13 torch.load ignores a custom pickle_module, hence this route.)"""
    import importlib
    import pickletools
    import sys
    import types
    import zipfile

    with zipfile.ZipFile(path) as z:
        pkl = [n for n in z.namelist() if n.endswith("data.pkl")][0]
        data = z.read(pkl)
    added = []
    for op, arg, _ in pickletools.genops(data):
        if op.name not in ("GLOBAL", "STACK_GLOBAL") or not isinstance(arg, str) or " " not in arg:
            continue
        mod, name = arg.split(" ", 1)
        try:
            getattr(importlib.import_module(mod), name)
            continue
        except (ImportError, AttributeError):
            pass
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):
            m = ".".join(parts[:i])
            if m not in sys.modules:
                sys.modules[m] = types.ModuleType(m)
                added.append(m)
        if not hasattr(sys.modules[mod], name):
            setattr(sys.modules[mod], name, type(name, (_Stub,), {"__module__": mod}))
    return added


def load_weights(path):
    """Read a released weight file by content: torch.save zip (pytorch_model.bin or a Lightning .ckpt) or safetensors.
    Returns (state_dict, whole object) where whole is the checkpoint dict for a .ckpt, else None."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"PK":
        import sys

        added = _stub_missing_globals(path)
        try:
            obj = torch.load(path, map_location="cpu")
        finally:
            for m in added:
                sys.modules.pop(m, None)
        if isinstance(obj, dict) and "state_dict" in obj:
            return obj["state_dict"], obj
        return obj, None
    import safetensors_io

    sd, _ = safetensors_io.load(path)
    return sd, None
