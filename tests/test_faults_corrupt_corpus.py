"""A corpus of corrupt inputs (FITS, tile-compressed FITS, gzip, PNG, JPEG and manifest rows, generated here, none
committed) run as one catalogue job: the job finishes, and every broken input is a row with the status the fault calls
for and a message naming its file (or manifest line) and the reason; the good rows around them are computed as usual.
The expected statuses and reason words are written down per kind below, before the run."""
import gzip
import io
import os
import struct
import zlib

import numpy as np
from astropy.io import fits
from PIL import Image

import mctest
import pipeline_lib as pl

c = mctest.Checks()
model = pl.model()
d = mctest.tmpdir()
rng = np.random.default_rng(14)
cube = (rng.normal(0.0, 0.01, (3, 64, 64)) + 0.05).astype(np.float32)


def fits_bytes(data=cube, extra=None, bitpix=None):
    hdu = fits.PrimaryHDU(data)
    for k, v in (extra or {}).items():
        hdu.header[k] = v
    b = io.BytesIO()
    hdu.writeto(b)
    raw = bytearray(b.getvalue())
    if bitpix is not None:  # rewrite the card in place: astropy would not write an illegal BITPIX
        i = raw.index(b"BITPIX  =")
        raw[i:i + 80] = ("BITPIX  = %20s" % bitpix).ljust(80).encode()
    return bytes(raw)


def set_card(raw, key, value):
    raw = bytearray(raw)
    i = raw.index(key.ljust(8).encode() + b"=")
    raw[i:i + 80] = ("%-8s= %20s" % (key, value)).ljust(80).encode()
    return bytes(raw)


def fz_bytes(data=cube):
    b = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1")]).writeto(b)
    return b.getvalue()


def png_bytes(arr, mode="RGB"):
    b = io.BytesIO()
    Image.fromarray(arr, mode).save(b, "PNG")
    return b.getvalue()


def jpeg_bytes(arr, mode="RGB", **kw):
    b = io.BytesIO()
    Image.fromarray(arr, mode).save(b, "JPEG", **kw)
    return b.getvalue()


def png_chunk(t, data):
    return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xffffffff)


def png_raw(w, h, idat, crc_ok=True):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = png_chunk(b"IHDR", ihdr)
    if not crc_ok:
        chunk = chunk[:-4] + b"\0\0\0\0"
    return b"\x89PNG\r\n\x1a\n" + chunk + (png_chunk(b"IDAT", idat) if idat is not None else b"") + png_chunk(b"IEND", b"")


rgb = (rng.uniform(0, 255, (64, 64, 3))).astype(np.uint8)
good_fits = fits_bytes()
good_fz = fz_bytes()
good_png = png_bytes(rgb)
good_jpg = jpeg_bytes(rgb)
# the compressed tiles' heap of HDU 2: after its header, its table of tile descriptors
hdr2 = fits.getheader(io.BytesIO(good_fz), 1, disable_image_compression=True)
heap_at = (good_fz.index(b"END" + b" " * 77, 2880) // 2880 + 1) * 2880 + hdr2["NAXIS1"] * hdr2["NAXIS2"]
fz_damaged = bytearray(good_fz)
fz_damaged[heap_at + 100:heap_at + 700] = rng.integers(0, 256, 600, dtype=np.uint8).tobytes()
scaled = fits_bytes(extra={"BSCALE": 1.0, "BZERO": 0.0})
bitpix_at = good_fits.index(b"BITPIX  =")
nonascii = bytearray(good_fits)
nonascii[bitpix_at + 79] = 0xff  # in the card's comment
wcs_fits = fits_bytes(extra={"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 10.0, "CRVAL2": 1.0,
                             "CRPIX1": 32.5, "CRPIX2": 32.5, "CDELT1": -7.3e-5, "CDELT2": 7.3e-5})

nan_cube = cube.copy()
nan_cube[:] = np.nan
zero_z = cube.copy()
zero_z[2] = 0
bomb = zlib.compress(b"\0" * (30000 * 3 + 1) * 200, 9)  # the first rows of a 30000 x 30000 RGB image
# (name, bytes or None for no file, status, words the message must hold)
K = [
    ("empty.fits", b"", "corrupt_file", ["empty"]),
    ("truncated_data.fits", good_fits[:2880 + 3 * 64 * 64 * 4 // 2], "corrupt_file", ["truncated"]),
    ("header_only.fits", good_fits[:2880], "corrupt_file", ["truncated"]),
    ("cut_in_header.fits", good_fits[:1000], "corrupt_file", []),
    ("garbage.fits", bytes(rng.integers(0, 256, 5000, dtype=np.uint8)), "corrupt_file", []),
    ("bitpix_12.fits", fits_bytes(bitpix=12), "corrupt_file", ["BITPIX"]),
    ("bitpix_text.fits", fits_bytes(bitpix="'abc'"), "corrupt_file", []),
    ("naxis_5.fits", set_card(good_fits, "NAXIS", 5), "corrupt_file", []),
    ("naxis3_negative.fits", set_card(good_fits, "NAXIS3", -3), "corrupt_file", []),
    ("naxis1_bigger_than_file.fits", set_card(good_fits, "NAXIS1", 6400), "corrupt_file", ["truncated"]),
    ("bscale_nan.fits", set_card(scaled, "BSCALE", "NaN"), "corrupt_file", ["BSCALE = NaN"]),
    ("bscale_zero.fits", set_card(scaled, "BSCALE", "0.0"), "corrupt_file", ["BSCALE"]),
    ("bzero_inf.fits", set_card(scaled, "BZERO", "Inf"), "corrupt_file", ["BZERO"]),
    ("all_nan.fits", fits_bytes(nan_cube), "bad_pixels", []),
    ("zero_z_band.fits", fits_bytes(zero_z), "bad_pixels", []),
    ("oned.fits", fits_bytes(cube[0, 0]), "bad_shape", ["1-D"]),
    ("fourd.fits", fits_bytes(np.ones((2, 3, 8, 8), np.float32)), "bad_shape", ["4-D"]),
    ("twenty_planes.fits", fits_bytes(np.zeros((20, 8, 8), np.float32) + 1), "bad_shape", ["20 planes"]),
    ("huge_header.fits", set_card(set_card(good_fits, "NAXIS1", 100000), "NAXIS2", 100000), "bad_shape",
     ["too large"]),
    ("table_only.fits", None, "bad_shape", ["table"]),
    ("truncated.fits.gz", gzip.compress(good_fits)[:700], "corrupt_file", []),
    ("bad_deflate.fits.gz", gzip.compress(good_fits)[:10] + bytes(200) + gzip.compress(good_fits)[210:],
     "corrupt_file", []),
    ("gzip_garbage_inside.fits.gz", gzip.compress(bytes(rng.integers(0, 256, 4000, dtype=np.uint8))),
     "corrupt_file", []),
    ("fz_heap_damaged.fits.fz", bytes(fz_damaged), "corrupt_file", ["tile-compressed"]),
    ("fz_truncated.fits.fz", good_fz[:len(good_fz) - 3000], "corrupt_file", []),
    ("fz_unknown_algorithm.fits.fz", set_card(good_fz, "ZCMPTYPE", "'BOGUS_1'"), "corrupt_file", []),
    # divisors CFITSIO takes on entering a tile-compressed HDU (SIGFPE at 0), and a value its message overflows on
    ("fz_blocksize_zero.fits.fz", set_card(good_fz, "ZVAL1", 0), "corrupt_file", ["HDU 2: BLOCKSIZE = 0"]),
    ("fz_ztile1_zero.fits.fz", set_card(good_fz, "ZTILE1", 0), "corrupt_file", ["ZTILE1 = 0"]),
    ("fz_znaxis2_zero.fits.fz", set_card(good_fz, "ZNAXIS2", 0), "corrupt_file", ["ZNAXIS2 = 0"]),
    ("fz_rice_zval1_zero_unnamed.fits.fz", set_card(set_card(good_fz, "ZNAME1", "'OTHER'"), "ZVAL1", 0),
     "corrupt_file", ["RICE_1 block size ZVAL1 = 0"]),
    ("fz_zval1_twice.fits.fz", good_fz.replace(b"ZVAL2   =", b"ZVAL1   =", 1), "corrupt_file",
     ["ZVAL1 appears more than once"]),
    ("fz_rice_names_swapped.fits.fz", set_card(set_card(good_fz, "ZNAME1", "'BYTEPIX'"), "ZNAME2", "'BLOCKSIZE'"),
     "corrupt_file", ["RICE_1 parameters named 'BYTEPIX'"]),
    ("naxis1_beyond_int64.fits", set_card(good_fits, "NAXIS1", "99999999999999999999"), "corrupt_file",
     ["NAXIS1 = 99999999999999999999 is not an integer"]),
    ("naxis_card_misplaced.fits", good_fits.replace(b"NAXIS   =", b"NAXIZ   =", 1), "corrupt_file",
     ["card 3", "where the standard puts NAXIS"]),
    ("fz_zval2_no_equals.fits.fz", good_fz.replace(b"ZVAL2   =", b"ZVAL2    ", 1), "corrupt_file",
     ["ZVAL2", "without '=' in column 9"]),
    ("fz_zval2_text.fits.fz", set_card(good_fz, "ZVAL2", "'four'"), "corrupt_file", ["ZVAL2 = 'four'", "not a number"]),
    ("fz_zval2_number_then_text.fits.fz", set_card(good_fz, "ZVAL2", "4 bytes"), "corrupt_file",
     ["ZVAL2 = 4 bytes", "not a number"]),
    ("fz_ttype1_unquoted.fits.fz", set_card(good_fz, "TTYPE1", "COMPRESSED_DATA"), "corrupt_file",
     ["TTYPE1", "not a quoted string"]),
    ("fz_gzipped_blocksize_zero.fits.gz", gzip.compress(set_card(good_fz, "ZVAL1", 0)), "corrupt_file",
     ["HDU 2: BLOCKSIZE = 0"]),
    ("gzip_inflates_to_no_fits.fits.gz", gzip.compress(b"SIMPLY NOT" * 500), "corrupt_file", ["does not hold a FITS"]),
    ("unix_compress.fits.Z", b"\x1f\x9d\x90" + bytes(200), "corrupt_file", ["Unix-compressed"]),
    ("bitpix_comment_nonascii.fits", bytes(nonascii), "corrupt_file",
     ["BITPIX", "outside printable ASCII"]),
    ("wcs_crval1_text.fits", set_card(wcs_fits, "CRVAL1", "'ten'"), "corrupt_file", ["CRVAL1", "not a number"]),
    ("wcs_ctype1_unterminated.fits", set_card(wcs_fits, "CTYPE1", "'RA---TAN"), "corrupt_file",
     ["CTYPE1", "without its closing quote"]),
    ("png_bad_signature.png", b"GIF89a" + good_png[6:], "corrupt_file", ["PNG"]),
    ("png_truncated.png", good_png[:len(good_png) // 2], "corrupt_file", ["PNG"]),
    ("png_ihdr_crc.png", png_raw(64, 64, zlib.compress(b"\0" * (64 * 3 + 1) * 64), crc_ok=False), "corrupt_file",
     ["PNG"]),
    ("png_bad_zlib.png", png_raw(64, 64, b"\x78\x9c" + bytes(rng.integers(0, 256, 300, dtype=np.uint8))),
     "corrupt_file", ["PNG"]),
    ("png_zero_width.png", png_raw(0, 64, zlib.compress(b"\0" * 64)), "corrupt_file", ["PNG"]),
    ("png_no_idat.png", png_raw(64, 64, None), "corrupt_file", ["PNG"]),
    ("png_bomb_30000px.png", png_raw(30000, 30000, bomb), "bad_shape", ["too large"]),
    ("jpeg_truncated.jpg", good_jpg[:len(good_jpg) // 2], "corrupt_file", ["JPEG"]),
    ("jpeg_noise_after_soi.jpg", good_jpg[:2] + bytes(rng.integers(0, 256, 3000, dtype=np.uint8)), "corrupt_file",
     ["JPEG"]),
    ("jpeg_is_text.jpg", b"this is not a picture\n" * 20, "corrupt_file", ["JPEG"]),
    ("jpeg_cmyk.jpg", jpeg_bytes(np.concatenate([rgb, rgb[..., :1]], axis=2), "CMYK"), "corrupt_file", ["CMYK"]),
    ("jpeg_huge_sof.jpg", None, "bad_shape", ["too large"]),
    ("a_folder.fits", "dir", "missing_file", ["directory"]),
    ("never_written.fits", "absent", "missing_file", ["No such file"]),
]
# a JPEG whose frame header claims 60000 x 60000 pixels
j = bytearray(good_jpg)
sof = j.index(b"\xff\xc0")
j[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
K = [(n, bytes(j) if n == "jpeg_huge_sof.jpg" else b, s, w) for n, b, s, w in K]
tb = io.BytesIO()
fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("a", "E", array=np.ones(3))])]).writeto(tb)
K = [(n, tb.getvalue() if n == "table_only.fits" else b, s, w) for n, b, s, w in K]

files = os.path.join(d, "corpus")
os.mkdir(files)
lines = ["id_str,file_loc,ra,dec"]
expect = []  # per manifest row: (status, words)
for i, (name, data, status, words) in enumerate(K):
    path = os.path.join(files, name)
    if data == "dir":
        os.mkdir(path)
    elif data != "absent":
        with open(path, "wb") as f:
            f.write(data)
    lines.append("bad_%02d,%s,10.0,1.0" % (i, path))
    expect.append((status, [name] + words))
# good rows between them, so failures sit inside units that also compute
# an int64 image whose BLANK is the smallest int64 (20 characters: the header scan's integers go that far)
int64_hdu = fits.PrimaryHDU((cube * 1e6).astype(np.int64))
int64_hdu.header["BLANK"] = -9223372036854775808
int64_b = io.BytesIO()
int64_hdu.writeto(int64_b)
for name, data in (("good.fits", good_fits), ("good.fits.fz", good_fz), ("good.png", good_png), ("good.jpg", good_jpg),
                   ("good_int64_blank_min.fits", int64_b.getvalue())):
    with open(os.path.join(files, name), "wb") as f:
        f.write(data)
    lines.append("ok_%s,%s,10.0,1.0" % (name.replace(".", "_"), os.path.join(files, name)))
    expect.append(("ok", []))
# manifest rows that are broken themselves
man_rows = [
    (b"bad_id_latin1_\xe9,%s,10,1", ["not valid UTF-8"]),
    (b"bad_id_overlong_\xc0\xaf,%s,10,1", ["not valid UTF-8"]),
    (b"bad_id_surrogate_\xed\xa0\x80,%s,10,1", ["not valid UTF-8"]),
    (b"ra_inf,%s,inf,1", ["bad ra"]),
    (b",%s,10,1", ["empty id_str"]),
    (b"empty_path,,10,1", ["empty path"]),
    (b"ra_text,%s,abc,1", ["bad ra"]),
    (b"dec_95,%s,10,95", ["bad dec"]),
    (b"ra_without_dec,%s,10,", ["ra given without dec"]),
    (b"too_many_fields,%s,10,1,extra", ["fields where the header has"]),
]
man = os.path.join(d, "manifest.csv")
with open(man, "wb") as f:
    f.write(("\n".join(lines) + "\n").encode())
    for row, words in man_rows:
        f.write((row.replace(b"%s", os.path.join(files, "good.fits").encode()) if b"%s" in row else row) + b"\n")
        expect.append(("bad_manifest_row", ["manifest.csv", "line "] + words))
n_kinds = len(K) + len(man_rows)
c.check(n_kinds >= 30, "the corpus has %d distinct kinds of broken input (FITS, gzip, fz, PNG, JPEG, manifest)" % n_kinds)

out = os.path.join(d, "cat.h5")
r = mctest.run(["run", "--manifest", man, "--model", model, "--output", out, "--size", "64", "--batch", "4",
                "--progress-seconds", "1000", "--recipe", "gz_decals"], check=False, errors="replace")
c.check(r.returncode == 0 and "internal error" not in r.stderr,
        "the job runs through the corpus and finishes (exit %d)%s" % (r.returncode, r.stderr[-600:] if r.returncode else ""))
got, _ = pl.read_catalogue(out)
names = ["pending", "ok", "missing_file", "corrupt_file", "bad_shape", "bad_pixels", "bad_manifest_row"]
c.check(len(got["galaxies/status"]) == len(expect), "one row per manifest row (%d)" % len(got["galaxies/status"]))
for i, (status, words) in enumerate(expect):
    st = names[got["galaxies/status"][i]]
    msg = got["galaxies/message"][i].decode("utf-8", "replace")
    missing = [w for w in words if w not in msg]
    label = K[i][0] if i < len(K) else "manifest line %d" % (i + 2)
    c.check(st == status and not missing, "%s: status %s (want %s), message %r%s" % (
        label, st, status, msg, (" lacks %s" % missing) if missing else ""))
c.finish()
