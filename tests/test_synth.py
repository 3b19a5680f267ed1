"""tests/test_synth.py: `morphcat synth` writes a deterministic, well-formed synthetic survey.

Protects io/synth.c and pipeline/cmd_synth.c, which the demo and the pipeline tests build on: the same seed gives
byte-identical files and any one row can be regenerated alone; every good FITS cutout reads in astropy as a 3x64x64
float32 g,r,z cube in nanomaggies with BAND keywords and a TAN WCS whose centre is the manifest's ra, dec (within
0.01 arcsec); fluxes and sky noise are DECaLS-like; galaxies differ from each other; every broken row is broken in
the way broken.csv says, once per kind; the manifest is valid CSV; bad arguments are refused.
"""
import csv
import filecmp
import io
import os
import shutil
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mctest  # noqa: E402

import numpy as np  # noqa: E402

try:
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning
    from PIL import Image
except ImportError as e:  # pragma: no cover
    mctest.skip("astropy or PIL is missing for %s: %s" % (sys.executable, e))

if not os.access(mctest.MORPHCAT, os.X_OK):
    mctest.skip("%s is not built (make morphcat)" % mctest.MORPHCAT)

C = mctest.Checks()
TMP = mctest.tmpdir()
N, SIZE, SEED = 60, 64, 7
PIXSCALE = 0.262  # arcsec per pixel
ARGS = ["--n", str(N), "--size", str(SIZE), "--seed", str(SEED), "--png-fraction", "0.1", "--plain-fraction", "0.1"]
KINDS = {"truncated_fits", "garbage_fits", "missing_file", "empty_file", "zero_z_band", "nan_cube", "image_2d",
         "two_planes", "corrupt_png", "truncated_jpeg", "empty_file_loc", "bad_ra"}
STATUSES = {"missing_file", "corrupt_file", "bad_shape", "bad_pixels", "bad_manifest_row"}


def synth(out, *extra, check=True):
    return mctest.run(["synth", "--out", out] + ARGS + list(extra), check=check)


def tree(root):
    """Relative paths of every file under root."""
    out = set()
    for d, _, files in os.walk(root):
        for f in files:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out


def sep_arcsec(ra1, dec1, ra2, dec2):
    """Angular separation (arcsec) of two positions in degrees, haversine form (exact at tiny angles)."""
    r1, d1, r2, d2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return float(np.degrees(2 * np.arcsin(np.sqrt(h))) * 3600)


def image_hdu(hdul):
    """The first HDU holding an image: the primary of a plain .fits, extension 1 of a .fits.fz."""
    for h in hdul:
        if h.is_image and h.header.get("NAXIS", 0) >= 2:
            return h
    return None


def fits_data_any(p):
    with fits.open(p, memmap=False) as hdul:
        return np.array(image_hdu(hdul).data, dtype=np.float64)


def robust_sigma(x):
    """Per-pixel noise from first differences along rows (a smooth galaxy barely moves it), nanomaggies."""
    d = np.diff(x, axis=1).ravel()
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


# ---- determinism -------------------------------------------------------------------------------------------

A, B = os.path.join(TMP, "a"), os.path.join(TMP, "b")
cp = synth(A)
summary = cp.stdout.strip().splitlines()
C.check(len(summary) == 1 and summary[0].startswith("synth: %d rows" % N), "prints a one-line summary: %r" % cp.stdout)
synth(B)
ta, tb = tree(A), tree(B)
same = ta == tb and all(filecmp.cmp(os.path.join(A, f), os.path.join(B, f), shallow=False) for f in ta)
C.check(same, "two runs with seed %d are byte-identical (%d files)" % (SEED, len(ta)))

rows = list(csv.DictReader(open(os.path.join(A, "manifest.csv"), newline="")))
broken = list(csv.DictReader(open(os.path.join(A, "broken.csv"), newline="")))
broken_by_id = {b["id_str"]: b for b in broken}

# one row alone, regenerated into an empty folder, is the same file
solo = os.path.join(TMP, "solo")
picked = [i for i, r in enumerate(rows) if r["file_loc"].endswith((".fits.fz", ".png")) and r["id_str"] not in broken_by_id]
picked = [picked[0], picked[-1]] + [i for i, r in enumerate(rows) if r["file_loc"].endswith(".png")][:1]
ok = True
for i in picked:
    mctest.run(["synth", "--out", solo] + ARGS + ["--only", str(i)])
    f = rows[i]["file_loc"]
    ok &= filecmp.cmp(os.path.join(A, f), os.path.join(solo, f), shallow=False)
C.check(ok and tree(solo) == {rows[i]["file_loc"] for i in picked},
        "rows %s regenerated alone with --only are byte-identical to the survey's" % picked)

other = os.path.join(TMP, "other")
mctest.run(["synth", "--out", other, "--n", str(N), "--size", str(SIZE), "--seed", str(SEED + 1), "--pixscale", "0.4"])
first_good = next(r["file_loc"] for r in rows if r["file_loc"].endswith(".fits.fz"))
C.check(not filecmp.cmp(os.path.join(A, "manifest.csv"), os.path.join(other, "manifest.csv"), shallow=False)
        and not filecmp.cmp(os.path.join(A, first_good), os.path.join(other, first_good), shallow=False),
        "another seed gives another survey")
with fits.open(os.path.join(other, first_good)) as hdul:
    cd = (hdul[1].header["CD1_1"], hdul[1].header["CD2_2"])
C.check(abs(cd[0] + 0.4 / 3600) < 1e-12 and abs(cd[1] - 0.4 / 3600) < 1e-12,
        "--pixscale 0.4 gives CD1_1 = -CD2_2 = 0.4 arcsec in degrees: %r" % (cd,))

# ---- the manifest ----------------------------------------------------------------------------------------

raw = open(os.path.join(A, "manifest.csv"), newline="").read()
parsed = list(csv.reader(io.StringIO(raw)))
C.check(parsed[0] == ["id_str", "file_loc", "ra", "dec"] and all(len(r) == 4 for r in parsed) and len(parsed) == N + 1,
        "manifest.csv is CSV with header id_str,file_loc,ra,dec and %d rows of 4 fields" % N)
ids = [r["id_str"] for r in rows]
C.check(len(set(ids)) == N and all(i.startswith("synth_") for i in ids), "id_str values are unique synth_NNNNNN")
C.check(all(not r["file_loc"] or (not os.path.isabs(r["file_loc"]) and r["file_loc"].startswith("cutouts/"))
            for r in rows), "file_loc is relative to the survey folder, under cutouts/")

bad_pos, positions, n_empty = [], {}, 0
for r in rows:
    if r["id_str"] in broken_by_id and broken_by_id[r["id_str"]]["failure"] == "bad_ra":
        continue
    if r["ra"] == "" and r["dec"] == "":
        n_empty += 1
        continue
    try:
        ra, dec = float(r["ra"]), float(r["dec"])
    except ValueError:
        bad_pos.append(r["id_str"])
        continue
    # the footprint: 358.5 < ra < 360 or 0 <= ra < 1.5, |dec| < 1.25 (Stripe 82 across RA = 0)
    if not ((358.5 <= ra < 360 or 0 <= ra <= 1.5) and abs(dec) <= 1.25):
        bad_pos.append(r["id_str"])
    positions[r["id_str"]] = (ra, dec)
C.check(not bad_pos, "every ra, dec parses and lies in the footprint patch%s" % (": %s" % bad_pos if bad_pos else ""))
C.check(3 <= n_empty <= 9, "about a tenth of the rows (%d) leave ra, dec empty for the WCS path" % n_empty)

# ---- good cutouts ----------------------------------------------------------------------------------------

good = [r for r in rows if r["id_str"] not in broken_by_id]
kinds = {".fits.fz": 0, ".fits": 0, ".png": 0}
for r in good:
    for ext in kinds:
        if r["file_loc"].endswith(ext):
            kinds[ext] += 1
            break
C.check(kinds[".fits.fz"] >= 30 and kinds[".fits"] >= 2 and kinds[".png"] >= 2 and sum(kinds.values()) == len(good) == N - 12,
        "good rows: %d .fits.fz, %d .fits, %d .png, 12 broken" % (kinds[".fits.fz"], kinds[".fits"], kinds[".png"]))

problems, fluxes, sigmas, r_planes, wcs_err = [], [], [], [], 0.0
deg = PIXSCALE / 3600
for r in good + [r for r in rows if broken_by_id.get(r["id_str"], {}).get("failure") == "bad_ra"]:
    p = os.path.join(A, r["file_loc"])
    if r["file_loc"].endswith(".png"):
        continue
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any astropy complaint about a good file is a failure
        try:
            with fits.open(p, memmap=False) as hdul:
                h = image_hdu(hdul)
                data = np.array(h.data)
                hdr = h.header.copy()
            # wcslib's cdfix notes that a 3-D header has no CD3_3; the cutout service's own files draw it too
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(hdr).celestial
        except Exception as e:
            problems.append("%s: astropy: %s" % (r["file_loc"], e))
            continue
    what = r["file_loc"]
    if data.shape != (3, SIZE, SIZE) or data.dtype.kind != "f" or data.dtype.itemsize != 4:  # BITPIX -32
        problems.append("%s: shape %s %s" % (what, data.shape, data.dtype))
        continue
    if [hdr.get("BAND%d" % b) for b in range(3)] != ["g", "r", "z"] or hdr.get("BANDS") != "grz":
        problems.append("%s: bands %s" % (what, [hdr.get("BAND%d" % b) for b in range(3)]))
    if (hdr.get("CTYPE1"), hdr.get("CTYPE2")) != ("RA---TAN", "DEC--TAN") or hdr.get("CRPIX1") != (SIZE + 1) / 2 \
            or abs(hdr.get("CD1_1") + deg) > 1e-12 or abs(hdr.get("CD2_2") - deg) > 1e-12 \
            or hdr.get("CD1_2") != 0 or hdr.get("CD2_1") != 0:
        problems.append("%s: WCS keywords %s" % (what, [hdr.get(k) for k in ("CTYPE1", "CRPIX1", "CD1_1", "CD2_2")]))
    # centre of the image: FITS pixel ((w+1)/2, (h+1)/2), 0-based ((w-1)/2, (h-1)/2)
    ra_c, dec_c = wcs.wcs_pix2world([[(SIZE - 1) / 2, (SIZE - 1) / 2]], 0)[0]
    if r["id_str"] in positions:
        e = sep_arcsec(ra_c, dec_c, *positions[r["id_str"]])
        wcs_err = max(wcs_err, e)
        if e >= 0.01:
            problems.append("%s: WCS centre %.8f %.8f is %.4f arcsec from the manifest" % (what, ra_c, dec_c, e))
    # east left: one pixel to the right (+x) is west, i.e. smaller RA
    ra_x, _ = wcs.wcs_pix2world([[(SIZE - 1) / 2 + 1, (SIZE - 1) / 2]], 0)[0]
    if not ((ra_x - ra_c + 180) % 360 - 180) < 0:
        problems.append("%s: +x is not west" % what)
    if not np.isfinite(data).all():
        problems.append("%s: non-finite pixels" % what)
        continue
    sig = [robust_sigma(data[b]) for b in range(3)]
    sigmas.append(sig)
    fluxes.append(data.sum(axis=(1, 2)))
    r_planes.append(data[1])
C.check(not problems, "astropy reads every good FITS as a 3x%dx%d float32 g,r,z cube with BAND keywords and a TAN "
        "WCS centred on the manifest's ra, dec (worst %.2g arcsec)%s"
        % (SIZE, SIZE, wcs_err, "".join("\n    " + p for p in problems[:10])))

sigmas, fluxes = np.array(sigmas).reshape(-1, 3), np.array(fluxes).reshape(-1, 3)
if len(sigmas) < 30:
    C.check(False, "enough good FITS cutouts to judge their pixels (%d)" % len(sigmas))
    C.finish()
# DECaLS DR5 cutouts: sky sigma about 0.0025 (g), 0.004 (r), 0.012 (z) nanomaggies per 0.262" pixel
med = np.median(sigmas, axis=0)
C.check(0.0012 < med[0] < 0.006 and 0.002 < med[1] < 0.009 and 0.006 < med[2] < 0.025 and med[0] < med[1] < med[2],
        "sky noise is DECaLS-like, g < r < z: median sigma %.4f %.4f %.4f nanomaggies/px" % tuple(med))
# main galaxies r 14.5..17.7 plus neighbours, minus light outside the frame: 20 mag ~ 10 nanomaggies
mag_r = 22.5 - 2.5 * np.log10(np.clip(fluxes[:, 1], 1e-3, None))
C.check(fluxes.shape[0] >= 30 and 12.5 < mag_r.min() and mag_r.max() < 19,
        "frame r fluxes are those of 13-19 mag galaxies: %.1f .. %.1f nanomaggies (%.2f .. %.2f mag)"
        % (fluxes[:, 1].min(), fluxes[:, 1].max(), mag_r.max(), mag_r.min()))
peaks = np.array([p.max() / s[1] for p, s in zip(r_planes, sigmas)])
C.check(peaks.min() > 20, "every galaxy stands out of the sky: r peak >= %.0f sigma" % peaks.min())
# colours of whole frames: galaxies are redder in z than in g (flux z > flux g) in nearly all cases
C.check(np.mean(fluxes[:, 2] > fluxes[:, 0]) > 0.9 and np.median(fluxes[:, 0] / fluxes[:, 1]) < 1,
        "colours are galaxy-like: median g/r flux %.2f, z > g in %.0f%% of frames"
        % (np.median(fluxes[:, 0] / fluxes[:, 1]), 100 * np.mean(fluxes[:, 2] > fluxes[:, 0])))

# galaxies differ: no two are near-copies (compared asinh-stretched, as a model sees them, so faint structure
# counts and not only the bright cores; round ellipticals of one size do reach 0.98), and their shapes, sizes and
# colours spread as a morphology sample's do
flat = np.array([np.arcsinh(p / (3 * s[1])).ravel() for p, s in zip(r_planes, sigmas)])
flat -= flat.mean(axis=1, keepdims=True)
flat /= np.linalg.norm(flat, axis=1, keepdims=True)
corr = flat @ flat.T
np.fill_diagonal(corr, 0)
C.check(corr.max() < 0.99, "no two galaxies are near-copies: max correlation of stretched r images %.3f" % corr.max())
conc, ell, size, colour = [], [], [], []
yy, xx = np.mgrid[0:SIZE, 0:SIZE] - (SIZE - 1) / 2
c = SIZE // 2
for p, s, f in zip(r_planes, sigmas, fluxes):
    w = np.where(p > 5 * s[1], p, 0)  # the galaxy's pixels, above 5 sigma
    w[np.hypot(xx, yy) > SIZE / 2] = 0
    m = w.sum()
    qxx, qyy, qxy = (w * xx * xx).sum() / m, (w * yy * yy).sum() / m, (w * xx * yy).sum() / m
    ell.append(np.hypot(qxx - qyy, 2 * qxy) / (qxx + qyy))
    size.append(np.sqrt(qxx + qyy))
    conc.append(p[c - 3:c + 3, c - 3:c + 3].sum() / max(p[c - 16:c + 16, c - 16:c + 16].sum(), 1e-9))
    colour.append(-2.5 * np.log10(max(f[0], 1e-3) / max(f[1], 1e-3)))
C.check(np.std(conc) > 0.03 and np.std(ell) > 0.1 and max(size) > 1.8 * min(size) and np.std(colour) > 0.05,
        "shapes vary: concentration %.2f..%.2f, ellipticity %.2f..%.2f, size %.1f..%.1f px, g-r %.2f..%.2f"
        % (min(conc), max(conc), min(ell), max(ell), min(size), max(size), min(colour), max(colour)))
truth = list(csv.DictReader(open(os.path.join(A, "truth.csv"), newline="")))
morphs = {t["morph"] for t in truth}
C.check(len(truth) == N and len(morphs) >= 3 and any(int(t["arms"]) for t in truth)
        and sum(int(t["clumps"]) for t in truth) > 0,
        "truth.csv covers every row with varied morphology: %s" % sorted(morphs))
clumps = list(csv.DictReader(open(os.path.join(A, "clumps.csv"), newline="")))
C.check(len(clumps) == sum(int(t["clumps"]) for t in truth)
        and all(0.5 <= float(c["x"]) <= SIZE + 0.5 and 0.5 <= float(c["y"]) <= SIZE + 0.5 for c in clumps),
        "clumps.csv lists %d clumps, all inside the frame" % len(clumps))

# compression keeps the noise sampled: every plane's quantisation step (ZSCALE, one tile per plane) is about a
# quarter of that plane's sky sigma, well below a third
ratios = []
for r in good:
    if not r["file_loc"].endswith(".fits.fz"):
        continue
    p = os.path.join(A, r["file_loc"])
    with fits.open(p, disable_image_compression=True) as hdul:
        step = np.asarray(hdul[1].data["ZSCALE"], dtype=float)
    d = fits_data_any(p)
    ratios.extend(step[b] / robust_sigma(d[b]) for b in range(3))
ratios = np.array(ratios) if ratios else np.array([np.inf])
C.check(len(ratios) >= 90 and ratios.max() < 1 / 3,
        ".fits.fz quantisation steps are sky sigma / %.1f .. / %.1f (every plane of %d files)"
        % (1 / ratios.max(), 1 / ratios.min(), len(ratios) // 3))

bad_png = []
for r in good:
    if r["file_loc"].endswith(".png"):
        try:
            with Image.open(os.path.join(A, r["file_loc"])) as im:
                im.load()
                a = np.asarray(im)
            if a.shape != (SIZE, SIZE, 3) or a.std() < 5:
                bad_png.append("%s: %s std %.1f" % (r["file_loc"], a.shape, a.std()))
        except Exception as e:
            bad_png.append("%s: %s" % (r["file_loc"], e))
C.check(not bad_png, "PIL reads every good PNG as a %dx%d RGB composite%s" % (SIZE, SIZE, "".join("\n    " + b for b in bad_png)))

# ---- broken rows -----------------------------------------------------------------------------------------

C.check({b["failure"] for b in broken} == KINDS and len(broken) == 12,
        "broken.csv lists 12 rows, one of each kind of failure")
C.check(all(b["expected_status"] in STATUSES for b in broken) and all(b["detail"] for b in broken),
        "each broken row names the catalogue status it should get and why")
idx = sorted(ids.index(b["id_str"]) for b in broken)
C.check(min(np.diff(idx)) >= 2 and idx[0] > 0 and idx[-1] < N - 1, "broken rows are spread through the manifest: %s" % idx)
by_id = {r["id_str"]: r for r in rows}


def fits_fails(p):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(p, memmap=False) as hdul:
                np.array(image_hdu(hdul).data)
        return False
    except Exception:
        return True


def fits_data(p):
    with fits.open(p, memmap=False) as hdul:
        return np.array(image_hdu(hdul).data)


def pil_fails(p):
    try:
        with Image.open(p) as im:
            im.load()
        return False
    except Exception:
        return True


for b in broken:
    kind, row = b["failure"], by_id.get(b["id_str"])
    p = os.path.join(A, b["file_loc"]) if b["file_loc"] else ""
    if row is None or row["file_loc"] != b["file_loc"]:
        C.check(False, "%s: broken.csv row %s matches the manifest" % (kind, b["id_str"]))
        continue
    if kind == "truncated_fits":
        full = 2880 + 3 * SIZE * SIZE * 4
        ok = os.path.getsize(p) < full and fits_fails(p)
        with open(p, "rb") as f:
            ok &= f.read(6) == b"SIMPLE"
    elif kind == "garbage_fits":
        ok = os.path.getsize(p) > 0 and fits_fails(p)
    elif kind == "missing_file":
        ok = p.endswith(".fits.fz") and not os.path.exists(p)
    elif kind == "empty_file":
        ok = os.path.getsize(p) == 0 and fits_fails(p)
    elif kind == "zero_z_band":
        d = fits_data(p)
        ok = d.shape == (3, SIZE, SIZE) and (d[2] == 0).all() and np.isfinite(d[:2]).all() and (d[:2] != 0).all()
    elif kind == "nan_cube":
        d = fits_data(p)
        ok = d.shape == (3, SIZE, SIZE) and np.isnan(d).all()
    elif kind == "image_2d":
        ok = fits_data(p).shape == (SIZE, SIZE)
    elif kind == "two_planes":
        ok = fits_data(p).shape == (2, SIZE, SIZE)
    elif kind == "corrupt_png":
        with open(p, "rb") as f:
            ok = f.read(8) == b"\x89PNG\r\n\x1a\n" and pil_fails(p)
    elif kind == "truncated_jpeg":
        with open(p, "rb") as f:
            head = f.read()
        ok = head[:2] == b"\xff\xd8" and not head.endswith(b"\xff\xd9") and pil_fails(p)
    elif kind == "empty_file_loc":
        ok = row["file_loc"] == "" and row["ra"] != ""
    elif kind == "bad_ra":
        ok = row["ra"] == "abc" and float(row["dec"]) == float(row["dec"]) and not fits_fails(p)
    else:
        ok = False
    C.check(ok, "%s (%s): broken as listed: %s" % (kind, b["id_str"], b["detail"]))

# ---- arguments -------------------------------------------------------------------------------------------

C.check(mctest.run(["synth", "--help"], check=False).returncode == 0, "--help exits 0")
for argv, what in ((["synth"], "no --out"), (["synth", "--out", os.path.join(TMP, "x"), "--n", "5", "--broken", "6"],
                   "--broken above --n"), (["synth", "--out", os.path.join(TMP, "x"), "--size", "abc"], "--size abc"),
                   (["synth", "--out", os.path.join(TMP, "x"), "--frobnicate", "1"], "an unknown option")):
    cp = mctest.run(argv, check=False)
    C.check(cp.returncode == 2 and cp.stderr.count("\n") == 1 and not os.path.exists(os.path.join(TMP, "x")),
            "%s is refused with exit 2 and one line: %s" % (what, cp.stderr.strip()))

shutil.rmtree(TMP, ignore_errors=True)
C.finish()
