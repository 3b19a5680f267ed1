"""tools/preprocess_ref.py: an independent numpy reading of docs/preprocessing.md, the reference the C recipes
(io/preprocess.c) are tested against. Written from the document, not from the C: the view is a pair of explicit
float64 weight matrices, percentiles come from a full sort, the colour stages are numpy float32 array arithmetic.

Library use:   apply(planes, names, kind, spec, chans, size) -> float32 (chans, size, size)
Command line:  python3 tools/preprocess_ref.py FILE [--recipe SPEC] [--size 224] [--chans 3] [--hdu N] --out X.npy
(decodes FILE with astropy or PIL; no morphcat code involved).
"""
import argparse
import math
import sys

import numpy as np

DEFAULTS = dict(zoom=1.2, flip=0, quantize=1, max_blank=0.2, q=1.0, pmin=0.0, pmax=99.7)


class RecipeError(Exception):
    """A cutout the recipe refuses; status is 'bad_shape' or 'bad_pixels' (docs section 3)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def parse_spec(spec):
    """'name[:key=value,...]' -> dict (docs section 2)."""
    name, _, rest = (spec or "auto").partition(":")
    name = name or "auto"
    if name not in ("gz_decals", "image", "asinh", "auto"):
        raise ValueError("unknown recipe %r" % name)
    r = dict(DEFAULTS, name=name, bands=None)
    if name == "gz_decals":
        r["bands"] = ["g", "r", "z"]
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        if k == "bands":
            r["bands"] = v.split(";")
            assert len(r["bands"]) in (1, 3)
        elif k in ("flip", "quantize"):
            r[k] = int(v)
        elif k in ("zoom", "max_blank", "q", "pmin", "pmax"):
            r[k] = float(v)
        else:
            raise ValueError("unknown key %r" % k)
    return r


def resolve(r, kind, names):
    """Docs section 2: pictures always take 'image'; for FITS, what 'auto' becomes."""
    if kind != "fits":
        return "image"
    if r["name"] != "auto":
        return r["name"]
    low = [n.lower() for n in names]
    if all(low) and {"g", "r", "z"} <= set(low):
        return "gz_decals"
    return "asinh"


def find_plane(names, want, nband):
    for i, n in enumerate(names):
        if n and n.lower() == want.lower():
            return i
    if want.isdigit() and int(want) < nband:
        return int(want)
    return None


def pick_planes(recipe, r, names, nband, kind="fits"):
    """Docs section 2.1: plane indices feeding the recipe (1 = grey, 3 = R, G, B; gz_decals: g, r, z)."""
    bands = r["bands"] if kind == "fits" else None  # a band list names FITS planes; pictures are R, G, B or grey
    if recipe == "gz_decals" and (bands is None or len(bands) != 3):  # auto resolved to gz_decals
        bands = ["g", "r", "z"]
    if bands is not None:
        idx = [find_plane(names, b, nband) for b in bands]
        if None in idx and recipe == "gz_decals" and nband == 3 and not any(names) \
                and [b.lower() for b in bands] == ["g", "r", "z"]:
            idx = [0, 1, 2]
        if None in idx:
            raise RecipeError("bad_shape", "no band %r" % bands[idx.index(None)])
        return idx
    if nband >= 3:
        return [0, 1, 2] if recipe == "image" else [2, 1, 0]
    return [0]


# ------------------------------------------------------------------------------------------- colour stages

def gz_decals_colour(g, r, z, quantize):
    """Docs 4.1, as float32 numpy arrays; returns (3, h, w) float32 R, G, B."""
    f32 = np.float32
    mn = f32(np.arcsinh(-0.5))
    span = f32(np.arcsinh(300.0) - np.arcsinh(-0.5))
    rgb = np.empty((3,) + g.shape, f32)
    for plane, flux, scale in ((0, z, 0.019), (1, r, 0.014), (2, g, 0.008)):
        rgb[plane] = (np.arcsinh(flux.astype(f32) / f32(scale)) - mn) / span
    a = ((rgb[0] + rgb[1]) + rgb[2]) / f32(3)
    a = np.where(a == f32(0), f32(1), a)
    wt = np.max((rgb / a) / f32(2.5), axis=0)
    wt = np.minimum(wt, f32(1))
    wt = f32(1) - wt
    wt = np.sin((wt * f32(math.pi)) / f32(2))
    om = f32(1) - wt
    out = (rgb * wt + a * om) + (a * (om * om)) * rgb
    out = np.clip(out, f32(0), f32(1)).astype(f32)
    if quantize:
        out = (out * f32(255)).astype(np.uint8).astype(f32) / f32(255)
    return out


def percentile_sorted(s, p):
    """Docs 4.3 step 2 on an ascending array s."""
    n = s.size
    pos = p / 100.0 * (n - 1)
    k = int(math.floor(pos))
    if k >= n - 1:
        return float(s[-1])
    return float(s[k]) + (float(s[k + 1]) - float(s[k])) * (pos - k)


def asinh_colour(x, q, pmin, pmax):
    """Docs 4.3 for one plane (blanks already 0); float32 out."""
    s = np.sort(x.astype(np.float64), axis=None)
    lo, hi = percentile_sorted(s, pmin), percentile_sorted(s, pmax)
    if hi <= lo:
        return np.zeros_like(x, np.float32)
    v = (np.clip(x.astype(np.float64), lo, hi) - lo) / (hi - lo)
    return np.arcsinh(q * v).astype(np.float32)


# ------------------------------------------------------------------------------------------- the view

def view_matrix(n, start, side, size):
    """Docs 6 step 2 as a (size, n) matrix: row i holds the normalised triangle weights of output i."""
    scale = side / size
    f = max(scale, 1.0)
    centres = start + (np.arange(size) + 0.5) * scale
    j = np.arange(n) + 0.5
    t = np.maximum(0.0, 1.0 - np.abs(j[None, :] - centres[:, None]) / f)
    return t / t.sum(axis=1, keepdims=True)


def view(plane, zoom, size, flip):
    h, w = plane.shape
    s = min(w, h) / zoom
    wx = view_matrix(w, (w - s) / 2.0, s, size)
    wy = view_matrix(h, (h - s) / 2.0, s, size)
    out = wy @ plane.astype(np.float64) @ wx.T
    return out[::-1] if flip else out


# ------------------------------------------------------------------------------------------- the recipe

def apply(planes, names, kind, spec, chans=3, size=224):
    """planes: (nband, h, w) as io/cutout.h decodes them (row 0 = first stored row); names: band name per plane
    ('' when none); kind: 'fits', 'png' or 'jpeg'. Returns float32 (chans, size, size)."""
    planes = np.asarray(planes, np.float32)
    if planes.ndim == 2:
        planes = planes[None]
    nband, h, w = planes.shape
    names = list(names) + [""] * (nband - len(names))
    r = parse_spec(spec)
    recipe = resolve(r, kind, names)
    if w < 8 or h < 8:
        raise RecipeError("bad_shape", "image is %d x %d pixels" % (w, h))
    idx = pick_planes(recipe, r, names, nband, kind)
    used = []
    for i in idx:
        p = planes[i]
        blank = ~np.isfinite(p) | (p == 0)
        # pictures (PNG/JPEG): black sky is level 0, so only an entirely black plane is refused
        limit = r["max_blank"] if kind == "fits" else 1.0 - 0.5 / p.size
        if blank.mean() > limit:
            raise RecipeError("bad_pixels", "band %s: %.1f%% blank" % (names[i] or i, 100 * blank.mean()))
        used.append(np.where(np.isfinite(p), p, np.float32(0)).astype(np.float32))
    if recipe == "gz_decals":
        col = gz_decals_colour(used[0], used[1], used[2], r["quantize"])
    elif recipe == "image":
        col = np.stack([np.clip(p, 0, 255) / np.float32(255) for p in used]).astype(np.float32)
    else:
        col = np.stack([asinh_colour(p, r["q"], r["pmin"], r["pmax"]) for p in used])
    if chans == 1 and col.shape[0] == 3:
        col = ((col[0] + col[1] + col[2]) / np.float32(3))[None]
    out = np.stack([view(p, r["zoom"], size, r["flip"]) for p in col])
    if recipe != "asinh" and r["quantize"]:
        out = np.floor(np.clip(out, 0, 1) * 255 + 0.5) / 255
    if chans == 3 and out.shape[0] == 1:
        out = np.repeat(out, 3, axis=0)
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------------- decoding

def fits_band_names(hdr, nband):
    """Band names from a FITS header as io/cutout.h reads them: BAND0.., BANDS, FILTER."""
    names = [str(hdr.get("BAND%d" % i, "")).strip() for i in range(nband)]
    if any(names):
        return names
    bands = str(hdr.get("BANDS", "")).strip()
    toks = [t for t in bands.replace(",", " ").replace(";", " ").split() if t]
    if len(toks) == nband:
        return toks
    if len(toks) == 1 and len(bands) == nband:
        return list(bands)
    if nband == 1 and hdr.get("FILTER"):
        return [str(hdr["FILTER"]).strip()]
    return [""] * nband


def load(path, hdu=None):
    """Decode with astropy or PIL: (planes, names, kind)."""
    low = path.lower()
    if low.endswith((".png", ".jpg", ".jpeg")):
        from PIL import Image
        im = Image.open(path)
        kind = "png" if low.endswith(".png") else "jpeg"
        if im.mode in ("L", "LA", "1"):  # grey stays one plane; palettes become RGB, as libpng expands them
            a = np.asarray(im.convert("L"), np.float32)[None]
        elif im.mode.startswith("I"):
            a = np.asarray(im, np.float32)[None] / 257.0
        else:
            a = np.asarray(im.convert("RGB"), np.float32).transpose(2, 0, 1)
        return a, [""] * a.shape[0], kind
    from astropy.io import fits
    with fits.open(path) as hl:
        if hdu is None:
            hdu = next(i for i, x in enumerate(hl) if x.is_image and x.data is not None and x.data.size > 0)
        x = hl[hdu]
        data = np.squeeze(np.asarray(x.data, np.float32))
        if data.ndim == 2:
            data = data[None]
        return data, fits_band_names(x.header, data.shape[0]), "fits"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--recipe", default="auto")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--chans", type=int, default=3)
    ap.add_argument("--hdu", type=int, default=None, help="0-based astropy HDU index")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    planes, names, kind = load(a.file, a.hdu)
    try:
        t = apply(planes, names, kind, a.recipe, a.chans, a.size)
    except RecipeError as e:
        print("%s: %s" % (e.status, e), file=sys.stderr)
        return 1
    np.save(a.out, t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
