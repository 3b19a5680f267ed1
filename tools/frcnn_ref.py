#!/usr/bin/python3
"""tools/frcnn_ref.py: reference generator for the C port of torchvision 0.14's `fasterrcnn_resnet50_fpn` (v1),
eval mode, batch 1, as Galaxy Zoo: Clump Scout uses it (num_classes=3: background, clump, odd clump; backbone
norm layers FrozenBatchNorm2d with eps 1e-5). See shared/notes/frcnn.md for the algorithm and constants.

The real Clump Scout checkpoints cannot be had here, so `make_model` builds the stock architecture with seeded
random weights and then *calibrates* them on images (real galaxy images when ../shared/realdata is present,
otherwise seeded synthetic blob images) so that every stage carries a signal of order 1 that depends on the input,
and so that the detector's output is rich: spread RPN objectness and dozens of scored detections per image.
No training takes place; the weights are random projections rescaled layer by layer (details in `calibrate`).

Use as a module:
    import frcnn_ref as R
    model = R.make_model(seed)                       # calibrated, eval mode
    R.save(model, "model.pth", prefix="module.")     # plain state_dict, optionally prefixed (DataParallel style)
    R.save_lightning(model, "model.ckpt")            # {"state_dict": {"model."+k: v}, "epoch": 0, ...}
    model = R.load("model.pth")                      # strips `module.` / `model.` prefixes
    ref = R.run_reference(model, img_chw_float01)    # dict name -> numpy array (layouts in run_reference)

or as a CLI (run with Debian's /usr/bin/python3, which has torch 1.13 and torchvision 0.14):
    tools/frcnn_ref.py make --seed S --out DIR [--prefix module.] [--classes 3] [--lightning] [--calib real|synthetic]
    tools/frcnn_ref.py run --model DIR/model.pth --image IMG --out DIR2 [--crop x0,y0,x1,y1] [--post-clumpscout]
IMG is a PNG/JPEG (read with PIL exactly as Clump Scout does), a .npy CHW float32 array in [0,1], or
`synthetic:SEED:HxW` (seeded smooth blob image; for tests that must run when ../shared is absent).
"""
import argparse
import json
import math
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops.misc import FrozenBatchNorm2d

BN_EPS = 1e-5  # FrozenBatchNorm2d default; the clump checkpoints keep it (overwrite_eps(0.0) only runs for COCO_V1)
CLUMPSCOUT_NMS_IOU = 0.2  # run_predictions.py: class-agnostic torchvision.ops.nms over all labels
CLUMPSCOUT_SCORE = 0.3  # run_post_processing.py default --score (kept when score >= 0.3)
# calibration targets (see calibrate)
RPN_LOGIT_STD = 2.0
RPN_LOGIT_MAX = 8.0
FG_FRAC_005 = 0.05
FG_FRAC_03 = 0.01
FG_MAX_LOGIT = 5.0

# shared/ sits beside the repository: <root>/main/tools/frcnn_ref.py -> <root>/shared/realdata
REALDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "realdata"


# --------------------------------------------------------------------------------------------------------------------
# images


def pil_to_chw01(pil_img, crop=None):
    """Clump Scout's pixel path: Image.open(p).convert('RGB')[.crop(box)] -> T.PILToTensor() -> T.ConvertImageDtype(float)
    i.e. uint8 / 255.0 (true division) as float32 CHW."""
    import torchvision.transforms as T

    img = pil_img.convert("RGB")
    if crop is not None:
        img = img.crop(tuple(int(c) for c in crop))
    t = T.PILToTensor()(img)
    return T.ConvertImageDtype(torch.float)(t)


def synthetic_image(seed, h, w):
    """Seeded smooth 'galaxy' image: a dark sky with a few coloured elliptical Gaussian blobs (a host plus compact
    knots) and faint noise, quantised to uint8 and divided by 255 like a PNG through Clump Scout's loader.
    Returns float32 CHW [3,h,w] in [0,1]."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((3, h, w))
    # host galaxy
    cy, cx = h * (0.4 + 0.2 * rng.rand()), w * (0.4 + 0.2 * rng.rand())
    s = 0.18 * min(h, w)
    q, th = 0.5 + 0.5 * rng.rand(), math.pi * rng.rand()
    u = (xx - cx) * math.cos(th) + (yy - cy) * math.sin(th)
    v = -(xx - cx) * math.sin(th) + (yy - cy) * math.cos(th)
    host = np.exp(-0.5 * ((u / s) ** 2 + (v / (q * s)) ** 2))
    img += host[None] * np.array([0.45, 0.4, 0.42])[:, None, None]
    # knots ("clumps") and field objects
    for _ in range(6 + rng.randint(6)):
        ky, kx = cy + rng.randn() * s, cx + rng.randn() * s
        ks = (0.03 + 0.04 * rng.rand()) * min(h, w)
        col = 0.4 + 0.6 * rng.rand(3)
        img += (0.1 + 0.3 * rng.rand()) * np.exp(-0.5 * ((xx - kx) ** 2 + (yy - ky) ** 2) / ks**2)[None] * col[:, None, None]
    img += 0.03 * rng.randn(3, h, w) + 0.06
    img = np.clip(np.round(np.clip(img, 0, 1) * 255), 0, 255).astype(np.uint8)
    return torch.from_numpy(img.astype(np.float32) / np.float32(255.0))


def load_image(spec, crop=None):
    """spec: path to PNG/JPEG (PIL), path to .npy (CHW float32 in [0,1]), or 'synthetic:SEED:HxW'.
    crop: (x0,y0,x1,y1) as PIL.Image.crop takes it (applied to every kind of input)."""
    if spec.startswith("synthetic:"):
        _, seed, hw = spec.split(":")
        h, w = (int(v) for v in hw.lower().split("x"))
        t = synthetic_image(int(seed), h, w)
        if crop is not None:
            x0, y0, x1, y1 = (int(c) for c in crop)
            t = t[:, y0:y1, x0:x1].contiguous()
        return t
    if spec.endswith(".npy"):
        a = np.load(spec).astype(np.float32)
        if a.ndim != 3 or a.shape[0] != 3:
            raise ValueError(f"{spec}: expected a CHW array with 3 channels, got shape {a.shape}")
        t = torch.from_numpy(a)
        if crop is not None:
            x0, y0, x1, y1 = (int(c) for c in crop)
            t = t[:, y0:y1, x0:x1].contiguous()
        return t
    from PIL import Image

    with Image.open(spec) as im:
        return pil_to_chw01(im, crop)


def default_calibration_images(kind=None):
    """Images the BN statistics and head scales are calibrated on. kind 'real' (needs ../shared/realdata), 'synthetic',
    or None = real when present else synthetic. Every image maps to 800x800 in the model transform, so they batch
    without padding. Returns (list of CHW float tensors, list of descriptions)."""
    if kind is None:
        kind = "real" if REALDATA.is_dir() else "synthetic"
    if kind == "real":
        dec = REALDATA / "decals_grz"
        hdf = REALDATA / "skimage" / "hubble_deep_field.jpg"
        specs = [
            (str(dec / "example_a.png"), None),  # 424x424
            (str(dec / "example_b.png"), (112, 112, 312, 312)),  # central 200x200, like Clump Scout's CUTOUT
            (str(hdf), (100, 150, 500, 550)),  # 400x400
            (str(hdf), (550, 400, 750, 600)),  # 200x200
        ]
        return [load_image(p, c) for p, c in specs], [f"{Path(p).name} crop={c}" for p, c in specs]
    if kind == "synthetic":
        specs = [(1001, 200), (1002, 400), (1003, 200), (1004, 400)]
        return [synthetic_image(s, n, n) for s, n in specs], [f"synthetic:{s}:{n}x{n}" for s, n in specs]
    raise ValueError(f"unknown calibration kind {kind!r}")


# --------------------------------------------------------------------------------------------------------------------
# model


def build_model(num_classes=3):
    """The bare architecture, exactly what fasterrcnn_resnet50_fpn(weights=None, weights_backbone=<any>,
    num_classes=num_classes) builds: resnet50 with FrozenBatchNorm2d(eps 1e-5) + _resnet_fpn_extractor (3 trainable
    layers; irrelevant in eval) + FasterRCNN with every default. Weights are torchvision's default init (uses the
    global torch RNG). Eval mode."""
    backbone = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(backbone, 3)
    model = FasterRCNN(backbone, num_classes=num_classes)
    return model.eval()


# Backbone batch-norm biases are drawn around +1, so most ReLUs are active. With zero-mean biases this random
# ResNet amplifies rounding: moving torchvision's own input by one float32 ulp moved its layer4 output by 1.3e-4
# (relative) and its detection scores by up to 3.6e-4, which makes a float32 comparison at 1e-4 meaningless; with
# the biases around +1 the same perturbation moves the FPN maps by ~3e-6 and the scores by ~2e-5 (measured).
BN_BIAS_MEAN = 1.0


@torch.no_grad()
def calibrate(model, images, seed, fg_max_logit=FG_MAX_LOGIT):
    """Turn a randomly initialised model into one whose activations are O(1) and input-dependent, and whose detector
    output is rich. `images`: list of CHW float [0,1] tensors that all map to the same transformed size.
    Every random draw uses a generator seeded from `seed`, and the statistics come from a forward pass, so the result
    is deterministic for a given (seed, images, torch build, thread count 1).

    1. Backbone FrozenBN: weight ~ U(0.5,1.5) (U(0.2,0.5) for the last BN of a residual branch, bn3, and for the
       downsample BN, so the residual sums grow slowly), bias ~ N(BN_BIAS_MEAN = 1, 0.2) (see BN_BIAS_MEAN). running_mean/var are set, in execution
       order within ONE forward pass of the calibration batch, to the per-channel mean/var (over N,H,W) of that BN's
       actual input (forward pre-hooks), so each BN output is weight*z+bias with z ~ standardised. A floor of
       1e-2*median(var) keeps near-dead channels from getting huge scales.
    2. FPN: inner (1x1) and layer (3x3) convs get random biases N(0,0.1) and are then rescaled (weight and bias by
       the same factor) so that each conv's output over the batch has std 1; done in execution order by forward hooks
       that also rescale the returned output, so later layers see calibrated inputs.
    3. RPN head: the shared 3x3 conv is rescaled so its pre-ReLU output over all five levels has std 1 (bias then
       N(-0.1,0.3)); cls_logits weights N(0,1) rescaled so the objectness logits over all anchors of the batch have
       std RPN_LOGIT_STD=2, bias set so their maximum is RPN_LOGIT_MAX=8 (mean ends near -10: sigmoid
       probabilities stay below 1-3e-4 on the calibration images, so no ties at 1.0 among proposal scores);
       bbox_pred weights N(0,1) rescaled so each delta component (dx,dy,dw,dh) has std 0.15 (biases N(0,0.05)),
       i.e. proposals move ~15% of the anchor size.
    4. Box head: proposals of the calibrated RPN are pooled; fc6 and fc7 are rescaled so their pre-ReLU outputs have
       std 1 (biases then N(0,0.3)).
    5. Predictor: cls_score rows are random directions with the per-image mean feature vectors projected out (so
       class logits follow within-image contrast rather than the image's overall level), background row scaled to
       logit std 0.5, foreground rows scaled/biased as explained inline (targets FG_FRAC_03, FG_FRAC_005,
       fg_max_logit). bbox_pred weights N(0,1) rescaled so the raw regression outputs have std 1.0 for dx,dy and
       0.75 for dw,dh (after the (10,10,5,5) weights: ~0.1 box-width shifts and exp(+-0.15) scales), biases
       N(0,0.1).
    Returns a dict of statistics (for the model's sidecar json)."""
    g = torch.Generator().manual_seed(int(seed) * 7919 + 17)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    def rand(*shape):
        return torch.rand(*shape, generator=g)

    stats = {}
    images_t, _ = model.transform(list(images))
    x = images_t.tensors

    # 1. backbone BN
    body = model.backbone.body
    hooks = []
    for name, m in body.named_modules():
        if isinstance(m, FrozenBatchNorm2d):
            c = m.weight.numel()
            small = name.endswith("bn3") or name.endswith("downsample.1")
            lo, hi = (0.2, 0.5) if small else (0.5, 1.5)
            m.weight.copy_(lo + (hi - lo) * rand(c))
            m.bias.copy_(BN_BIAS_MEAN + 0.2 * randn(c))
            m.eps = BN_EPS

            def pre(mod, inp):
                t = inp[0]
                mean = t.mean(dim=(0, 2, 3))
                var = t.var(dim=(0, 2, 3), unbiased=False)
                var = torch.clamp(var, min=1e-2 * float(var.median()) + 1e-12)
                mod.running_mean.copy_(mean)
                mod.running_var.copy_(var)

            hooks.append(m.register_forward_pre_hook(pre))
    feats = body(x)
    for h in hooks:
        h.remove()
    stats["body_std"] = {k: float(v.std()) for k, v in feats.items()}

    # 2. FPN
    fpn = model.backbone.fpn
    hooks = []
    convs = [blk[0] for blk in fpn.inner_blocks] + [blk[0] for blk in fpn.layer_blocks]
    for conv in convs:
        conv.bias.copy_(0.1 * randn(conv.bias.numel()))

        def post(mod, inp, out):
            s = float(out.std())
            mod.weight.div_(s)
            mod.bias.div_(s)
            return out / s

        hooks.append(conv.register_forward_hook(post))
    feats = fpn(feats)
    for h in hooks:
        h.remove()
    stats["fpn_std"] = {k: float(v.std()) for k, v in feats.items()}
    flist = list(feats.values())

    # 3. RPN head
    head = model.rpn.head
    conv = head.conv[0][0]
    conv.bias.zero_()
    pre_act = [conv(f) for f in flist]
    s = float(torch.cat([p.flatten() for p in pre_act]).std())
    conv.weight.div_(s)
    conv.bias.copy_(-0.1 + 0.3 * randn(conv.bias.numel()))
    tt = [torch.relu(conv(f)) for f in flist]
    cl, bp = head.cls_logits, head.bbox_pred
    cl.weight.copy_(randn(*cl.weight.shape))
    cl.bias.zero_()
    logits = torch.cat([cl(t).flatten() for t in tt])
    s = float(logits.std())
    cl.weight.div_(s / RPN_LOGIT_STD)
    logits = torch.cat([cl(t).flatten() for t in tt])
    cl.bias.fill_(RPN_LOGIT_MAX - float(logits.max()))
    bp.weight.copy_(randn(*bp.weight.shape))
    bp.bias.zero_()
    d = torch.cat([bp(t).permute(0, 2, 3, 1).reshape(-1, 4) for t in tt])  # channel 4a+k -> column k
    sk = d.std(dim=0)
    scale = (0.15 / sk).repeat(bp.weight.shape[0] // 4)
    bp.weight.mul_(scale[:, None, None, None])
    bp.bias.copy_(0.05 * randn(bp.bias.numel()))
    logits = torch.cat([cl(t).flatten() for t in tt])
    stats["rpn_logit_mean_std"] = [float(logits.mean()), float(logits.std())]

    # 4. box head on the calibrated RPN's proposals
    proposals, _ = model.rpn(images_t, feats)
    rh = model.roi_heads
    pooled = rh.box_roi_pool(feats, proposals, images_t.image_sizes)
    v = pooled.flatten(start_dim=1)
    for fc in (rh.box_head.fc6, rh.box_head.fc7):
        fc.bias.zero_()
        s = float(fc(v).std())
        fc.weight.div_(s)
        fc.bias.copy_(0.3 * randn(fc.bias.numel()))
        v = torch.relu(fc(v))
    h = v
    stats["box_features_mean_std"] = [float(h.mean()), float(h.std())]

    # 5. predictor
    cs, bb = rh.box_predictor.cls_score, rh.box_predictor.bbox_pred
    C = cs.weight.shape[0]
    per_img = torch.stack([c.mean(dim=0) for c in h.split([len(p) for p in proposals])])  # [n_img, 1024]
    q, _ = torch.linalg.qr(per_img.t())  # orthonormal basis of the per-image mean feature vectors
    w = randn(C, h.shape[1])
    w = w - (w @ q) @ q.t()  # logits see within-image contrast, not the image's overall level
    z = h @ w.t()
    z = (z - z.mean(dim=0)) / z.std(dim=0)
    a = torch.empty(C)
    b = torch.empty(C)
    a[0], b[0] = 0.5, 0.0  # background: weak random logit around 0
    l005, l03 = math.log(0.05 / 0.95), math.log(0.3 / 0.7)
    sizes = [len(p) for p in proposals]
    for c in range(1, C):
        # foreground class c: logit a*z+b (p ~ sigmoid(l_c - l_0)). Images differ in contrast (the within-image
        # spread of z varies 2-3x between a smooth DECaLS galaxy and a sharp Hubble deep field crop), so one pooled
        # target cannot suit both. On the calibration image with the SMALLEST spread, b is set so that a fraction
        # FG_FRAC_03 of its proposals is above p=0.3; the slope a is the smaller of
        #   - the one that also puts a fraction FG_FRAC_005 of that image's proposals above p=0.05, and
        #   - the one that makes the largest z over all calibration proposals reach fg_max_logit (no saturation
        #     of scores at 1.0, which would make exact ties).
        # With the default fg_max_logit=5 the second binds: every image then has >100 candidates per class and
        # the 100-detection cap is reached; fg_max_logit=inf gives steep slopes, galaxy images keep <100
        # detections (the 0.05 threshold is exercised) but sharp images saturate at 1.0 (score ties).
        zs = z[:, c].split(sizes)
        lo = min(zs, key=lambda t: float(t.std()))
        q005, q03 = (float(v) for v in torch.quantile(lo, torch.tensor([1 - FG_FRAC_005, 1 - FG_FRAC_03])))
        a_q = (l03 - l005) / (q03 - q005)
        a_max = (fg_max_logit - l03) / (float(z[:, c].max()) - q03) if math.isfinite(fg_max_logit) else math.inf
        a[c] = min(a_q, a_max)
        b[c] = l03 - a[c] * q03
    stats["fg_slopes"] = [float(v) for v in a[1:]]
    mu, sd = (h @ w.t()).mean(dim=0), (h @ w.t()).std(dim=0)
    cs.weight.copy_(w * (a / sd)[:, None])
    cs.bias.copy_(b - a * mu / sd)
    bb.weight.copy_(randn(*bb.weight.shape))
    bb.bias.zero_()
    r = bb(h).reshape(-1, C, 4)
    target = torch.tensor([1.0, 1.0, 0.75, 0.75])
    sk = r.reshape(-1, 4).std(dim=0)
    bb.weight.mul_((target / sk).repeat(C)[:, None])
    bb.bias.copy_(0.1 * randn(bb.bias.numel()))
    p = torch.softmax(cs(h), dim=1)
    stats["class_prob_quantiles_fg"] = [float(q) for q in torch.quantile(p[:, 1:].flatten(), torch.tensor([0.5, 0.9, 0.99, 1.0]))]
    return stats


def make_model(seed, num_classes=3, calib=None, return_info=False, fg_max_logit=FG_MAX_LOGIT):
    """Seeded, calibrated fasterrcnn_resnet50_fpn (v1) with FrozenBN eps 1e-5 backbone; eval mode.
    calib: None (real images from ../shared/realdata when present, else synthetic), 'real', 'synthetic', or a list of
    CHW float tensors that all transform to the same size. fg_max_logit: see calibrate step 5 (inf = steep box
    classifier). With return_info, returns (model, info dict)."""
    torch.manual_seed(int(seed))
    model = build_model(num_classes)
    if calib is None or isinstance(calib, str):
        imgs, desc = default_calibration_images(calib)
    else:
        imgs, desc = list(calib), [f"user image {tuple(t.shape)}" for t in calib]
    stats = calibrate(model, imgs, seed, fg_max_logit=float(fg_max_logit))
    model.eval()
    info = {"seed": int(seed), "num_classes": int(num_classes), "fg_max_logit": float(fg_max_logit), "calibration_images": desc, "calibration_stats": stats,
            "torch": torch.__version__, "torchvision": torchvision.__version__}
    return (model, info) if return_info else model


def save(model, path, prefix=""):
    """torch.save(state_dict) with every key prefixed by `prefix`. prefix="" is a plain model.state_dict();
    prefix="module." is what Clump Scout's nn.DataParallel-wrapped models saved (the released *_run20_*.pth)."""
    sd = OrderedDict((prefix + k, v) for k, v in model.state_dict().items())
    torch.save(sd, path)


def save_lightning(model, path, epoch=0):
    """A PyTorch-Lightning-like checkpoint: {"state_dict": {"model." + k: v}, "epoch", "global_step",
    "pytorch-lightning_version", ...}. The key prefix is "model." (a LightningModule holding the detector as
    self.model), NOT "module."."""
    sd = OrderedDict(("model." + k, v) for k, v in model.state_dict().items())
    torch.save({"state_dict": sd, "epoch": int(epoch), "global_step": 0, "pytorch-lightning_version": "1.9.0",
                "hyper_parameters": {"num_classes": int(model.roi_heads.box_predictor.cls_score.out_features)}}, path)


def strip_state_dict(obj):
    """Plain state_dict from a loaded checkpoint: unwraps {"state_dict": ...} / {"model": ...} and strips one leading
    'module.' or 'model.' from every key when all keys carry it."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    sd = OrderedDict(obj)
    for p in ("module.", "model."):
        if sd and all(k.startswith(p) for k in sd):
            sd = OrderedDict((k[len(p):], v) for k, v in sd.items())
    return sd


def load(path, num_classes=None):
    """Build the architecture and load a checkpoint written by save/save_lightning (or a Clump Scout .pth). strict."""
    sd = strip_state_dict(torch.load(path, map_location="cpu"))
    if num_classes is None:
        num_classes = sd["roi_heads.box_predictor.cls_score.weight"].shape[0]
    model = build_model(num_classes)
    model.load_state_dict(sd, strict=True)
    return model.eval()


# --------------------------------------------------------------------------------------------------------------------
# reference run


def _np(t):
    return t.detach().cpu().numpy().copy()


@torch.no_grad()
def run_reference(model, img_chw_float01, post_clumpscout=False):
    """Run one image (batch 1) through the model step by step, exactly as GeneralizedRCNN.forward /
    RegionProposalNetwork.forward / RoIHeads.forward do in eval mode, and return every intermediate as numpy.
    All feature maps are NCHW with N=1 as torch gives them. float32 unless noted.

      image            [3,H,W]       the input (float in [0,1])
      transformed      [1,3,Hp,Wp]   normalised, resized (bilinear), zero-padded to multiples of 32
      image_sizes      [1,2] int64   resized (unpadded) (h, w)
      original_size    [2] int64     (H, W)
      body_layer1..4   [1,C,h,w]     ResNet50 layer outputs (C 256/512/1024/2048, stride 4/8/16/32)
      fpn_0..fpn_3, fpn_pool  [1,256,h,w]
      rpn_objectness_0..4     [1,3,h,w]   RPN logits per FPN level (channel = anchor a)
      rpn_deltas_0..4         [1,12,h,w]  channel 4a+k, k = dx,dy,dw,dh
      anchors          [A,4]         all anchors, level-major then (y, x, a); x1,y1,x2,y2
      num_anchors_per_level [5] int64
      rpn_proposals    [P,4]         boxes after per-level NMS, top <=1000, resized-image coordinates
      rpn_scores       [P]           their objectness probabilities (sigmoid), descending
      roi_pooled       [P,256,7,7]   MultiScaleRoIAlign output
      box_features     [P,1024]      TwoMLPHead output (after fc7 ReLU)
      class_logits     [P,C]; box_regression [P,4C] (column 4c+k)
      det_boxes_resized [D,4], det_scores_resized [D], det_labels_resized [D] int64   roi_heads output (resized coords)
      boxes [D,4], scores [D], labels [D] int64     after transform.postprocess (original image coordinates)
      with post_clumpscout: cs_boxes, cs_scores, cs_labels   class-agnostic nms(0.2) then score >= 0.3
    Also checks that the step-by-step result equals model([img]) bit for bit (raises if not)."""
    model.eval()
    img = img_chw_float01.to(torch.float32)
    out = OrderedDict()
    out["image"] = _np(img)
    orig = (int(img.shape[-2]), int(img.shape[-1]))
    out["original_size"] = np.array(orig, dtype=np.int64)

    images, _ = model.transform([img])
    out["transformed"] = _np(images.tensors)
    out["image_sizes"] = np.array(images.image_sizes, dtype=np.int64)

    body_out = model.backbone.body(images.tensors)
    for i, k in enumerate(body_out):
        out[f"body_layer{i + 1}"] = _np(body_out[k])
    features = model.backbone.fpn(body_out)
    for k, v in features.items():
        out[f"fpn_{k}"] = _np(v)

    rpn = model.rpn
    flist = list(features.values())
    objectness, pred_bbox_deltas = rpn.head(flist)
    for i, (o, d) in enumerate(zip(objectness, pred_bbox_deltas)):
        out[f"rpn_objectness_{i}"] = _np(o)
        out[f"rpn_deltas_{i}"] = _np(d)
    anchors = rpn.anchor_generator(images, flist)
    out["anchors"] = _np(anchors[0])
    num_anchors_per_level = [int(o[0].shape[0] * o[0].shape[1] * o[0].shape[2]) for o in objectness]
    out["num_anchors_per_level"] = np.array(num_anchors_per_level, dtype=np.int64)
    obj_flat, deltas_flat = concat_box_prediction_layers(objectness, pred_bbox_deltas)
    proposals = rpn.box_coder.decode(deltas_flat, anchors).view(1, -1, 4)
    boxes, scores = rpn.filter_proposals(proposals, obj_flat, images.image_sizes, num_anchors_per_level)
    out["rpn_proposals"] = _np(boxes[0])
    out["rpn_scores"] = _np(scores[0])
    check_props, _ = rpn(images, features)
    if not torch.equal(check_props[0], boxes[0]):
        raise RuntimeError("step-by-step RPN proposals differ from rpn.forward")

    rh = model.roi_heads
    pooled = rh.box_roi_pool(features, boxes, images.image_sizes)
    out["roi_pooled"] = _np(pooled)
    bf = rh.box_head(pooled)
    out["box_features"] = _np(bf)
    class_logits, box_regression = rh.box_predictor(bf)
    out["class_logits"] = _np(class_logits)
    out["box_regression"] = _np(box_regression)
    dboxes, dscores, dlabels = rh.postprocess_detections(class_logits, box_regression, boxes, images.image_sizes)
    out["det_boxes_resized"] = _np(dboxes[0])
    out["det_scores_resized"] = _np(dscores[0])
    out["det_labels_resized"] = _np(dlabels[0]).astype(np.int64)
    dets = [{"boxes": dboxes[0], "labels": dlabels[0], "scores": dscores[0]}]
    dets = model.transform.postprocess(dets, images.image_sizes, [orig])
    out["boxes"] = _np(dets[0]["boxes"])
    out["scores"] = _np(dets[0]["scores"])
    out["labels"] = _np(dets[0]["labels"]).astype(np.int64)

    full = model([img])[0]
    for k in ("boxes", "scores", "labels"):
        if not torch.equal(full[k], dets[0][k]):
            raise RuntimeError(f"step-by-step {k} differ from model.forward")

    if post_clumpscout:
        b, s, l = clumpscout_post(dets[0]["boxes"], dets[0]["scores"], dets[0]["labels"])
        out["cs_boxes"], out["cs_scores"], out["cs_labels"] = _np(b), _np(s), _np(l).astype(np.int64)
    return out


def clumpscout_post(boxes, scores, labels, iou=CLUMPSCOUT_NMS_IOU, score=CLUMPSCOUT_SCORE):
    """Clump Scout's extra post-processing: torchvision.ops.nms(boxes, scores, 0.2) over all labels together
    (run_predictions.py), then keep score >= 0.3 (run_post_processing.py). Order = nms order (score descending)."""
    keep = torchvision.ops.nms(boxes, scores, iou)
    b, s, l = boxes[keep], scores[keep], labels[keep]
    m = s >= score
    return b[m], s[m], l[m]


def count_ties(a):
    """Number of values in `a` that equal another value in it (exact float equality)."""
    a = np.asarray(a).ravel()
    if a.size == 0:
        return 0
    _, inv, cnt = np.unique(a, return_inverse=True, return_counts=True)
    return int((cnt[inv] > 1).sum())


def _topk_boundary_ties(ref, k):
    """Per FPN level: how many logits outside the level's top-k equal the k-th largest one (0 = the top-k set is
    well defined; >0 = torch.topk's choice among equal logits is implementation-defined)."""
    out = []
    for i in range(len(ref["num_anchors_per_level"])):
        v = np.sort(ref[f"rpn_objectness_{i}"].ravel())[::-1]
        out.append(int((v[k:] == v[k - 1]).sum()) if v.size > k else 0)
    return out


def summarize(ref, model):
    """meta.json content for one reference run."""
    rh, rpn, tr = model.roi_heads, model.rpn, model.transform
    sc = ref["scores"]
    lab = ref["labels"]
    meta = {
        "layout": "NCHW (torch order) for feature maps; boxes x1,y1,x2,y2",
        "original_size": ref["original_size"].tolist(),
        "image_sizes": ref["image_sizes"].tolist(),
        "transformed_shape": list(ref["transformed"].shape),
        "feature_shapes": {k: list(v.shape) for k, v in ref.items() if k.startswith(("body_", "fpn_"))},
        "num_anchors_per_level": ref["num_anchors_per_level"].tolist(),
        "thresholds": {
            "min_size": list(tr.min_size), "max_size": tr.max_size, "image_mean": tr.image_mean, "image_std": tr.image_std,
            "size_divisible": tr.size_divisible, "rpn_pre_nms_top_n": rpn._pre_nms_top_n["testing"],
            "rpn_post_nms_top_n": rpn._post_nms_top_n["testing"], "rpn_nms_thresh": rpn.nms_thresh,
            "rpn_score_thresh": rpn.score_thresh, "rpn_min_size": rpn.min_size,
            "box_score_thresh": rh.score_thresh, "box_nms_thresh": rh.nms_thresh,
            "box_detections_per_img": rh.detections_per_img, "box_coder_weights": list(rh.box_coder.weights),
            "clumpscout_nms_iou": CLUMPSCOUT_NMS_IOU, "clumpscout_score": CLUMPSCOUT_SCORE,
        },
        "counts": {
            "anchors": int(ref["anchors"].shape[0]), "rpn_proposals": int(ref["rpn_proposals"].shape[0]),
            "detections": int(sc.shape[0]),
            "detections_per_label": {str(int(c)): int((lab == c).sum()) for c in np.unique(lab)},
            "detections_above_0.3": int((sc > 0.3).sum()),
        },
        "score_range": [float(sc.min()), float(sc.max())] if sc.size else None,
        "rpn_score_range": [float(ref["rpn_scores"].min()), float(ref["rpn_scores"].max())],
        "ties": {"rpn_scores": count_ties(ref["rpn_scores"]), "detection_scores": count_ties(sc),
                 "rpn_topk_boundary": _topk_boundary_ties(ref, rpn._pre_nms_top_n["testing"])},
        "torch": torch.__version__, "torchvision": torchvision.__version__,
    }
    if "cs_scores" in ref:
        meta["counts"]["clumpscout"] = int(ref["cs_scores"].shape[0])
    return meta


# --------------------------------------------------------------------------------------------------------------------
# CLI


def _parse_crop(s):
    if s is None:
        return None
    v = [int(x) for x in s.split(",")]
    if len(v) != 4:
        raise argparse.ArgumentTypeError("--crop wants x0,y0,x1,y1")
    return v


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="write DIR/model.pth (+ DIR/model.json)")
    mk.add_argument("--seed", type=int, required=True)
    mk.add_argument("--out", required=True)
    mk.add_argument("--prefix", default="", help="key prefix, e.g. 'module.' (DataParallel)")
    mk.add_argument("--classes", type=int, default=3)
    mk.add_argument("--lightning", action="store_true", help="also write DIR/model.ckpt ({'state_dict': {'model.'+k}})")
    mk.add_argument("--fg-max-logit", type=float, default=FG_MAX_LOGIT,
                    help="cap on the box classifier's calibration logits (inf: steep, fewer but saturating scores)")
    mk.add_argument("--calib", choices=["real", "synthetic"], default=None,
                    help="calibration images (default: real when ../shared/realdata exists, else synthetic)")
    rn = sub.add_parser("run", help="write every intermediate as DIR2/<name>.npy + DIR2/meta.json")
    rn.add_argument("--model", required=True)
    rn.add_argument("--image", required=True, help="PNG/JPEG, .npy CHW float32 [0,1], or synthetic:SEED:HxW")
    rn.add_argument("--out", required=True)
    rn.add_argument("--crop", type=_parse_crop, default=None, help="x0,y0,x1,y1 (PIL crop box)")
    rn.add_argument("--post-clumpscout", action="store_true")
    rn.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    if args.cmd == "make":
        torch.set_num_threads(1)
        os.makedirs(args.out, exist_ok=True)
        model, info = make_model(args.seed, args.classes, calib=args.calib, return_info=True,
                                 fg_max_logit=args.fg_max_logit)
        save(model, os.path.join(args.out, "model.pth"), prefix=args.prefix)
        info["prefix"] = args.prefix
        if args.lightning:
            save_lightning(model, os.path.join(args.out, "model.ckpt"))
        with open(os.path.join(args.out, "model.json"), "w") as f:
            json.dump(info, f, indent=1)
        print(json.dumps({"model": os.path.join(args.out, "model.pth"), "calibration": info["calibration_images"]}))
        return 0

    torch.set_num_threads(args.threads)
    model = load(args.model)
    img = load_image(args.image, args.crop)
    t0 = time.time()
    ref = run_reference(model, img, post_clumpscout=args.post_clumpscout)
    dt = time.time() - t0
    os.makedirs(args.out, exist_ok=True)
    for k, v in ref.items():
        np.save(os.path.join(args.out, k + ".npy"), v)
    meta = summarize(ref, model)
    meta.update({"image": os.path.basename(args.image) if not args.image.startswith("synthetic:") else args.image,
                 "crop": args.crop, "seconds": round(dt, 3), "threads": args.threads,
                 "arrays": {k: [list(v.shape), str(v.dtype)] for k, v in ref.items()}})
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps({"out": args.out, "counts": meta["counts"], "score_range": meta["score_range"],
                      "ties": meta["ties"], "seconds": meta["seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
