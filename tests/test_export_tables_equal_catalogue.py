"""tests/test_export_tables_equal_catalogue.py: `morphcat export` to FITS and CSV, read back with astropy, equals the
catalogue read with h5py row by row: id_str, ra, dec, status, message, release and every one of Zoobot's per-answer
columns (`_fraction`, `_90pc-lower`, `_90pc-upper`, `_proportion-asked`, `_dirichlet`), bit for bit (NaN where the
catalogue has NaN; the CSV's 9 significant digits give each float32 back exactly); the FITS table opens with
astropy.table.Table.read with units deg on ra/dec; the clumps are a second extension / a second CSV with one row per
clump equal to the catalogue's clump slots; --friendly blanks exactly the fractions whose proportion-asked < 0.5;
a file that is not a catalogue is refused with one line naming it, and no partial output is left.
"""
import os
import sys

import numpy as np

import mctest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
SUFFIXES = ("_fraction", "_90pc-lower", "_90pc-upper", "_proportion-asked", "_dirichlet")


def same_f(a, b):
    """float arrays equal, NaN equal to NaN (compared as float32 for float32 columns)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def column(t, name, dtype=np.float64):
    """An astropy column as a filled numpy array: masked (empty CSV) entries become NaN."""
    c = t[name]
    if hasattr(c, "mask") and np.any(c.mask):
        return np.ma.filled(c.astype(dtype), np.nan)
    return np.asarray(c, dtype)


def strings(t, name):
    c = t[name]
    if hasattr(c, "mask"):
        c = np.ma.filled(c.astype(str), "")
    return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in c])


def compare_galaxies(c, t, ref, what, friendly):
    n = len(ref["id_str"])
    c.check(len(t) == n, "%s: %d rows (catalogue %d)" % (what, len(t), n))
    if len(t) != n:
        return
    c.check(np.array_equal(strings(t, "id_str"), ref["id_str"]), "%s: id_str equal row by row" % what)
    c.check(np.array_equal(column(t, "status", np.int64), ref["status"].astype(np.int64)), "%s: status equal" % what)
    c.check(same_f(column(t, "ra"), ref["ra"]) and same_f(column(t, "dec"), ref["dec"]), "%s: ra, dec equal" % what)
    c.check(np.array_equal(strings(t, "message"), ref["message"]), "%s: message equal" % what)
    c.check(np.array_equal(strings(t, "release"), ref["release"]), "%s: release equal" % what)
    bad, checked = [], 0
    for suffix in SUFFIXES:
        want = ref[suffix].copy()
        if friendly and suffix == "_fraction":
            want = np.where(ref["_proportion-asked"] >= 0.5, want, np.nan).astype(np.float32)
            hidden = int((np.isfinite(ref[suffix]) & np.isnan(want)).sum())
            c.check(hidden > 0, "%s: the friendly table has %d fractions to blank" % (what, hidden))
        for a, ans in enumerate(ref["answers"]):
            name = ans + suffix
            if name not in t.colnames:
                bad.append(name + " missing")
                continue
            got = column(t, name).astype(np.float32)
            checked += 1
            if not same_f(got, want[:, a]):
                bad.append(name)
    c.check(not bad and checked == 5 * len(ref["answers"]),
            "%s: all %d answer columns equal the catalogue%s (differ: %s)" %
            (what, checked, " (fractions blanked where proportion-asked < 0.5)" if friendly else "", bad[:5]))


def compare_clumps(c, t, ref, what):
    row, slot = report_lib.clump_rows(ref)
    cl = ref["clumps"]
    c.check(len(t) == len(row) and len(row) > 10, "%s: %d clump rows (catalogue %d)" % (what, len(t), len(row)))
    if len(t) != len(row):
        return
    ok = (np.array_equal(strings(t, "id_str"), ref["id_str"][row]) and
          np.array_equal(column(t, "row", np.int64), row) and np.array_equal(column(t, "slot", np.int64), slot) and
          np.array_equal(column(t, "label", np.int64), cl["label"][row, slot]) and
          np.array_equal(strings(t, "class"), np.array(ref["class_names"])[cl["label"][row, slot]]))
    c.check(ok, "%s: id_str, row, slot, label and class equal the catalogue's slots" % what)
    ok = same_f(column(t, "score").astype(np.float32), cl["score"][row, slot])
    for b, k in enumerate(("x1", "y1", "x2", "y2")):
        ok &= same_f(column(t, k).astype(np.float32), cl["box"][row, slot, b])
    ok &= same_f(column(t, "ra"), cl["ra"][row, slot]) and same_f(column(t, "dec"), cl["dec"][row, slot])
    c.check(ok, "%s: score, box and ra/dec equal (NaN ra/dec for PNG cutouts kept)" % what)


def main():
    if not os.access(mctest.MORPHCAT, os.X_OK):
        mctest.skip("morphcat is not built")
    from astropy import units as u
    from astropy.io import ascii, fits
    from astropy.table import Table

    global report_lib
    import report_lib

    c = mctest.Checks()
    cat, _ = report_lib.catalogue()
    ref = report_lib.read(cat)
    c.check((ref["status"] > 1).sum() >= 3 and np.isnan(ref["_fraction"][ref["status"] > 1]).all(),
            "the test catalogue has failed rows (NaN columns): %d" % (ref["status"] > 1).sum())
    tmp = mctest.tmpdir()
    conv = {"id_str": [ascii.convert_numpy(str)], "message": [ascii.convert_numpy(str)],
            "release": [ascii.convert_numpy(str)]}
    for friendly in (False, True):
        extra = ["--friendly"] if friendly else []
        tag = " (friendly)" if friendly else ""
        fp = os.path.join(tmp, "cat%s.fits" % ("_friendly" if friendly else ""))
        r = mctest.run(["export", cat, "--format", "fits", "--output", fp] + extra)
        print(r.stdout.strip())
        t = Table.read(fp, hdu="GALAXIES")
        c.check(t["ra"].unit == u.deg and t["dec"].unit == u.deg,
                "FITS%s: Table.read gives ra, dec in %s, %s" % (tag, t["ra"].unit, t["dec"].unit))
        compare_galaxies(c, t, ref, "FITS" + tag, friendly)
        compare_clumps(c, Table.read(fp, hdu="CLUMPS"), ref, "FITS CLUMPS" + tag)
        with fits.open(fp) as hl:
            c.check(hl[0].header.get("FRIENDLY") is friendly and "efficientnet" in hl[0].header.get("MC_MODEL", ""),
                    "FITS%s: the primary header records the model and whether the table is friendly" % tag)
        cp = os.path.join(tmp, "cat%s.csv" % ("_friendly" if friendly else ""))
        r = mctest.run(["export", cat, "--format", "csv", "--output", cp] + extra)
        print(r.stdout.strip())
        t = ascii.read(cp, format="csv", converters=conv)
        compare_galaxies(c, t, ref, "CSV" + tag, friendly)
        cc = cp[:-4] + "_clumps.csv"
        c.check(os.path.exists(cc) and cc in r.stdout, "CSV%s: the clumps go to %s and the summary says so" % (tag, cc))
        compare_clumps(c, ascii.read(cc, format="csv", converters={"id_str": [ascii.convert_numpy(str)]}), ref,
                       "CSV clumps" + tag)
    left = [x for x in os.listdir(tmp) if x.endswith(".tmp")]
    c.check(not left, "no temporary files left: %s" % left)

    bad = os.path.join(tmp, "not_a_catalogue.h5")
    with open(bad, "w") as f:
        f.write("hello\n")
    out = os.path.join(tmp, "bad.fits")
    r = mctest.run(["export", bad, "--format", "fits", "--output", out], check=False)
    lines = r.stderr.strip().splitlines()
    c.check(r.returncode == 1 and len(lines) == 1 and bad in lines[0] and not os.path.exists(out) and
            not os.path.exists(out + ".tmp"), "a file that is not a catalogue: exit 1, one line naming it: %s" % lines)
    r = mctest.run(["export", cat, "--format", "parquet", "--output", out], check=False)
    c.check(r.returncode == 2 and "fits or csv" in r.stderr, "an unknown --format is a usage error (exit 2)")
    c.finish()


if __name__ == "__main__":
    main()
