"""tests/test_cutout_read.py: `morphcat cutout` decodes FITS, PNG and JPEG cutouts to the same planes and WCS
centre that astropy and PIL give, and refuses bad files with one line and the right status, never crashing.

Generated files (always): every BITPIX with BSCALE/BZERO and BLANK, multi-extension files by EXTNAME/number,
empty primary HDU, tile-compressed (.fz) and gzipped files, degenerate axes, band-name keywords, PNG in every
colour type and bit depth (interlaced too), JPEG grey/RGB/progressive, and a catalogue of broken files; then a
byte-mutation loop over a small FITS, PNG and JPEG. Real files from ../shared/realdata when present.
Tolerances: planes equal to astropy/PIL exactly (float32), except lossy tile compression (astropy's own
decompression, 1e-6 relative); WCS centre within 1e-9 deg of astropy (both evaluate wcslib).
"""
import gzip
import io
import json
import os
import shutil
import struct
import subprocess
import warnings
import zlib

import numpy as np

import mctest

from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

warnings.simplefilter("ignore")  # astropy's FITSFixedWarning chatter about the real headers
T = mctest.Checks()
TMP = mctest.tmpdir()


def cutout(path, *extra):
    """Run morphcat cutout --json --planes; returns (rc, info or None, planes or None, stderr)."""
    out = os.path.join(TMP, "planes.npy")
    if os.path.exists(out):
        os.remove(out)
    cp = mctest.run(["cutout", path, "--json", "--planes", out] + list(extra), check=False)
    if cp.returncode != 0:
        return cp.returncode, None, None, cp.stderr
    return 0, json.loads(cp.stdout), np.load(out), cp.stderr


def same(a, b):
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def astropy_centre(header, w, h):
    """RA/Dec at FITS pixel ((w+1)/2, (h+1)/2) from astropy's celestial WCS, or None."""
    wcs = WCS(header).celestial
    if not wcs.has_celestial:
        return None
    ra, dec = wcs.all_pix2world([[(w + 1) / 2.0, (h + 1) / 2.0]], 1)[0]
    return float(ra), float(dec)


def check_fits(name, path, expect, header=None, hdu_arg=None, bands=None, rtol=0.0, want_hdu=None):
    extra = ["--hdu", hdu_arg] if hdu_arg else []
    rc, info, planes, err = cutout(path, *extra)
    if not T.check(rc == 0, "%s: decodes (%s)" % (name, err.strip())):
        return None
    exp = np.asarray(expect, np.float32)
    exp = np.squeeze(exp)
    if exp.ndim == 2:
        exp = exp[None]
    if rtol:
        ok = planes.shape == exp.shape and np.allclose(planes, exp, rtol=rtol, atol=rtol * float(np.nanmax(np.abs(exp))),
                                                       equal_nan=True)
    else:
        ok = same(planes, exp)
    T.check(ok, "%s: planes %s equal astropy's %s" % (name, planes.shape, exp.shape))
    if bands is not None:
        T.check(info["bands"] == bands, "%s: band names %s (expected %s)" % (name, info["bands"], bands))
    if want_hdu is not None:
        T.check(info["hdu"] == want_hdu, "%s: HDU %s read (expected %s)" % (name, info["hdu"], want_hdu))
    if header is not None:
        ref = astropy_centre(header, info["w"], info["h"])
        if ref is None:
            T.check(not info["has_wcs"], "%s: no celestial WCS, as astropy" % name)
        else:
            ok = info["has_wcs"] and abs(info["ra"] - ref[0]) < 1e-9 and abs(info["dec"] - ref[1]) < 1e-9
            T.check(ok, "%s: WCS centre %s, %s vs astropy %.10f, %.10f" % (name, info["ra"], info["dec"], *ref))
    return info


def check_bad(name, path, status, words=(), extra=()):
    cp = mctest.run(["cutout", path] + list(extra), check=False)
    lines = cp.stderr.strip().splitlines()
    ok = cp.returncode == 1 and len(lines) == 1 and lines[0].startswith("morphcat: %s: " % status)
    ok = ok and os.path.basename(path) in lines[0] and all(w in lines[0] for w in words)
    T.check(ok, "%s: exit %d, %r" % (name, cp.returncode, cp.stderr.strip()))


def wcs_header(w, h, naxis=2):
    hdr = fits.Header()
    hdr["CTYPE1"], hdr["CTYPE2"] = "RA---TAN", "DEC--TAN"
    hdr["CRVAL1"], hdr["CRVAL2"] = 150.1, 2.2
    hdr["CRPIX1"], hdr["CRPIX2"] = w / 2.0 - 3.5, h / 2.0 + 7.25
    hdr["CD1_1"], hdr["CD1_2"], hdr["CD2_1"], hdr["CD2_2"] = -7.2e-5, 1.1e-5, 1.3e-5, 7.3e-5
    return hdr


def p(*parts):
    return os.path.join(TMP, *parts)


rng = np.random.default_rng(20240611)

# ---------------------------------------------------------------------------------------- every BITPIX
base = rng.normal(100.0, 40.0, size=(24, 20))
cases = [
    ("uint8", np.clip(base, 0, 255).astype(np.uint8), {}),
    ("int8 (BZERO -128)", np.clip(base - 128, -128, 127).astype(np.int8), {}),
    ("int16", (base * 50).astype(np.int16), {}),
    ("uint16 (BZERO 32768)", (base * 300).clip(0, 65535).astype(np.uint16), {}),
    ("int32", (base * 1e6).astype(np.int32), {}),
    ("uint32 (BZERO 2^31)", (base * 1e7).clip(0, 4e9).astype(np.uint32), {}),
    ("int64", (base * 1e6).astype(np.int64), {}),
    ("float32", base.astype(np.float32), {}),
    ("float64", base, {}),
]
for name, data, _ in cases:
    fn = p("bitpix_%s.fits" % name.split()[0])
    hdr = wcs_header(20, 24)
    fits.PrimaryHDU(data, header=hdr).writeto(fn, overwrite=True)
    with fits.open(fn) as hl:
        check_fits("BITPIX %d %s" % (hl[0].header["BITPIX"], name), fn, hl[0].data, header=hl[0].header)

# float32 special values (morphcat reads unscaled float32 itself, scaled ones through CFITSIO): both paths give
# what CFITSIO does with a NaN null value: NaN and +-Inf as NaN, denormals and -0 as +0, the rest bit for bit
special = rng.normal(0.0, 1.0, size=(3, 24, 20)).astype(np.float32)
sv = np.array([np.nan, np.inf, -np.inf, 1e-40, -1e-40, -0.0, 1.4e-45, 3.4e38, -3.4e38, 1.17549435e-38],
              dtype=np.float32)
special.flat[:len(sv)] = sv
special.flat[20:23] = np.array([0x7F800001, 0xFFC00001, 0x7FFFFFFF], dtype=np.uint32).view(np.float32)
want = special.copy()
want[~np.isfinite(want)] = np.nan
want[(np.abs(want) < np.float32(1.17549435e-38))] = 0.0
want_bits = want.view(np.uint32).copy()
want_bits[np.isnan(want)] = 0x7FC00000
for label, bscale in (("unscaled", None), ("BSCALE 1", 1.0), ("BSCALE 2 (CFITSIO's path)", 2.0)):
    fn = p("special_%s.fits" % (bscale or 0))
    h = fits.PrimaryHDU(special)
    if bscale:
        h.header["BSCALE"] = bscale
    h.writeto(fn, overwrite=True, output_verify="ignore")
    for fname in (fn, fn + ".gz"):
        if fname.endswith(".gz"):
            with open(fn, "rb") as src, gzip.open(fname, "wb") as dst:
                shutil.copyfileobj(src, dst)
        rc, info, planes, err = cutout(fname)
        exp_bits = want_bits if not bscale or bscale == 1.0 else None
        if exp_bits is None:  # CFITSIO multiplies by 2: same special-value rules on the scaled values
            scaled = (special.astype(np.float64) * 2.0).astype(np.float32)
            scaled[~np.isfinite(special)] = np.nan
            scaled[np.abs(special) < np.float32(1.17549435e-38)] = 0.0
            exp_bits = scaled.view(np.uint32).copy()
            exp_bits[np.isnan(scaled)] = 0x7FC00000
        T.check(rc == 0 and planes.view(np.uint32).tolist() == exp_bits.tolist(),
                "float32 NaN/Inf/denormal/-0, %s%s: planes as CFITSIO gives them, bit for bit %s"
                % (label, " gzipped" if fname.endswith(".gz") else "", err.strip()))

# BSCALE/BZERO scaling of int16, and BLANK pixels becoming NaN
fn = p("scaled.fits")
h = fits.PrimaryHDU(base.astype(np.float64))
h.scale("int16", bscale=0.25, bzero=100.0)
h.writeto(fn, overwrite=True)
with fits.open(fn) as hl:
    T.check(hl[0].header["BSCALE"] == 0.25, "scaled int16 file has BSCALE 0.25")
    check_fits("BITPIX 16 BSCALE 0.25 BZERO 100", fn, hl[0].data)
raw = (base * 10).astype(np.int16)
raw[3, 4] = -32768
hb = fits.PrimaryHDU(raw)
hb.header["BLANK"] = -32768
hb.writeto(p("blank.fits"), overwrite=True)
with fits.open(p("blank.fits")) as hl:
    info = check_fits("BLANK pixels as NaN", p("blank.fits"), hl[0].data)

# ---------------------------------------------------------------------------------------- cubes and names
cube = rng.normal(0.01, 0.02, size=(3, 40, 36)).astype(np.float32)
hdr = wcs_header(36, 40)
for i, b in enumerate("grz"):
    hdr["BAND%d" % i] = b
fits.PrimaryHDU(cube, header=hdr).writeto(p("grz.fits"), overwrite=True)
check_fits("DECaLS-style g,r,z cube", p("grz.fits"), cube, header=fits.getheader(p("grz.fits")), bands=["g", "r", "z"])
hdr3 = wcs_header(36, 40)
hdr3["BANDS"] = "grz"
hdr3["CTYPE3"], hdr3["CRVAL3"], hdr3["CDELT3"], hdr3["CRPIX3"] = "WAVE", 4.8e-7, 1e-7, 1.0
fits.PrimaryHDU(cube, header=hdr3).writeto(p("bands_wave.fits"), overwrite=True)
check_fits("cube with BANDS='grz' and a spectral third axis", p("bands_wave.fits"), cube,
           header=fits.getheader(p("bands_wave.fits")), bands=["g", "r", "z"])
five = rng.normal(size=(5, 30, 30))
fits.PrimaryHDU(five, header=wcs_header(30, 30)).writeto(p("five.fits"), overwrite=True)
check_fits("5-band float64 cube", p("five.fits"), five, header=fits.getheader(p("five.fits")), bands=[""] * 5)
hf = fits.PrimaryHDU(base.astype(np.float32), header=wcs_header(20, 24))
hf.header["FILTER"] = "HSC-R"
hf.writeto(p("filter.fits"), overwrite=True)
check_fits("2-D image with FILTER", p("filter.fits"), base, bands=["HSC-R"])

# degenerate axes: numpy (1, N, M) and (N, M, 1)
for shape, nm in (((1, 24, 20), "1xNxM"), ((24, 20, 1), "NxMx1"), ((1, 1, 24, 20), "1x1xNxM")):
    d = base.astype(np.float32).reshape(shape)
    h = fits.PrimaryHDU(d, header=wcs_header(20, 24) if nm != "NxMx1" else None)
    h.writeto(p("degenerate_%s.fits" % nm), overwrite=True)
    rc, info, planes, err = cutout(p("degenerate_%s.fits" % nm))
    T.check(rc == 0 and same(planes, np.squeeze(d)[None]), "degenerate axes %s read as one plane %s" % (nm, err.strip()))
    if nm == "1xNxM":
        ref = astropy_centre(fits.getheader(p("degenerate_%s.fits" % nm)), 20, 24)
        T.check(info and info["has_wcs"] and abs(info["ra"] - ref[0]) < 1e-9, "degenerate 1xNxM keeps its WCS centre")

# ---------------------------------------------------------------------------------------- multi-extension
g = base.astype(np.float32)
r = (base * 2).astype(np.float32)
mef = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(g, header=wcs_header(20, 24), name="G"),
                    fits.ImageHDU(r, name="R"), fits.ImageHDU(r * 3, name="R", ver=2),
                    fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=np.arange(3.0))], name="TAB")])
mef.writeto(p("mef.fits"), overwrite=True)
check_fits("MEF: empty primary, first image is HDU 2", p("mef.fits"), g, header=mef[1].header, want_hdu=2)
check_fits("MEF: --hdu R (EXTNAME)", p("mef.fits"), r, hdu_arg="R", want_hdu=3)
check_fits("MEF: --hdu r (case-insensitive)", p("mef.fits"), r, hdu_arg="r", want_hdu=3)
check_fits("MEF: --hdu R,2 (EXTVER)", p("mef.fits"), r * 3, hdu_arg="R,2", want_hdu=4)
check_fits("MEF: --hdu 3 (number)", p("mef.fits"), r, hdu_arg="3", want_hdu=3)
check_bad("MEF: --hdu NOPE", p("mef.fits"), "bad_shape", ["no HDU named 'NOPE'"], ["--hdu", "NOPE"])
check_bad("MEF: --hdu 9", p("mef.fits"), "bad_shape", ["no HDU 9"], ["--hdu", "9"])
check_bad("MEF: --hdu 1 (empty primary)", p("mef.fits"), "bad_shape", ["no image data"], ["--hdu", "1"])
check_bad("MEF: --hdu TAB (a table)", p("mef.fits"), "bad_shape", ["binary table"], ["--hdu", "TAB"])

# ---------------------------------------------------------------------------------------- compressed
ints = (base * 20).astype(np.int16)
fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(ints, header=wcs_header(20, 24), compression_type="RICE_1",
                                                   name="SCI")]).writeto(p("rice.fits.fz"), overwrite=True)
with fits.open(p("rice.fits.fz")) as hl:
    check_fits("tile-compressed RICE int16 (.fits.fz)", p("rice.fits.fz"), hl[1].data, header=hl[1].header, want_hdu=2)
fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(cube, compression_type="GZIP_2")]).writeto(p("gz2.fz"), overwrite=True)
with fits.open(p("gz2.fz")) as hl:
    check_fits("tile-compressed float32 cube (GZIP_2, quantised)", p("gz2.fz"), hl[1].data, rtol=1e-6)
# RICE_1 quantised floats are decoded by morphcat itself (io/cutout_fits_rice.c), the rest by CFITSIO; astropy
# reads through CFITSIO, so the planes must be its values bit for bit: every dither method, seeds at both ends
# of the 10,000-value sequence, NaN (ZBLANK), exact zeros, tiles cut at the edges, cubes, float64
rice_n = 0
for shape in ((48, 61), (3, 40, 37)):
    src = (rng.normal(0.0, 1.0, size=shape) * 30.0).astype(np.float32)
    for qm, seed, tile, level in ((1, 1, None, 4.0), (1, 10000, (7, 11), 16.0), (2, 9999, (16, 16), 4.0),
                                  (-1, 17, None, -0.01), (1, 5000, (13, 64), -0.05), (2, 2, (1, 9), 8.0)):
        d = src.copy()
        d.flat[::11] = 0.0
        d.flat[5::17] = np.nan
        ts = None if tile is None else (1,) * (len(shape) - 2) + tile
        kw = dict(compression_type="RICE_1", quantize_method=qm, dither_seed=seed, quantize_level=level)
        if ts:
            kw["tile_shape"] = ts
        fn = p("rice_float_%d.fits.fz" % rice_n)
        rice_n += 1
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(d, **kw)]).writeto(fn, overwrite=True)
        with fits.open(fn) as hl:
            check_fits("RICE_1 float32 %s, ZQUANTIZ method %d, ZDITHER0 %d, tiles %s" % (shape, qm, seed, ts), fn,
                       hl[1].data)
fn = p("rice_float64.fits.fz")
fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(rng.normal(0.0, 1.0, size=(30, 29)), compression_type="RICE_1",
                                                   quantize_method=1, dither_seed=42)]).writeto(fn, overwrite=True)
with fits.open(fn) as hl:
    check_fits("RICE_1 float64 (quantised), read as float32", fn, hl[1].data)
d = rng.normal(0.0, 1.0, size=(64, 64)).astype(np.float32)
d[:16, :] = 1.0  # a constant tile cannot be quantised: CFITSIO stores it losslessly, so the whole HDU is its
fn = p("rice_constant_tile.fits.fz")
fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(d, compression_type="RICE_1", tile_shape=(16, 16))]).writeto(
    fn, overwrite=True)
with fits.open(fn) as hl:
    check_fits("RICE_1 float32 with a losslessly stored (constant) tile", fn, hl[1].data)
with open(p("grz.fits"), "rb") as f:
    blob = f.read()
with open(p("grz.fits.gz"), "wb") as f:
    f.write(gzip.compress(blob))
check_fits("gzipped FITS (.fits.gz)", p("grz.fits.gz"), cube, header=fits.getheader(p("grz.fits")), bands=["g", "r", "z"])
shutil.copy(p("grz.fits.gz"), p("gz_named_plain.fits"))
check_fits("gzipped FITS named .fits (decoder chosen by content)", p("gz_named_plain.fits"), cube)
# a file whose name CFITSIO's extended syntax would misread
shutil.copy(p("grz.fits"), p("cut_ra=150.1_dec=2[1].fits"))
check_fits("file name with '=' and '[1]'", p("cut_ra=150.1_dec=2[1].fits"), cube)

# ---------------------------------------------------------------------------------------- PNG


def png_bytes(arr, color_type, depth, interlace=False):
    """A PNG written by hand (filter 0), for layouts PIL does not write: 16-bit colour, Adam7 interlacing."""
    h, w = arr.shape[:2]
    a = arr.reshape(h, w, -1)
    dt = ">u2" if depth == 16 else "u1"

    def scan(sub):
        return b"".join(b"\x00" + row.astype(dt).tobytes() for row in sub)

    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        data = b"".join(scan(a[y0::dy, x0::dx]) for x0, y0, dx, dy in passes if a[y0::dy, x0::dx].size)
    else:
        data = scan(a)

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")


rgb8 = rng.integers(0, 256, size=(21, 19, 3), dtype=np.uint8)
rgba8 = rng.integers(0, 256, size=(21, 19, 4), dtype=np.uint8)
grey8 = rng.integers(0, 256, size=(21, 19), dtype=np.uint8)
pil_cases = [
    ("PNG grey 8-bit", Image.fromarray(grey8, "L"), grey8[None]),
    ("PNG grey+alpha", Image.fromarray(rgba8[..., :2], "LA"), rgba8[None, ..., 0]),
    ("PNG RGB 8-bit", Image.fromarray(rgb8, "RGB"), rgb8.transpose(2, 0, 1)),
    ("PNG RGBA (alpha dropped)", Image.fromarray(rgba8, "RGBA"), rgba8[..., :3].transpose(2, 0, 1)),
]
pal = Image.fromarray(rgb8, "RGB").quantize(colors=37)
pil_cases.append(("PNG palette", pal, np.asarray(pal.convert("RGB")).transpose(2, 0, 1)))
palt = pal.copy()
palt.info["transparency"] = 3
pil_cases.append(("PNG palette with tRNS", palt, np.asarray(pal.convert("RGB")).transpose(2, 0, 1)))
bw = Image.fromarray(grey8 > 128)
pil_cases.append(("PNG 1-bit", bw, np.asarray(bw.convert("L"))[None]))
g16 = rng.integers(0, 65536, size=(21, 19), dtype=np.uint16)
pil_cases.append(("PNG grey 16-bit (PIL I;16)", Image.fromarray(g16, "I;16"), g16[None] / 257.0))
every16 = np.arange(65536, dtype=np.uint16).reshape(256, 256)  # v / 257 is an ulp off in float for 254 of them
pil_cases.append(("PNG grey 16-bit every sample value", Image.fromarray(every16, "I;16"), every16[None] / 257.0))
for name, im, exp in pil_cases:
    fn = p(name.replace(" ", "_").replace("(", "").replace(")", "").replace(";", "").replace("+", "_") + ".png")
    im.save(fn)
    rc, info, planes, err = cutout(fn)
    T.check(rc == 0 and info["kind"] == "png" and same(planes, exp), "%s: planes equal %s %s" % (name, exp.shape, err.strip()))
rgb16 = rng.integers(0, 65536, size=(13, 11, 3), dtype=np.uint16)
rgba16 = rng.integers(0, 65536, size=(13, 11, 4), dtype=np.uint16)
ga16 = rng.integers(0, 65536, size=(13, 11, 2), dtype=np.uint16)
hand = [("RGB 16-bit", rgb16, 2, 16, False, rgb16.transpose(2, 0, 1) / 257.0),
        ("RGBA 16-bit", rgba16, 6, 16, False, rgba16[..., :3].transpose(2, 0, 1) / 257.0),
        ("grey+alpha 16-bit", ga16, 4, 16, False, ga16[None, ..., 0] / 257.0),
        ("interlaced RGB 8-bit", rgb8, 2, 8, True, rgb8.transpose(2, 0, 1)),
        ("interlaced grey 16-bit", g16, 0, 16, True, g16[None] / 257.0)]
for name, arr, ct, depth, il, exp in hand:
    fn = p("hand_%s.png" % name.replace(" ", "_"))
    with open(fn, "wb") as f:
        f.write(png_bytes(arr, ct, depth, il))
    rc, info, planes, err = cutout(fn)
    ok = rc == 0 and planes.shape == exp.shape and np.allclose(planes, exp, rtol=0, atol=1e-4)
    T.check(ok, "PNG %s: planes equal samples (/257 for 16-bit) %s" % (name, err.strip()))
    if il:  # the hand-written file is valid: PIL reads the same samples
        pil = np.asarray(Image.open(fn).convert("RGB" if ct == 2 else "I"), np.float64)
        pil = pil.transpose(2, 0, 1) if ct == 2 else pil[None] / 257.0
        T.check(np.allclose(pil, exp, atol=1e-9), "PNG %s: PIL decodes the hand-written file the same" % name)

# ---------------------------------------------------------------------------------------- JPEG
photo = np.clip(np.add.outer(np.arange(48), np.arange(40))[..., None] * [2, 3, 1] + rng.normal(0, 20, (48, 40, 3)),
                0, 255).astype(np.uint8)
for name, im, kw in (("JPEG grey", Image.fromarray(photo[..., 0], "L"), {}),
                     ("JPEG RGB 4:2:0", Image.fromarray(photo, "RGB"), {}),
                     ("JPEG RGB 4:4:4 q95", Image.fromarray(photo, "RGB"), {"subsampling": 0, "quality": 95}),
                     ("JPEG RGB progressive", Image.fromarray(photo, "RGB"), {"progressive": True})):
    fn = p(name.replace(" ", "_").replace(":", "") + ".jpg")
    im.save(fn, "JPEG", **kw)
    exp = np.asarray(Image.open(fn), np.float32)
    exp = exp[None] if exp.ndim == 2 else exp.transpose(2, 0, 1)
    rc, info, planes, err = cutout(fn)
    T.check(rc == 0 and info["kind"] == "jpeg" and same(planes, exp), "%s: planes equal PIL's %s %s" % (name, exp.shape, err.strip()))
Image.fromarray(photo, "RGB").convert("CMYK").save(p("cmyk.jpg"), "JPEG")
check_bad("CMYK JPEG refused", p("cmyk.jpg"), "corrupt_file", ["CMYK"])

# ---------------------------------------------------------------------------------------- real files
real = os.path.join(mctest.SHARED, "realdata")
if os.path.isdir(real):
    for rel in ("decals_grz/example_a.fits", "decals_grz/example_b.fits", "hsc_grizy/Cut_HSC.fits",
                "hsc_grizy/Cut_HST.fits", "hsc_grizy/PSF_HSC.fits", "hsc_grizy/hsc_ra=150.24071_dec=2.06514.fits",
                "hsc_legacy_2d/hsc_image.fits", "hsc_legacy_2d/desi_hdu_list_images.fits", "skimage/simple.fits",
                "skimage/multi.fits"):
        fn = os.path.join(real, rel)
        with fits.open(fn) as hl:
            k = next(i for i, x in enumerate(hl) if x.is_image and x.data is not None and x.data.size)
            bands = None
            if "decals" in rel:
                bands = ["g", "r", "z"]
            if rel.endswith("hsc_image.fits"):
                bands = ["r"]  # FILTER of the primary header, inherited (INHERIT = T)
            check_fits("real %s" % rel, fn, hl[k].data, header=hl[k].header, bands=bands, want_hdu=k + 1)
    with fits.open(os.path.join(real, "skimage/multi.fits")) as hl:
        check_fits("real skimage/multi.fits --hdu SCI,3", os.path.join(real, "skimage/multi.fits"), hl[3].data,
                   header=hl[3].header, hdu_arg="SCI,3", want_hdu=4)
    for rel in ("skimage/hubble_deep_field.jpg", "decals_grz/example_a.png", "decals_grz/example_b.png"):
        fn = os.path.join(real, rel)
        exp = np.asarray(Image.open(fn).convert("RGB"), np.float32).transpose(2, 0, 1)
        rc, info, planes, err = cutout(fn)
        T.check(rc == 0 and same(planes, exp), "real %s: planes equal PIL's %s" % (rel, err.strip()))
else:
    print("note: %s is absent; the real-file checks did not run" % real)

# ---------------------------------------------------------------------------------------- bad files
check_bad("missing file", p("nope.fits"), "missing_file", ["No such file"])
check_bad("a folder", TMP, "missing_file", ["directory"])
open(p("empty.fits"), "wb").close()
check_bad("empty file", p("empty.fits"), "corrupt_file", ["empty file"])
with open(p("grz.fits"), "rb") as f:
    blob = f.read()
with open(p("truncated.fits"), "wb") as f:
    f.write(blob[:2880 + 36 * 40 * 4 * 2 + 100])
check_bad("truncated FITS", p("truncated.fits"), "corrupt_file", ["truncated", "3x40x36", "after 2 of 3 planes"])
with open(p("header_only.fits"), "wb") as f:
    f.write(blob[:2880])
check_bad("FITS header without data", p("header_only.fits"), "corrupt_file", ["after 0 of 3 planes"])
with open(p("half_header.fits"), "wb") as f:
    f.write(blob[:1000])
check_bad("FITS cut inside its header", p("half_header.fits"), "corrupt_file")
with open(p("garbage.fits"), "wb") as f:
    f.write(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
check_bad("garbage bytes named .fits", p("garbage.fits"), "corrupt_file", ["not a FITS, PNG or JPEG"])
with open(p("garbage.png"), "wb") as f:
    f.write(b"GIF89a" + bytes(100))
check_bad("a GIF named .png", p("garbage.png"), "corrupt_file", ["not a PNG"])
with open(p("truncated.fits.gz"), "wb") as f:
    f.write(gzip.compress(blob)[:1500])
check_bad("truncated .fits.gz", p("truncated.fits.gz"), "corrupt_file")
fits.PrimaryHDU(np.arange(50, dtype=np.float32)).writeto(p("oned.fits"), overwrite=True)
check_bad("1-D FITS", p("oned.fits"), "bad_shape", ["1-D"])
fits.PrimaryHDU(np.zeros((2, 3, 8, 8), np.float32)).writeto(p("fourd.fits"), overwrite=True)
check_bad("4-D FITS", p("fourd.fits"), "bad_shape", ["4-D", "2x3x8x8"])
fits.PrimaryHDU(np.zeros((20, 8, 8), np.float32)).writeto(p("many_planes.fits"), overwrite=True)
check_bad("20 planes", p("many_planes.fits"), "bad_shape", ["20 planes"])
fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column(name="a", format="E",
                                                                          array=np.arange(5.0))])]).writeto(p("table.fits"), overwrite=True)
check_bad("table-only FITS", p("table.fits"), "bad_shape", ["no HDU holds an image", "binary table"])
# a header promising an enormous image is refused before any allocation
hdr_big = fits.Header()
hdr_big["SIMPLE"], hdr_big["BITPIX"], hdr_big["NAXIS"] = True, -32, 3
hdr_big["NAXIS1"], hdr_big["NAXIS2"], hdr_big["NAXIS3"] = 100000, 100000, 3
with open(p("huge.fits"), "wb") as f:
    f.write(hdr_big.tostring().encode())
check_bad("header promising 3x100000x100000", p("huge.fits"), "bad_shape", ["too large"])
png = open(p("PNG_RGB_8-bit.png"), "rb").read()
k = png.index(b"IDAT") + 10
with open(p("crc.png"), "wb") as f:
    f.write(png[:k] + bytes([png[k] ^ 0xFF]) + png[k + 1:])
check_bad("PNG with a damaged IDAT", p("crc.png"), "corrupt_file", ["PNG"])
with open(p("truncated.png"), "wb") as f:
    f.write(png[:len(png) // 2])
check_bad("truncated PNG", p("truncated.png"), "corrupt_file", ["PNG"])
jpg = open(p("JPEG_RGB_420.jpg"), "rb").read()
with open(p("truncated.jpg"), "wb") as f:
    f.write(jpg[:len(jpg) // 2])
check_bad("truncated JPEG", p("truncated.jpg"), "corrupt_file", ["JPEG"])
with open(p("corrupt.jpg"), "wb") as f:
    f.write(jpg[:40] + rng.integers(0, 256, len(jpg) - 40, dtype=np.uint8).tobytes())
check_bad("JPEG with random bytes after its start", p("corrupt.jpg"), "corrupt_file", ["JPEG"])
with open(p("notjpeg.jpg"), "wb") as f:
    f.write(b"hello")
check_bad("text named .jpg", p("notjpeg.jpg"), "corrupt_file", ["not a JPEG"])

# ---------------------------------------------------------------------------------------- mutation loop
small = rng.normal(0.01, 0.02, size=(3, 12, 12)).astype(np.float32)
hs = fits.PrimaryHDU(small, header=wcs_header(12, 12))
for i, b in enumerate("grz"):
    hs.header["BAND%d" % i] = b
buf = io.BytesIO()
hs.writeto(buf)
seeds = {"fits": buf.getvalue()}
buf = io.BytesIO()
Image.fromarray(rgb8[:12, :12]).save(buf, "PNG")
seeds["png"] = buf.getvalue()
buf = io.BytesIO()
Image.fromarray(photo[:16, :16]).save(buf, "JPEG")
seeds["jpg"] = buf.getvalue()
crashes, multiline, n = [], [], 0
for kind, seed in seeds.items():
    for trial in range(45):
        b = bytearray(seed)
        how = trial % 3
        if how == 0:  # flip a few bytes (header-heavy for FITS: most of its first 2880 bytes are the header)
            for _ in range(1 + trial % 5):
                lim = 2880 + 12 * 12 * 12 if kind == "fits" else len(b)
                b[int(rng.integers(0, min(lim, len(b))))] = int(rng.integers(0, 256))
        elif how == 1:  # truncate
            b = b[:int(rng.integers(1, len(b)))]
        else:  # overwrite a run with random bytes
            s = int(rng.integers(0, len(b) - 8))
            b[s:s + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        fn = p("mut_%s_%d.%s" % (kind, trial, kind))
        with open(fn, "wb") as f:
            f.write(bytes(b))
        # bytes, not text: a damaged header may hold anything (names are sanitised, but the test must not care)
        cp = subprocess.run([mctest.MORPHCAT, "cutout", fn, "--tensor", p("mut.npy")], capture_output=True)
        n += 1
        if cp.returncode not in (0, 1):
            crashes.append((fn, cp.returncode, cp.stderr[-300:]))
        elif cp.returncode == 1 and (len(cp.stderr.strip().splitlines()) != 1 or not cp.stderr.startswith(b"morphcat: ")):
            multiline.append((fn, cp.stderr))
T.check(not crashes, "mutation loop: %d mutated FITS/PNG/JPEG files, none crashed %s" % (n, crashes[:3]))
T.check(not multiline, "mutation loop: every refusal is one line %s" % multiline[:3])

shutil.rmtree(TMP, ignore_errors=True)
T.finish()
