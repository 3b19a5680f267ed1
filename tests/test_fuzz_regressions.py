"""Inputs the fuzzers (fuzz/) once crashed on, committed under fuzz/regress/NAME/: each must now give a clean refusal
(exit 1 and one line naming the file and the reason), never a signal. fits/rice_zero_run_past_end.fits.fz: a RICE_1
tile whose code runs past its bytes, on which CFITSIO 4.2's decoder read past its buffer and crashed the job;
fits/tile_claims_3gb_beyond_heap.fits.fz: a tile descriptor claiming 3 GB past the heap, for which CFITSIO allocated
3 GB; fits/truncated_heap_decoded_anyway.fits.fz: a file cut inside its heap, whose unread tiles CFITSIO decoded
anyway and crashed; fits/blocksize_zero_sigfpe.fits.fz: BLOCKSIZE = 0, which CFITSIO divides by (SIGFPE) on
entering the HDU; fits/zval_text_fortify_abort.fits.fz: a ZVAL2 that is an unterminated string, on which CFITSIO's
error message overflows (abort); fits/ctype_unterminated_wcslib_abort.fits: a CTYPE1 string without its closing
quote, which WCSLIB's header parser (wcspih) copied past its buffer (abort);
fits/rice_zval1_zero_named_otherwise.fits.fz: a RICE_1 header whose ZVAL1 reads as 0 while ZNAME1 is not BLOCKSIZE
(CFITSIO takes ZVAL1 as the block size regardless, and divides by it: SIGFPE);
fits/znaxis1_zero_default_tile_sigfpe.fits.fz: ZNAXIS1 = 0 and no ZTILE1 (CFITSIO's default tile is ZNAXIS1, and it
divides by the tile: SIGFPE); fits/zval_paren_indicator_fortify_abort.fits.fz: a ZVAL2 card with '=(' for '= ', which CFITSIO reads as a value
(and overflows on, as for text) but the first scan skipped; fits/ttype_unquoted_long_fortify_abort.fits.fz: a TTYPE2 whose value is 71 bytes and no quoted string, which
CFITSIO's table header parser (ffgtbp) copied past its buffer (abort); fits/zval_number_then_bytes_fortify_abort.fits.fz: a ZVAL2 of
4 followed by binary bytes, on which CFITSIO's message overflowed as for text (abort);
fits/gzipped_fz_blocksize_zero_sigfpe.fits.gz: a gzipped tile-compressed file with BLOCKSIZE = 0, which CFITSIO
inflated and divided by (SIGFPE) before morphcat scanned gzipped files;
fits/zval1_twice_rice_rdecomp_segv.fits.fz: a RICE_1 header with two ZVAL1 cards (32 and 4), of which morphcat's tile
check read one and CFITSIO's decoder the other (SEGV in fits_rdecomp);
fits/naxis_name_mangled_unchecked_hdu_sigfpe.fits.fz: a primary NAXIS card whose name is damaged, which CFITSIO still
read as NAXIS, going on to an HDU (ZTILE3 = 0: SIGFPE) the header scan had not reached;
fits/zval1_no_value_indicator_fortify_abort.fits.fz: a ZVAL1 card with binary bytes from column 9 on, no '=': CFITSIO
still read a value from it and its message overflowed (abort);
fits/tfields_huge_calloc_14gb.fits: a binary table extension with TFIELDS = 87724078, for which CFITSIO allocated
column structures of 14 GB as it entered the table (libFuzzer out-of-memory). Since the header scan became one strict
reading of every card CFITSIO interprets (io/cutout_fits_hdr.c), some older inputs are refused for their first
damage (bytes outside printable ASCII, a value that is not one number) before the check they were found for;
test_faults_corrupt_corpus keeps clean cases of those checks. manifest/long_header_names_overrun.csv: a header without an id column whose names
overran the message's buffer (an out-of-bounds index found by UBSan); config/num_classes_huge.json: a num_classes too large for an int (undefined conversion). pickle/: run by tests/unit/test_pickle.c (under UBSan in make sanitize)."""
import os

import mctest

c = mctest.Checks()
reg = os.path.join(mctest.ROOT, "fuzz", "regress")
expect = {"fits/rice_zero_run_past_end.fits.fz": ("corrupt_file", "RICE_1 tile 2 of 3: its code runs past its"),
          "fits/tile_claims_3gb_beyond_heap.fits.fz": ("corrupt_file", "claims 2962962225 bytes", "2588-byte heap"),
          "fits/truncated_heap_decoded_anyway.fits.fz": ("corrupt_file", "tile 1 of 3"),
          "fits/blocksize_zero_sigfpe.fits.fz": ("corrupt_file", "ZVAL1 = 0     32 is not a number"),
          "fits/zval_text_fortify_abort.fits.fz": ("corrupt_file", "ZVAL2", "'BLOCKSIZE", "is not a number"),
          "fits/ctype_unterminated_wcslib_abort.fits": ("corrupt_file", "header card 15 (CTYPE1)",
                                                        "outside printable ASCII"),
          "fits/rice_zval1_zero_named_otherwise.fits.fz": ("corrupt_file", "ZNAME1: bytes outside printable ASCII"),
          "fits/znaxis1_zero_default_tile_sigfpe.fits.fz": ("corrupt_file", "ZNAXIS1: bytes outside printable ASCII"),
          "manifest/long_header_names_overrun.csv": ("line 1: no id_str column", "id-abs", ", ..."),
          "fits/zval_paren_indicator_fortify_abort.fits.fz": ("corrupt_file", "ZVAL2 = (", "is not a number"),
          "fits/zval_number_then_bytes_fortify_abort.fits.fz": ("corrupt_file", "HDU 2, card 31: ZVAL2",
                                                                "outside printable ASCII"),
          "fits/gzipped_fz_blocksize_zero_sigfpe.fits.gz": ("corrupt_file", "HDU 2: BLOCKSIZE = 0"),
          "fits/zval1_twice_rice_rdecomp_segv.fits.fz": ("corrupt_file", "HDU 2: ZVAL1 appears more than once"),
          "fits/zval1_no_value_indicator_fortify_abort.fits.fz": ("corrupt_file", "HDU 2, card 29: ZVAL1",
                                                                  "without '=' in column 9"),
          "fits/naxis_name_mangled_unchecked_hdu_sigfpe.fits.fz": ("corrupt_file", "HDU 1, card 3",
                                                                   "where the standard puts NAXIS"),
          "fits/ttype_unquoted_long_fortify_abort.fits.fz": ("corrupt_file", "HDU 2, card 1: XTENSION",
                                                               "outside printable ASCII"),
          "fits/tfields_huge_calloc_14gb.fits": ("corrupt_file", "HDU 2, card 8: TFIELDS = 87724078",
                                                 "is not from 0 to 999"),
          "config/num_classes_huge.json": ("num_classes", "out of range")}
for kind in sorted(os.listdir(reg)):
    for name in sorted(os.listdir(os.path.join(reg, kind))):
        path = os.path.join(reg, kind, name)
        if kind in ("fits", "png", "jpeg"):
            r = mctest.run(["cutout", path], check=False)
        elif kind in ("weights", "pickle"):
            r = mctest.run(["weights", path], check=False)
        elif kind == "config":  # a Hub folder: this config.json beside an empty weight file
            folder = mctest.tmpdir()
            with open(path, "rb") as src, open(os.path.join(folder, "config.json"), "wb") as dst:
                dst.write(src.read())
            open(os.path.join(folder, "model.safetensors"), "wb").close()
            r = mctest.run(["info", folder], check=False)
            name = "config.json"
        elif kind == "manifest":  # read as plan reads it (no model needed)
            r = mctest.run(["plan", "--manifest", path, "--rate", "1", "--cores-per-node", "1"], check=False)
        else:
            continue
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        want = expect.get(kind + "/" + os.path.basename(path))
        c.check(r.returncode == 1 and len(lines) == 1 and name in lines[0]
                and (want is None or all(w in lines[0] for w in want)),
                "%s/%s: refused with exit 1 and one line (exit %d): %r" % (kind, name, r.returncode, lines))
c.finish()
