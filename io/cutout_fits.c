/* io/cutout_fits.c: FITS cutouts through CFITSIO (plain, gzipped and tile-compressed files; every BITPIX,
 * scaled by CFITSIO with BSCALE/BZERO; BLANK pixels become NaN) and the centre's RA/Dec through wcslib.
 * It keeps planes as stored (row 0 = FITS y = 1) and never judges pixel values: that is io/preprocess.c. */
#include "io/cutout_internal.h"

#include <errno.h>
#include <fitsio.h>
#include <math.h>
#include <strings.h>
#include <wcslib/wcslib.h>
#include <unistd.h>
#include <zlib.h>

/* CFITSIO's short text for a status code ("tried to move past end of file"). */
static const char *fits_reason(int status, char *buf)
{
    fits_get_errstatus(status, buf);
    return buf;
}

static const char *bitpix_name(int bitpix)
{
    switch (bitpix) {
    case BYTE_IMG:
        return "uint8";
    case SHORT_IMG:
        return "int16";
    case LONG_IMG:
        return "int32";
    case LONGLONG_IMG:
        return "int64";
    case FLOAT_IMG:
        return "float32";
    case DOUBLE_IMG:
        return "float64";
    default:
        return "?";
    }
}

static const char *hdu_type_name(int hdutype)
{
    return hdutype == BINARY_TBL ? "binary table" : hdutype == ASCII_TBL ? "ASCII table" : "image";
}

/* Copy a header string into dst, trimmed of the blanks FITS pads strings with. Bytes outside printable
 * ASCII (illegal in FITS headers, seen in damaged files) become '?', so names stay valid text downstream. */
static void copy_trimmed(char *dst, size_t cap, const char *src)
{
    while (*src == ' ') src++;
    size_t n = strlen(src);
    while (n > 0 && src[n - 1] == ' ') n--;
    if (n >= cap) n = cap - 1;
    for (size_t i = 0; i < n; i++) dst[i] = src[i] >= 0x20 && src[i] <= 0x7e ? src[i] : '?';
    dst[n] = 0;
}

/* A string keyword of the current HDU, or 0 when absent. Never disturbs the caller's status. */
static int key_string(fitsfile *f, const char *key, char *val)
{
    int st = 0;
    char comment[FLEN_COMMENT];
    val[0] = 0;
    if (fits_read_key(f, TSTRING, key, val, comment, &st)) return 0;
    return 1;
}

/* Band names from the DECaLS convention (BAND0, BAND1, ...), else BANDS ("grz", or names separated by
 * commas or blanks), else FILTER for a single plane. Returns 1 when any name was found. */
static int read_band_names(fitsfile *f, io_cutout *c)
{
    char v[FLEN_VALUE], key[FLEN_KEYWORD];
    int found = 0;
    for (int i = 0; i < c->nband; i++) {
        snprintf(key, sizeof key, "BAND%d", i);
        if (key_string(f, key, v)) {
            copy_trimmed(c->band[i], sizeof c->band[i], v);
            found = 1;
        }
    }
    if (found) return 1;
    if (key_string(f, "BANDS", v)) {
        char t[FLEN_VALUE];
        copy_trimmed(t, sizeof t, v);
        int nt = 0;
        char names[IO_MAX_BANDS][16];
        for (char *p = t; *p && nt <= IO_MAX_BANDS;) {
            while (*p == ',' || *p == ' ' || *p == ';') p++;
            if (!*p) break;
            char *q = p;
            while (*q && *q != ',' && *q != ' ' && *q != ';') q++;
            if (nt < IO_MAX_BANDS) {
                char tok[FLEN_VALUE];
                snprintf(tok, sizeof tok, "%.*s", (int)(q - p), p);
                copy_trimmed(names[nt], sizeof names[nt], tok);
            }
            nt++;
            p = q;
        }
        if (nt == c->nband) {
            for (int i = 0; i < nt; i++) snprintf(c->band[i], sizeof c->band[i], "%s", names[i]);
            return 1;
        }
        /* The Legacy Surveys write BANDS = 'grz': one letter per plane. */
        if (nt == 1 && (int)strlen(t) == c->nband) {
            for (int i = 0; i < c->nband; i++)
                snprintf(c->band[i], sizeof c->band[i], "%c", t[i] >= 0x20 && t[i] <= 0x7e ? t[i] : '?');
            return 1;
        }
    }
    if (c->nband == 1 && key_string(f, "FILTER", v)) {
        copy_trimmed(c->band[0], sizeof c->band[0], v);
        return c->band[0][0] != 0;
    }
    return 0;
}

struct io_wcs {
    struct wcsprm *w;
    int swap; /* the WCS's first axis runs along the planes' rows, not their columns */
};

/* Centre of the image in world coordinates from the celestial axes of the primary (unlettered) WCS. ax_x
 * and ax_y are the 0-based FITS axes that became the planes' columns and rows; every other axis (the band
 * axis, degenerate axes) is evaluated at pixel 1. A missing or unusable WCS just leaves has_wcs = 0. WCSLIB
 * never sees the file's header: only its WCS cards, checked and written again by io_fits_wcs_cards (WCSLIB
 * 7.12's parser wcspih trusts its input and crashed on damaged cards: found by fuzz_fits); a WCS card that
 * cannot be read is a corrupt_file row naming the card. */
static int read_wcs_centre(fitsfile *f, int naxis, int ax_x, int ax_y, io_cutout *c, const char *path, char *err)
{
    char *raw = NULL;
    int nraw = 0, st = 0, nkeys = 0, bad = 0;
    char why[64], *hdr = NULL;
    /* A tile-compressed image's WCS cards are its table's, in the same order: CFITSIO's conversion to the
     * uncompressed image's header (convert_hdr2str) renames or drops only the Z and table keywords, none of them a
     * WCS card. The conversion zero-fills a memory image of the whole uncompressed size to do it (0.1 ms of a 256
     * px g,r,z cube), so the table's own cards are read; only for a malformed WCS card is the conversion made,
     * so that the message numbers the card as in the image's header. */
    if (fits_is_compressed_image(f, &st) && !fits_hdr2str(f, 0, NULL, 0, &raw, &nraw, &st) && raw) {
        hdr = io_fits_wcs_cards(raw, nraw, naxis, &nkeys, &bad, why, sizeof why);
    }
    if (raw) fits_free_memory(raw, &st);
    raw = NULL;
    st = 0;
    if (!hdr) {
        /* convert_hdr2str gives a tile-compressed image's header as the uncompressed image's. */
        if (fits_convert_hdr2str(f, 0, NULL, 0, &raw, &nraw, &st) || !raw) {
            if (raw) fits_free_memory(raw, &st);
            return MC_ROW_OK;
        }
        hdr = io_fits_wcs_cards(raw, nraw, naxis, &nkeys, &bad, why, sizeof why);
    }
    if (!hdr) {
        char key[9];
        int n = 0;
        for (; n < 8 && raw[(size_t)(bad - 1) * 80 + n] != ' '; n++) {
            char ch = raw[(size_t)(bad - 1) * 80 + n];
            key[n] = ch >= 0x20 && ch <= 0x7e ? ch : '?';
        }
        key[n] = 0;
        st = 0;
        fits_free_memory(raw, &st);
        return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: HDU %d: header card %d (%s): %s", path, c->hdu, bad, key,
                              why);
    }
    st = 0;
    if (raw) fits_free_memory(raw, &st);
    int nreject = 0, nwcs = 0;
    struct wcsprm *wcs = NULL;
    if (wcspih(hdr, nkeys, WCSHDR_all, 0, &nreject, &nwcs, &wcs) == 0 && nwcs > 0) {
        int pick = 0;
        for (int i = 0; i < nwcs; i++)
            if (wcs[i].alt[0] == ' ' || wcs[i].alt[0] == 0) {
                pick = i;
                break;
            }
        /* on the heap, so it can be kept as it is (wcsprm is not safe to copy byte-wise) */
        struct wcsprm *subp = mc_calloc(1, sizeof *subp);
        subp->flag = -1;
        int nsub = 2, axes[2] = {WCSSUB_LONGITUDE, WCSSUB_LATITUDE};
        if (wcssub(1, &wcs[pick], &nsub, axes, subp) == 0 && nsub == 2 && wcsset(subp) == 0 && subp->lng >= 0 &&
            subp->lat >= 0) {
            double pix[2], img[2], phi, theta, world[2];
            int stat[1];
            for (int k = 0; k < 2; k++) {
                int a = axes[k] - 1; /* 0-based FITS axis this celestial axis came from */
                pix[k] = a == ax_x ? (c->w + 1) / 2.0 : a == ax_y ? (c->h + 1) / 2.0 : 1.0;
            }
            if (wcsp2s(subp, 1, 2, pix, img, &phi, &theta, world, stat) == 0 && isfinite(world[subp->lng]) &&
                isfinite(world[subp->lat])) {
                c->ra = world[subp->lng];
                c->dec = world[subp->lat];
                c->has_wcs = 1;
                /* keep it for io_wcs_pix2sky (clump positions); axes not along the planes' columns
                 * or rows would need more than a swap, and only matter for exotic headers */
                int a0 = axes[0] - 1, a1 = axes[1] - 1;
                if ((a0 == ax_x && a1 == ax_y) || (a0 == ax_y && a1 == ax_x)) {
                    c->wcs = mc_calloc(1, sizeof *c->wcs);
                    c->wcs->w = subp; /* owned by c now */
                    c->wcs->swap = a0 == ax_y;
                    subp = NULL;
                }
            }
        }
        if (subp) {
            if (subp->flag != -1) wcsfree(subp);
            free(subp);
        }
    }
    if (wcs) wcsvfree(&nwcs, &wcs);
    free(hdr);
    return MC_ROW_OK;
}

/* Image dimensions of the current HDU; *npix 0 when it holds no data. */
static int hdu_dims(fitsfile *f, int *bitpix, int *naxis, LONGLONG *naxes, LONGLONG *npix, int *status)
{
    *naxis = 0;
    *npix = 0;
    if (fits_get_img_paramll(f, FITS_MAXDIM, bitpix, naxis, naxes, status)) return *status;
    if (*naxis > 0) {
        *npix = 1;
        for (int i = 0; i < *naxis && i < FITS_MAXDIM; i++) *npix = naxes[i] > 0 ? *npix * naxes[i] : 0;
    }
    return 0;
}

/* Move to the HDU named by sel (number, EXTNAME, "EXTNAME,EXTVER" or PRIMARY). */
static int move_to_named(fitsfile *f, const char *path, const char *sel, int *hdutype, char *err)
{
    int st = 0;
    char *end;
    long num = strtol(sel, &end, 10);
    if (end != sel && *end == 0) {
        if (num < 1)
            return io_cutout_fail(err, MC_ROW_BAD_SHAPE, "%s: bad HDU number %s (HDUs count from 1)", path,
                                  sel);
        if (fits_movabs_hdu(f, (int)num, hdutype, &st)) {
            int n = 0, s2 = 0;
            fits_get_num_hdus(f, &n, &s2);
            return io_cutout_fail(err, MC_ROW_BAD_SHAPE, "%s: no HDU %ld (the file has %d)", path, num, n);
        }
        return MC_ROW_OK;
    }
    char name[FLEN_VALUE];
    snprintf(name, sizeof name, "%s", sel);
    int ver = 0;
    char *comma = strchr(name, ',');
    if (comma) {
        *comma = 0;
        ver = (int)strtol(comma + 1, &end, 10);
        if (end == comma + 1 || *end)
            return io_cutout_fail(err, MC_ROW_BAD_SHAPE, "%s: bad HDU selector '%s'", path, sel);
    }
    if (!strcasecmp(name, "PRIMARY") && ver == 0) {
        fits_movabs_hdu(f, 1, hdutype, &st);
        return MC_ROW_OK;
    }
    if (fits_movnam_hdu(f, ANY_HDU, name, ver, &st)) {
        if (st == BAD_HDU_NUM)
            return io_cutout_fail(err, MC_ROW_BAD_SHAPE, "%s: no HDU named '%s'", path, sel);
        char why[FLEN_STATUS];
        return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: unreadable while looking for HDU '%s' (cfitsio: %s)",
                              path, sel, fits_reason(st, why));
    }
    fits_get_hdu_type(f, hdutype, &st);
    return MC_ROW_OK;
}

/* Move to the first HDU holding image data (a tile-compressed image counts as an image). */
static int move_to_first_image(fitsfile *f, const char *path, char *err)
{
    char seen[256] = "";
    size_t used = 0;
    for (int k = 1;; k++) {
        int st = 0, hdutype = 0;
        if (fits_movabs_hdu(f, k, &hdutype, &st)) {
            if (st == END_OF_FILE || st == BAD_HDU_NUM) {
                return io_cutout_fail(err, MC_ROW_BAD_SHAPE, "%s: no HDU holds an image (%d HDU%s: %s)", path,
                                      k - 1, k - 1 == 1 ? "" : "s", seen);
            }
            char why[FLEN_STATUS];
            return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: HDU %d is unreadable (cfitsio: %s)", path, k,
                                  fits_reason(st, why));
        }
        if (hdutype == IMAGE_HDU) {
            int bitpix, naxis;
            LONGLONG naxes[FITS_MAXDIM], npix;
            if (hdu_dims(f, &bitpix, &naxis, naxes, &npix, &st)) {
                char why[FLEN_STATUS];
                return io_cutout_fail(err, MC_ROW_CORRUPT,
                                      "%s: HDU %d has an unreadable image header (cfitsio: %s)", path, k,
                                      fits_reason(st, why));
            }
            if (npix > 0) return MC_ROW_OK;
            if (used < sizeof seen - 40)
                used += snprintf(seen + used, sizeof seen - used, "%sHDU %d empty", k > 1 ? ", " : "", k);
        } else if (used < sizeof seen - 40) {
            used += snprintf(seen + used, sizeof seen - used, "%sHDU %d %s", k > 1 ? ", " : "", k,
                             hdu_type_name(hdutype));
        }
    }
}

/* A BSCALE or BZERO that is present but not a finite number (NaN, Inf, text), or BSCALE = 0, would turn every
 * pixel into NaN or 0 without CFITSIO complaining: the header is broken. 1 and the card's value text if so;
 * else 0 with its value in *v (left as it was when the card is absent). */
static int scale_key_bad(fitsfile *f, const char *key, char *value, double *v)
{
    char comment[FLEN_COMMENT];
    int st = 0;
    if (fits_read_keyword(f, key, value, comment, &st)) return 0; /* absent */
    st = 0;
    if (fits_read_key(f, TDOUBLE, key, v, NULL, &st)) return 1;
    return !isfinite(*v) || (!strcmp(key, "BSCALE") && *v == 0);
}

/* Big-endian float32 to native, NaN and Inf to NAN, denormals and -0 to 0 (as CFITSIO's reading with a NaN
 * null value). Masks rather than selects, and a function of its own, so that it vectorises. */
__attribute__((noinline)) static void swap_float32(const unsigned char *src, uint32_t *u, size_t n)
{
    const uint32_t nan_bits = 0x7fc00000u; /* NAN */
    for (size_t i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, src + 4 * i, 4);
        v = __builtin_bswap32(v);
        uint32_t e = v & 0x7f800000u;
        uint32_t zero = -(uint32_t)(e == 0), nan = -(uint32_t)(e == 0x7f800000u);
        u[i] = (v & ~zero & ~nan) | (nan_bits & nan);
    }
}

/* An unscaled float32 image (the cutout services' kind) read straight into the planes: n values from byte
 * datastart of the FITS bytes b (the file the header check read, still open, or an inflated gzip stream), whose
 * length has been checked. CFITSIO's fits_read_img copies through its buffers and tests every value: 0.5 ms of
 * a 256 px g,r,z cube, a fortieth of EfficientNet-B0's time per galaxy. 0, or -1 with errno. */
static int read_float32(const io_fits_bytes *b, int64_t datastart, size_t n, float *pix)
{
    uint32_t *u = (uint32_t *)(void *)pix;
    if (b->mem) { /* swapped straight from the bytes */
        swap_float32(b->mem + datastart, u, n);
        return 0;
    }
    {
        const int fd = fileno(b->fp);
        for (size_t got = 0; got < n * 4;) {
            ssize_t k = pread(fd, (char *)u + got, n * 4 - got, (off_t)(datastart + (int64_t)got));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) {
                if (k == 0) errno = EIO; /* shorter than its length said a moment ago */
                return -1;
            }
            got += (size_t)k;
        }
    }
    swap_float32((const unsigned char *)u, u, n);
    return 0;
}

/* A gzip file inflated into memory (*out, *n bytes; members after the first appended, bytes after the last
 * ignored, as gzip does), at most IO_GZIP_MAX bytes: 0, or 1 and why. CFITSIO would inflate it too, but then
 * parse headers morphcat has not checked. */
#define IO_GZIP_MAX ((size_t)1 << 30)
static int gunzip_file(const char *path, unsigned char **out, size_t *n, char *why, size_t len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(why, len, "cannot open (%s)", strerror(errno));
        return 1;
    }
    z_stream z;
    memset(&z, 0, sizeof z);
    MC_ASSERT(inflateInit2(&z, 16 + MAX_WBITS) == Z_OK); /* 16: gzip framing only */
    unsigned char in[1 << 16];
    size_t cap = 1 << 20, used = 0;
    unsigned char *buf = mc_malloc(cap);
    int rc = Z_OK, bad = 0;
    for (;;) {
        if (z.avail_in == 0) {
            z.next_in = in;
            z.avail_in = (uInt)fread(in, 1, sizeof in, fp);
            if (z.avail_in == 0) break;
        }
        if (rc == Z_STREAM_END) { /* another member, or trailing bytes */
            if (z.avail_in < 2 || z.next_in[0] != 0x1f || z.next_in[1] != 0x8b) break;
            inflateReset(&z);
        }
        if (used == cap) {
            if (cap >= IO_GZIP_MAX) {
                snprintf(why, len, "gzip stream inflates to more than %zu MB", IO_GZIP_MAX >> 20);
                bad = 1;
                break;
            }
            cap *= 2;
            buf = mc_realloc(buf, cap);
        }
        z.next_out = buf + used;
        z.avail_out = (uInt)(cap - used);
        rc = inflate(&z, Z_NO_FLUSH);
        used = cap - z.avail_out;
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
            snprintf(why, len, "corrupt gzip stream after %zu bytes inflated (zlib: %s)", used, z.msg ? z.msg : "?");
            bad = 1;
            break;
        }
    }
    if (!bad && ferror(fp)) {
        snprintf(why, len, "read error");
        bad = 1;
    } else if (!bad && rc != Z_STREAM_END) {
        snprintf(why, len, "gzip stream cut short after %zu bytes inflated (file truncated?)", used);
        bad = 1;
    }
    inflateEnd(&z);
    fclose(fp);
    if (bad) {
        free(buf);
        return 1;
    }
    *out = buf;
    *n = used;
    return 0;
}

int io_cutout_fits_read(const char *path, const unsigned char *magic, size_t nmagic, int64_t size,
                        const unsigned char *file, const char *hdu, io_cutout *c, char *err)
{
    int plain = nmagic >= 9 && !memcmp(magic, "SIMPLE  =", 9);
    int gz = nmagic >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    fitsfile *f = NULL;
    int status = 0;
    char why[FLEN_STATUS];
    char kwhy[200];
    /* CFITSIO is given only bytes whose headers io_fits_headers_check has read: a plain FITS file, or a gzipped
     * one inflated here. It would also undo Unix compress, pkzip and pack itself, unchecked: those are refused. */
    if (!plain && !gz) {
        if (nmagic >= 2 && magic[0] == 0x1f && magic[1] == 0x9d)
            return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: a Unix-compressed (.Z) file, which morphcat does not "
                                  "read (recompress it with gzip)", path);
        return io_cutout_fail(
            err, MC_ROW_CORRUPT, "%s: not a FITS, PNG or JPEG file (first bytes %02x %02x %02x %02x)", path,
            magic[0], nmagic > 1 ? magic[1] : 0, nmagic > 2 ? magic[2] : 0, nmagic > 3 ? magic[3] : 0);
    }
    unsigned char *mem = NULL;
    size_t nmem = 0;
    io_fits_bytes bytes = {NULL, NULL, size};
    if (gz) {
        if (gunzip_file(path, &mem, &nmem, kwhy, sizeof kwhy))
            return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: %s", path, kwhy);
        if (nmem < 9 || memcmp(mem, "SIMPLE  =", 9)) {
            free(mem);
            return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: gzipped file that does not hold a FITS (%zu bytes "
                                  "inflated, no SIMPLE card first)", path, nmem);
        }
        bytes.mem = mem;
        bytes.size = size = (int64_t)nmem; /* from here on, the FITS is these bytes */
    } else if (file) {
        bytes.mem = file; /* the file's bytes, read by the caller: the header check and float32 pixels read them */
    } else if (!(bytes.fp = fopen(path, "rb"))) {
        return io_cutout_fail(err, MC_ROW_MISSING, "%s: cannot open (%s)", path, strerror(errno));
    }
    int bad = io_fits_headers_check(&bytes, kwhy, sizeof kwhy); /* (the file stays open for read_float32) */
    if (bad) {
        if (bytes.fp) fclose(bytes.fp);
        free(mem);
        return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: corrupt FITS header (%s)", path, kwhy);
    }
    /* diskfile: the path is a plain file name, never CFITSIO's extended syntax ("x.fits[1]", "a=b"). */
    /* (a plain file read whole is still opened from disk by CFITSIO: its memory driver reports a read past the
     * end otherwise than the disk driver, which changed a truncated tile-compressed file's message) */
    void *memp = mem;
    if (gz ? fits_open_memfile(&f, path, READONLY, &memp, &nmem, 0, NULL, &status)
           : fits_open_diskfile(&f, path, READONLY, &status)) {
        if (f) {
            int s2 = 0;
            fits_close_file(f, &s2);
        }
        if (bytes.fp) fclose(bytes.fp);
        free(mem);
        return io_cutout_fail(err, MC_ROW_CORRUPT, "%s: unreadable FITS header%s (cfitsio: %s)", path,
                              gz ? " inside the gzip stream" : "", fits_reason(status, why));
    }
    int rc = MC_ROW_OK, hdutype = IMAGE_HDU;
    if (hdu && hdu[0])
        rc = move_to_named(f, path, hdu, &hdutype, err);
    else
        rc = move_to_first_image(f, path, err);
    int hdunum = 0;
    fits_get_hdu_num(f, &hdunum);
    if (rc != MC_ROW_OK) goto done;
    if (hdutype != IMAGE_HDU) {
        rc = io_cutout_fail(err, MC_ROW_BAD_SHAPE, "%s: HDU %d is a %s, not an image", path, hdunum,
                            hdu_type_name(hdutype));
        goto done;
    }
    int bitpix = 0, naxis = 0;
    LONGLONG naxes[FITS_MAXDIM], npix = 0;
    if (hdu_dims(f, &bitpix, &naxis, naxes, &npix, &status)) {
        rc = io_cutout_fail(err, MC_ROW_CORRUPT, "%s: HDU %d has an unreadable image header (cfitsio: %s)",
                            path, hdunum, fits_reason(status, why));
        goto done;
    }
    char sval[FLEN_VALUE];
    double scaling[2] = {1.0, 0.0}; /* BSCALE, BZERO */
    for (int k = 0; k < 2; k++) {
        const char *key = k ? "BZERO" : "BSCALE";
        if (scale_key_bad(f, key, sval, &scaling[k])) {
            rc = io_cutout_fail(err, MC_ROW_CORRUPT, "%s: HDU %d: %s = %s is not a usable scaling number", path,
                                hdunum, key, sval);
            goto done;
        }
    }
    if (naxis > FITS_MAXDIM || npix == 0) {
        rc = io_cutout_fail(err, MC_ROW_BAD_SHAPE, "%s: HDU %d holds no image data (NAXIS = %d)", path,
                            hdunum, naxis);
        goto done;
    }
    /* Drop degenerate (length 1) axes: 1 x N x N and N x N x 1 cubes are images. The first two remaining
     * axes are columns and rows, a third one the planes. */
    int keep[FITS_MAXDIM], nkeep = 0;
    for (int i = 0; i < naxis; i++)
        if (naxes[i] > 1) keep[nkeep++] = i;
    char shape[96];
    {
        size_t u = 0;
        for (int i = naxis - 1; i >= 0; i--)
            u += snprintf(shape + u, sizeof shape - u, "%s%lld", i == naxis - 1 ? "" : "x",
                          (long long)naxes[i]);
    }
    if (nkeep < 2 || nkeep > 3) {
        rc = io_cutout_fail(err, MC_ROW_BAD_SHAPE,
                            "%s: HDU %d is a %d-D image (%s); need a 2-D image or a cube of planes", path,
                            hdunum, nkeep, shape);
        goto done;
    }
    LONGLONG w = naxes[keep[0]], h = naxes[keep[1]], nb = nkeep == 3 ? naxes[keep[2]] : 1;
    if (nb > IO_MAX_BANDS) {
        rc = io_cutout_fail(err, MC_ROW_BAD_SHAPE, "%s: HDU %d has %lld planes (%s); at most %d are read",
                            path, hdunum, (long long)nb, shape, IO_MAX_BANDS);
        goto done;
    }
    char what[32];
    snprintf(what, sizeof what, "HDU %d", hdunum);
    if ((rc = io_cutout_check_size(path, what, w, h, nb, err)) != MC_ROW_OK) goto done;
    c->w = (int)w;
    c->h = (int)h;
    c->nband = (int)nb;
    c->hdu = hdunum;
    LONGLONG datastart = 0, headstart = 0, dataend = 0;
    int s2 = 0;
    fits_get_hduaddrll(f, &headstart, &datastart, &dataend, &s2);
    int s3 = 0, zimg = fits_is_compressed_image(f, &s3);
    int64_t plane_bytes = (int64_t)w * h * (bitpix < 0 ? -bitpix : bitpix) / 8;
    /* A file (or inflated gzip stream) shorter than its header promises is refused before reading (the usual
     * damage: a download cut short). Tile-compressed data are checked by CFITSIO as it decompresses. */
if (!zimg && size < datastart + plane_bytes * nb) {
        int64_t have = size > datastart ? size - datastart : 0;
        rc = io_cutout_fail(
            err, MC_ROW_CORRUPT,
            "%s: truncated: header promises %s %s pixels (%lld bytes), file ends after %lld of %lld planes",
            path, shape, bitpix_name(bitpix), (long long)(plane_bytes * nb), (long long)(have / plane_bytes),
            (long long)nb);
        goto done;
    }
    float *pix = io_cutout_reserve(c, (size_t)(w * h * nb));
    char rwhy[160];
    int decoded = 0;
    const int plain_values = scaling[0] == 1.0 && scaling[1] == 0.0;
    if (zimg && io_fits_tiles_read(f, naxis, naxes, plain_values, c, pix, &decoded, rwhy, sizeof rwhy)) {
        rc = io_cutout_fail(err, MC_ROW_CORRUPT, "%s: HDU %d: corrupt tile-compressed pixel data (%s)", path, hdunum,
                            rwhy);
        goto done;
    }
    /* A NaN null value makes CFITSIO return BLANK (integer) and NaN (float) pixels as NaN. */
    float nanv = NAN;
    int anynul = 0;
    if (decoded) {
        /* the tiles were decoded by io_fits_tiles_read */
    } else if (!zimg && bitpix == FLOAT_IMG && plain_values) {
        if (read_float32(&bytes, datastart, (size_t)npix, pix)) {
            rc = io_cutout_fail(err, MC_ROW_CORRUPT, "%s: HDU %d: float32 pixel data unreadable (%s)", path, hdunum,
                                strerror(errno));
            goto done;
        }
    } else if (fits_read_img(f, TFLOAT, 1, npix, &nanv, pix, &anynul, &status)) {
        rc = io_cutout_fail(err, MC_ROW_CORRUPT,
                            "%s: HDU %d: truncated or corrupt %s pixel data (cfitsio: %s)", path, hdunum,
                            zimg ? "tile-compressed" : bitpix_name(bitpix), fits_reason(status, why));
        goto done;
    }
    char v[FLEN_VALUE];
    if (key_string(f, "EXTNAME", v)) copy_trimmed(c->extname, sizeof c->extname, v);
    if (!read_band_names(f, c) && hdunum > 1) {
        /* INHERIT = T: keywords missing here are taken from the primary header (FITS extension convention).
         */
        int inherit = 0, st = 0;
        if (!fits_read_key(f, TLOGICAL, "INHERIT", &inherit, NULL, &st) && inherit) {
            st = 0;
            int t;
            if (!fits_movabs_hdu(f, 1, &t, &st)) read_band_names(f, c);
            st = 0;
            fits_movabs_hdu(f, hdunum, &t, &st);
        }
    }
    rc = read_wcs_centre(f, naxis, keep[0], keep[1], c, path, err);
done:
    s2 = 0;
    fits_close_file(f, &s2);
    if (bytes.fp) fclose(bytes.fp);
    free(mem);
    return rc;
}

void io_wcs_free(io_wcs *w)
{
    if (!w) return;
    wcsfree(w->w);
    free(w->w);
    free(w);
}

void io_cutout_wcs_free(io_cutout *c)
{
    io_wcs_free(c->wcs);
    c->wcs = NULL;
}

io_wcs *io_cutout_take_wcs(io_cutout *c)
{
    io_wcs *w = c->wcs;
    c->wcs = NULL;
    return w;
}

int io_wcs_pix2sky(const io_wcs *wc, double x, double y, double *ra, double *dec)
{
    if (!wc) return -1;
    struct wcsprm *w = wc->w;
    double pix[2] = {wc->swap ? y : x, wc->swap ? x : y}, img[2], phi, theta, world[2];
    int stat[1];
    if (wcsp2s(w, 1, 2, pix, img, &phi, &theta, world, stat) != 0) return -1;
    if (!isfinite(world[w->lng]) || !isfinite(world[w->lat])) return -1;
    *ra = world[w->lng];
    *dec = world[w->lat];
    return 0;
}
