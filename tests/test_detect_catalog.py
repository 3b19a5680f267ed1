"""tests/test_detect_catalog.py: the clump table in the catalogue. `morphcat run --detector` on a synthetic survey (FITS
cubes with a TAN WCS, PNG pictures, broken files) with 2 MPI ranks, read back with h5py:
- the clumps group's layout and attributes (class names, the detector's sha256, the post-processing);
- per galaxy, the same detections as `morphcat detect` gives for that file alone (same recipe, same post-processing):
  the catalogue is written in the same pass as morphology, from the same decoded cutout;
- each clump's RA/Dec equals the box centre pushed through the cutout's WCS by this test's own TAN (gnomonic) math,
  itself first checked against astropy on a known header (DECaLS example_a.fits from ../shared, or a synthetic header
  when ../shared is absent);
- a galaxy whose picture does not fit the requested crop keeps its morphology, gets clump status bad_shape and a
  message; broken files keep their own status;
- whole-run failures stop before any work with one line: a detector with 4 classes, a truncated checkpoint; and
  `morphcat detect` on an image too small for the transform reports it and exits 3.
"""
import hashlib
import math
import os
import subprocess
import sys

import h5py
import numpy as np

import mctest

sys.path.insert(0, os.path.join(mctest.ROOT, "tools"))


def header_wcs(path):
    from astropy.io import fits

    with fits.open(path) as hl:
        for h in hl:
            if h.header.get("CTYPE1", "").startswith("RA---TAN"):
                return h.header
    return None


def tan_pix2sky(h, x, y):
    """FITS TAN (gnomonic) projection, pixel (1-based) to (ra, dec) in degrees: CD matrix (or CDELT with PC)."""
    if "CD1_1" in h:
        cd = np.array([[h.get("CD1_1", 0.0), h.get("CD1_2", 0.0)], [h.get("CD2_1", 0.0), h.get("CD2_2", 0.0)]])
    else:
        pc = np.array([[h.get("PC1_1", 1.0), h.get("PC1_2", 0.0)], [h.get("PC2_1", 0.0), h.get("PC2_2", 1.0)]])
        cd = np.diag([h["CDELT1"], h["CDELT2"]]) @ pc
    xi, eta = np.radians(cd @ np.array([x - h["CRPIX1"], y - h["CRPIX2"]]))
    a0, d0 = math.radians(h["CRVAL1"]), math.radians(h["CRVAL2"])
    ra = a0 + math.atan2(xi, math.cos(d0) - eta * math.sin(d0))
    dec = math.asin((math.sin(d0) + eta * math.cos(d0)) / math.sqrt(1 + xi * xi + eta * eta))
    return math.degrees(ra) % 360.0, math.degrees(dec)


def check_tan_math(c):
    from astropy.wcs import WCS

    known = os.path.join(mctest.SHARED, "realdata", "decals_grz", "example_a.fits")
    if os.path.exists(known):
        h = header_wcs(known)
        what = "DECaLS example_a.fits"
    else:
        print("note: ../shared is absent: the TAN math is checked on a synthetic header instead of DECaLS example_a")
        from astropy.io import fits

        h = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 359.99, "CRVAL2": 0.70, "CRPIX1": 255.0,
                         "CRPIX2": 255.0, "CD1_1": -7.2778e-05, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 7.2778e-05})
        what = "a synthetic TAN header"
    w = WCS(h).celestial
    worst = 0.0
    for x, y in [(1, 1), (255, 255), (509, 1), (100.25, 400.75), (509, 509)]:
        ra, dec = tan_pix2sky(h, x, y)
        s = w.pixel_to_world_values(x - 1, y - 1)  # astropy's pixel API is 0-based
        worst = max(worst, abs((ra - float(s[0]) + 180) % 360 - 180) * math.cos(math.radians(dec)), abs(dec - float(s[1])))
    c.check(worst < 1e-10, "the test's TAN math agrees with astropy on %s: %.1e deg" % (what, worst))


def main():
    if not os.access(mctest.MORPHCAT, os.X_OK):
        mctest.skip("morphcat is not built")
    import torch

    import frcnn_ref as F
    import pipeline_lib

    torch.set_num_threads(2)
    c = mctest.Checks()
    check_tan_math(c)
    tmp = mctest.tmpdir()
    kind = "real" if os.path.isdir(os.path.join(mctest.SHARED, "realdata")) else "synthetic"
    model = F.make_model(5, 3, calib=kind)
    det = os.path.join(tmp, "clumps.pth")
    F.save(model, det, prefix="module.")  # as Clump Scout's DataParallel checkpoints are

    big = pipeline_lib.survey(n=8, size=200, seed=21, broken=2, png_fraction=0.25)
    small = pipeline_lib.survey(n=2, size=120, seed=22, broken=0, png_fraction=0.0)
    man = os.path.join(tmp, "manifest.csv")
    rows = []
    for d in (big, small):
        with open(os.path.join(d, "manifest.csv")) as f:
            head = f.readline()
            for line in f:
                p = line.rstrip("\n").split(",")
                p[1] = os.path.join(d, p[1])
                if d == small:
                    p[0] = "small_" + p[0]
                rows.append(",".join(p))
    with open(man, "w") as f:
        f.write(head + "\n".join(rows) + "\n")
    enc = pipeline_lib.model()
    out = os.path.join(tmp, "cat.h5")
    post = "score=0.1,crop=20;20;180;180,max=30"
    r = mctest.mpirun(2, [mctest.MORPHCAT, "run", "--manifest", man, "--model", enc, "--output", out, "--size", "64",
                          "--batch", "4", "--recipe", "gz_decals", "--detector", det, "--clumps", post])
    print(r.stdout[-1500:], r.stderr[-2500:])
    c.check(r.returncode == 0, "run with the detector on 2 ranks exits 0 (got %d)" % r.returncode)
    c.check("clumps:" in r.stdout, "the summary reports the clumps found")

    f = h5py.File(out, "r")
    n = f["galaxies/status"].shape[0]
    g = f["clumps"]
    K = g["score"].shape[1]
    c.check(K == 30 and g["box"].shape == (n, 30, 4) and g["ra"].shape == (n, 30) and g["count"].shape == (n,),
            "clumps/ score, label, ra, dec are (N, 30), box (N, 30, 4), count and status (N,)")
    names = [x.decode() if isinstance(x, bytes) else x for x in g.attrs["class_names"]]
    c.check(names == ["background", "clump", "odd_clump"], "class_names %s" % names)
    sha = hashlib.sha256(open(det, "rb").read()).hexdigest()
    attr = lambda k: f.attrs[k].decode() if isinstance(f.attrs[k], bytes) else f.attrs[k]
    c.check(attr("detector_sha256") == sha, "the catalogue records the detector file's sha256")
    c.check("crop=20;20;180;180" in attr("clump_postprocessing"), "and its post-processing: %s" % attr("clump_postprocessing"))

    status, cstat, count = f["galaxies/status"][:], g["status"][:], g["count"][:]
    files = [x.decode() for x in f["galaxies/file"][:]]
    msgs = [x.decode() for x in f["galaxies/message"][:]]
    total, radec_checked, worst_radec, compared, same, png_clumps, png_nan = 0, 0, 0.0, 0, 0, 0, 0
    for i in range(n):
        if status[i] != 1:
            c.check(cstat[i] == 0 and count[i] == 0, "row %d (%s) failed before detection: clump status 0, no clumps"
                    % (i, os.path.basename(files[i])))
            continue
        if files[i].startswith(small):
            c.check(cstat[i] == 4 and "no clumps" in msgs[i] and "crop" in msgs[i] and
                    np.isfinite(f["morphology/concentration"][i]).all(),
                    "row %d (120 px) does not fit the crop: clump status bad_shape, message '%s', morphology kept" %
                    (i, msgs[i]))
            continue
        c.check(cstat[i] == 1, "row %d: clump status ok" % i)
        k = int(count[i])
        total += k
        o = os.path.join(tmp, "one.npy")
        mctest.run(["detect", "--model", det, "--image", files[i], "--recipe", "gz_decals", "--post", post,
                    "--output", o])
        d = np.load(o).reshape(-1, 7)
        compared += 1
        same += int(len(d) == k and np.array_equal(d[:, 1], g["label"][i, :k]) and
                    np.array_equal(d[:, 2], g["score"][i, :k]) and np.array_equal(d[:, 3:7], g["box"][i, :k]))
        c.check(np.all(g["label"][i, k:] == 0) and np.all(np.isnan(g["score"][i, k:])), "row %d: empty slots are "
                "label 0, score NaN" % i)
        h = header_wcs(files[i]) if files[i].endswith((".fits", ".fz")) else None
        for j in range(k):
            ra, dec = g["ra"][i, j], g["dec"][i, j]
            if h is None:
                png_clumps += 1
                png_nan += int(np.isnan(ra) and np.isnan(dec))
                continue
            x1, y1, x2, y2 = g["box"][i, j].astype(np.float64)
            # continuous plane coordinates (0 at the first pixel's edge) to FITS pixels: + 0.5
            era, edec = tan_pix2sky(h, 0.5 * (x1 + x2) + 0.5, 0.5 * (y1 + y2) + 0.5)
            worst_radec = max(worst_radec, abs((ra - era + 180) % 360 - 180) * math.cos(math.radians(edec)),
                              abs(dec - edec))
            radec_checked += 1
    c.check(total > 20, "%d clumps found in the survey's good galaxies" % total)
    c.check(png_clumps > 0 and png_nan == png_clumps, "%d of %d clumps in PNG pictures (no WCS) have RA/Dec NaN" %
            (png_nan, png_clumps))
    c.check(compared > 0 and same == compared,
            "%d of %d galaxies: the catalogue's clumps equal morphcat detect on the same file" % (same, compared))
    c.check(radec_checked > 10 and worst_radec < 1e-9,
            "%d clump RA/Dec equal the TAN math on the box centre: worst %.1e deg" % (radec_checked, worst_radec))
    f.close()

    # whole-run failures before any work: wrong number of classes, truncated checkpoint
    wrong = os.path.join(tmp, "four.pth")
    torch.save(F.build_model(4).state_dict(), wrong)
    bad_out = os.path.join(tmp, "bad.h5")
    r = mctest.run(["run", "--manifest", man, "--model", enc, "--output", bad_out, "--size", "64", "--recipe",
                    "gz_decals", "--detector", wrong], check=False)
    c.check(r.returncode == 1 and "4 classes" in r.stderr and wrong in r.stderr and not os.path.exists(bad_out),
            "a 4-class detector stops the run before any work: %s" % r.stderr.strip()[-300:])
    trunc = os.path.join(tmp, "trunc.pth")
    with open(det, "rb") as src, open(trunc, "wb") as dst:
        dst.write(src.read(os.path.getsize(det) // 3))
    r = mctest.run(["run", "--manifest", man, "--model", enc, "--output", bad_out, "--size", "64", "--recipe",
                    "gz_decals", "--detector", trunc], check=False)
    c.check(r.returncode == 1 and trunc in r.stderr and len(r.stderr.strip().splitlines()) == 1,
            "a truncated detector checkpoint: one line naming the file: %s" % r.stderr.strip()[-300:])
    tiny = os.path.join(tmp, "tiny.npy")
    np.save(tiny, np.random.default_rng(0).random((2, 3, 4, 4), dtype=np.float32))
    r = mctest.run(["detect", "--model", det, "--input", tiny], check=False)
    c.check(r.returncode == 3 and "image 0" in r.stderr and "at least 8" in r.stderr,
            "detect on 4x4 images: exit 3, each reported: %s" % r.stderr.strip()[-300:])
    c.finish()


if __name__ == "__main__":
    sys.exit(main())
