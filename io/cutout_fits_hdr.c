/* io/cutout_fits_hdr.c: morphcat's own strict reading of FITS header cards, done before CFITSIO or WCSLIB see
 * a header. Both trust their headers, and damaged ones crashed them (docs/catalogue.md, "Fuzzing"), so this
 * walks the HDUs as CFITSIO will, checks every card CFITSIO interprets on the way, and rewrites the WCS cards
 * WCSLIB is given. It decodes no pixels and does not judge values beyond what keeps those libraries safe. */
#include "io/cutout_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <strings.h>

/* ---- one card ---- */

enum { FV_UNDEF, FV_STR, FV_LOG, FV_INT, FV_REAL, FV_CPLX, FV_BAD, FV_NONASCII };

static int is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* The end of a FITS number starting at c[j] (Pence et al. 2010, section 4.2.3-4.2.4: [+-]digits[.digits]
 * [E|D[+-]digits]), or -1. *real: it has a point or an exponent. */
static int number_end(const char *c, int j, int *real)
{
    int digits = 0;
    *real = 0;
    if (j < 80 && (c[j] == '+' || c[j] == '-')) j++;
    for (; j < 80 && is_digit(c[j]); j++) digits++;
    if (j < 80 && c[j] == '.') {
        *real = 1;
        for (j++; j < 80 && is_digit(c[j]); j++) digits++;
    }
    if (!digits) return -1;
    if (j < 80 && (c[j] == 'E' || c[j] == 'D' || c[j] == 'e' || c[j] == 'd')) {
        int ed = 0;
        *real = 1;
        j++;
        if (j < 80 && (c[j] == '+' || c[j] == '-')) j++;
        for (; j < 80 && is_digit(c[j]); j++) ed++;
        if (!ed) return -1;
    }
    return j;
}

/* The value of a card with a value indicator ('=' in column 9; CFITSIO takes "=(" as one too): its kind
 * (FV_*) and the columns [*t0, *t1) of its token (a string with its quotes). FV_BAD for anything that is not
 * one value followed by blanks or a comment; FV_NONASCII for a card with a byte outside printable ASCII
 * (which FITS forbids in headers). */
static int card_value(const char *c, int *t0, int *t1)
{
    for (int j = 0; j < 80; j++)
        if (c[j] < 0x20 || c[j] > 0x7e) return FV_NONASCII;
    int j = 9, kind, real;
    while (j < 80 && c[j] == ' ') j++;
    *t0 = *t1 = j;
    if (j == 80 || c[j] == '/') return FV_UNDEF;
    if (c[j] == '\'') {
        for (j++;; j++) {
            if (j >= 80) return FV_BAD; /* no closing quote */
            if (c[j] != '\'') continue;
            if (j + 1 < 80 && c[j + 1] == '\'')
                j++; /* '' is a quote inside the string */
            else
                break;
        }
        j++;
        kind = FV_STR;
    } else if (c[j] == 'T' || c[j] == 'F') {
        j++;
        kind = FV_LOG;
    } else if (c[j] == '(') { /* complex: (re, im) */
        j++;
        while (j < 80 && c[j] == ' ') j++;
        if ((j = number_end(c, j, &real)) < 0) return FV_BAD;
        while (j < 80 && c[j] == ' ') j++;
        if (j == 80 || c[j++] != ',') return FV_BAD;
        while (j < 80 && c[j] == ' ') j++;
        if ((j = number_end(c, j, &real)) < 0) return FV_BAD;
        while (j < 80 && c[j] == ' ') j++;
        if (j == 80 || c[j++] != ')') return FV_BAD;
        kind = FV_CPLX;
    } else {
        if ((j = number_end(c, j, &real)) < 0) return FV_BAD;
        kind = real ? FV_REAL : FV_INT;
    }
    *t1 = j;
    while (j < 80 && c[j] == ' ') j++;
    return j == 80 || c[j] == '/' ? kind : FV_BAD;
}

/* A value's text for a message: printable, at most 20 characters. */
static const char *shown(const char *c, int t0, int t1, char out[24])
{
    int n = 0;
    if (t1 <= t0) { /* a bad value: up to its comment */
        for (t1 = t0; t1 < 80 && c[t1] != '/'; t1++) {
        }
        while (t1 > t0 && c[t1 - 1] == ' ') t1--;
    }
    for (int j = t0; j < t1 && n < 20; j++) out[n++] = c[j] >= 0x20 && c[j] <= 0x7e ? c[j] : '?';
    out[n] = 0;
    return out;
}

/* The keyword name of a card (columns 1-8, trailing blanks dropped), printable. */
static void card_name(const char *c, char name[9])
{
    int n = 8;
    while (n > 0 && c[n - 1] == ' ') n--;
    for (int j = 0; j < n; j++) name[j] = c[j] >= 0x20 && c[j] <= 0x7e ? c[j] : '?';
    name[n] = 0;
}

/* name is prefix followed by a positive integer of at most 3 digits (NAXIS2, TTYPE12): that integer, else 0.
 */
static int indexed(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) || !name[n] || name[n] == '0') return 0;
    int k = 0;
    for (const char *p = name + n; *p; p++) {
        if (!is_digit(*p) || p - (name + n) >= 3) return 0;
        k = k * 10 + (*p - '0');
    }
    return k;
}

/* ---- the cards CFITSIO interprets ---- */

enum { HK_LOG = 1, HK_INT, HK_NUM, HK_STR, HK_INT_OR_STR };

/* What CFITSIO 4.2 reads of a header as it enters an HDU (image, table or tile-compressed image: ffgphd,
 * ffgtbp, imcomp_get_compressed_image_par) and as morphcat reads the image and its band names, with the type
 * each must have. prefix: the name is followed by an index. 0: not interpreted (left alone). */
static int interpreted_type(const char *name)
{
    static const struct {
        const char *name;
        int type, prefix;
    } keys[] = {
        {"SIMPLE", HK_LOG, 0},   {"EXTEND", HK_LOG, 0},       {"GROUPS", HK_LOG, 0},
        {"INHERIT", HK_LOG, 0},  {"ZIMAGE", HK_LOG, 0},       {"ZSIMPLE", HK_LOG, 0},
        {"ZEXTEND", HK_LOG, 0},  {"BITPIX", HK_INT, 0},       {"NAXIS", HK_INT, 0},
        {"NAXIS", HK_INT, 1},    {"PCOUNT", HK_INT, 0},       {"GCOUNT", HK_INT, 0},
        {"TFIELDS", HK_INT, 0},  {"THEAP", HK_INT, 0},        {"TBCOL", HK_INT, 1},
        {"EXTVER", HK_INT, 0},   {"EXTLEVEL", HK_INT, 0},     {"BLANK", HK_INT, 0},
        {"ZBITPIX", HK_INT, 0},  {"ZNAXIS", HK_INT, 0},       {"ZNAXIS", HK_INT, 1},
        {"ZTILE", HK_INT, 1},    {"ZDITHER0", HK_INT, 0},     {"ZPCOUNT", HK_INT, 0},
        {"ZGCOUNT", HK_INT, 0},  {"ZTHEAP", HK_INT, 0},       {"ZBLANK", HK_INT, 0},
        {"BSCALE", HK_NUM, 0},   {"BZERO", HK_NUM, 0},        {"TSCAL", HK_NUM, 1},
        {"TZERO", HK_NUM, 1},    {"ZSCALE", HK_NUM, 0},       {"ZZERO", HK_NUM, 0},
        {"ZVAL", HK_NUM, 1},     {"TNULL", HK_INT_OR_STR, 1}, {"XTENSION", HK_STR, 0},
        {"TTYPE", HK_STR, 1},    {"TFORM", HK_STR, 1},        {"TUNIT", HK_STR, 1},
        {"TDISP", HK_STR, 1},    {"TDIM", HK_STR, 1},         {"EXTNAME", HK_STR, 0},
        {"HDUNAME", HK_STR, 0},  {"ZCMPTYPE", HK_STR, 0},     {"ZNAME", HK_STR, 1},
        {"ZQUANTIZ", HK_STR, 0}, {"ZTENSION", HK_STR, 0},     {"ZFORM", HK_STR, 1},
        {"ZCTYP", HK_STR, 1},    {"ZMASKCMP", HK_STR, 0},     {"ZHECKSUM", HK_STR, 0},
        {"ZDATASUM", HK_STR, 0}, {"BAND", HK_STR, 1},         {"BANDS", HK_STR, 0},
        {"FILTER", HK_STR, 0},
    };
    if (!strcmp(name, "BAND0")) return HK_STR; /* the DECaLS convention counts planes from 0 */
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (keys[i].prefix ? indexed(name, keys[i].name) > 0 : !strcmp(name, keys[i].name))
            return keys[i].type;
    return 0;
}

/* Whether CFITSIO would read this integer value as >= 1: it reads "1E-3" as 0. */
static int at_least_one(const char *c, int t0, int t1)
{
    char v[81];
    memcpy(v, c + t0, (size_t)(t1 - t0));
    v[t1 - t0] = 0;
    for (char *p = v; *p; p++)
        if (*p == 'D' || *p == 'd') *p = 'E';
    return strtod(v, NULL) >= 1;
}

/* Whether the integer token c[t0, t1) fits in int64. */
static int int64_value(const char *c, int t0, int t1)
{
    char v[24];
    memcpy(v, c + t0, (size_t)(t1 - t0));
    v[t1 - t0] = 0;
    errno = 0;
    (void)strtoll(v, NULL, 10);
    return errno != ERANGE;
}

/* A checked header's numbers CFITSIO uses to find the next HDU, and its tile-compression keywords. */
typedef struct {
    int64_t bitpix, naxis, naxes[1000], pcount, gcount;
    int have_bitpix, have_naxis, groups;
    int rice, block_n;  /* ZCMPTYPE = 'RICE...; the n of ZNAMEn = 'BLOCKSIZE' */
    char zval[100][81]; /* ZVALn's tokens (n < 100), "" when absent: ZNAMEn may come after ZVALn */
    char zname[3][81];  /* ZNAME1 and ZNAME2's tokens */
    char (*seen)[9];    /* the interpreted keywords' names, for duplicates */
    size_t nseen, capseen;
} hdr_state;

/* One card of a header: 0 if CFITSIO may read it, else 1 and why. */
static int card_check(const char *c, hdr_state *h, char *why, size_t len)
{
    char name[9], full[9], tok[24];
    /* the name as CFITSIO matches it when it looks a keyword up: columns 1-8 up to a blank or '='. It reads a
     * value from such a card whatever follows (a "ZVAL1   " card with binary bytes from column 9 on
     * overflowed its number message: abort, found by fuzz_fits), so the card must be laid out as the standard
     * says. */
    int n = 0;
    for (; n < 8 && c[n] != ' ' && c[n] != '='; n++) name[n] = c[n] >= 'a' && c[n] <= 'z' ? c[n] - 32 : c[n];
    name[n] = 0;
    int type = interpreted_type(name); /* in capitals, in case a lower-case name matches too */
    if (!type) return 0;
    card_name(c, full);
    if (strcmp(full, name) || c[8] != '=') {
        snprintf(why, len, "%s: a card of a keyword CFITSIO reads, without '=' in column 9 after its name",
                 name);
        return 1;
    }
    int t0, t1, v = card_value(c, &t0, &t1);
    if (v == FV_NONASCII) {
        snprintf(why, len, "%s: bytes outside printable ASCII", name);
        return 1;
    }
    if (v == FV_BAD && (type == HK_STR || type == HK_INT_OR_STR) && t0 < 80 && c[t0] == '\'') {
        snprintf(why, len, "%s: a string value without its closing quote", name);
        return 1;
    }
    /* integers within int64 (an int64 image's BLANK may be -9223372036854775808); CFITSIO's message for a
     * longer one would overflow */
    int int64_ok = v == FV_INT && t1 - t0 <= 20 && int64_value(c, t0, t1);
    int ok = type == HK_LOG   ? v == FV_LOG
             : type == HK_INT ? int64_ok
             : type == HK_NUM ? (v == FV_INT || v == FV_REAL) && t1 - t0 <= 40
             : type == HK_STR ? v == FV_STR
                              : v == FV_STR || int64_ok;
    if (!ok) {
        const char *want = type == HK_LOG   ? "is not T or F"
                           : type == HK_INT ? "is not an integer"
                           : type == HK_NUM ? "is not a number"
                           : type == HK_STR ? "is not a quoted string"
                                            : "is not an integer or a quoted string";
        snprintf(why, len, "%s = %s %s", name, shown(c, t0, v == FV_BAD ? t0 : t1, tok), want);
        return 1;
    }
    int k;
    char val[81];
    memcpy(val, c + t0, (size_t)(t1 - t0));
    val[t1 - t0] = 0;
    if (h->nseen == h->capseen) {
        h->capseen = h->capseen ? 2 * h->capseen : 64;
        h->seen = mc_realloc(h->seen, h->capseen * sizeof *h->seen);
    }
    memcpy(h->seen[h->nseen++], name, 9);
    if ((k = indexed(name, "ZNAME")) > 0 && k < 3) snprintf(h->zname[k], sizeof h->zname[k], "%s", val);
    if (!strcmp(name, "BITPIX"))
        h->bitpix = strtoll(val, NULL, 10), h->have_bitpix = 1;
    else if (!strcmp(name, "NAXIS"))
        h->naxis = strtoll(val, NULL, 10), h->have_naxis = 1;
    else if ((k = indexed(name, "NAXIS")) > 0)
        h->naxes[k - 1] = strtoll(val, NULL, 10);
    else if (!strcmp(name, "PCOUNT"))
        h->pcount = strtoll(val, NULL, 10);
    else if (!strcmp(name, "GCOUNT"))
        h->gcount = strtoll(val, NULL, 10);
    else if (!strcmp(name, "GROUPS"))
        h->groups = val[0] == 'T';
    else if (!strcmp(name, "ZCMPTYPE") && !strncasecmp(val, "'RICE", 5))
        h->rice = 1;
    else if ((k = indexed(name, "ZNAME")) > 0 && !strncasecmp(val, "'BLOCKSIZE", 10))
        h->block_n = k;
    else if ((k = indexed(name, "ZVAL")) > 0 && k < 100)
        snprintf(h->zval[k], sizeof h->zval[k], "%s", val);
    /* CFITSIO 4.2 divides by the RICE_1 block size, ZTILEn and ZNAXISn (the default ZTILE1) as it enters a
     * tile-compressed HDU (imcomp_get_compressed_image_par, imcomp_calc_max_elem): a 0 there is a SIGFPE
     * (found by fuzz_fits). It reads these integers as numbers: "1E-3" is 0. */
    if ((k = indexed(name, "ZTILE")) > 0 && !at_least_one(c, t0, t1)) {
        snprintf(why, len, "%s = %s", name, shown(c, t0, t1, tok));
        return 1;
    }
    if ((k = indexed(name, "ZNAXIS")) > 0 && !at_least_one(c, t0, t1)) {
        snprintf(why, len, "%s = %s", name, shown(c, t0, t1, tok));
        return 1;
    }
    /* FITS 4.0 sections 7.2.1 and 7.3.1: a table has 0 to 999 fields. CFITSIO allocates one column structure
     * per field as it enters a table, before reading any of them (ffgtbp): TFIELDS = 87724078 asked calloc
     * for 14 GB (found by fuzz_fits) */
    if (!strcmp(name, "TFIELDS")) {
        long long fields = strtoll(val, NULL, 10);
        if (fields < 0 || fields > 999) {
            snprintf(why, len, "TFIELDS = %s is not from 0 to 999", shown(c, t0, t1, tok));
            return 1;
        }
    }
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* A quoted string token's text without its quotes and trailing blanks equals want, ignoring case. */
static int str_is(const char *tok, const char *want)
{
    size_t n = strlen(tok), w = strlen(want);
    if (n < 2 || tok[0] != '\'') return 0;
    n -= 2;
    while (n > 0 && tok[n] == ' ') n--;
    return n == w && !strncasecmp(tok + 1, want, w);
}

/* After a header's END: the checks that need the whole header (ZNAMEn may follow ZVALn). */
static int header_end_check(hdr_state *h, char *why, size_t len)
{
    char tok[24], tok2[24];
    /* a keyword CFITSIO interprets given twice: which one it reads depends on where its last search ended
     * (a second ZVAL1 made it decode RICE_1 tiles with another block size than the one checked: SEGV in
     * fits_rdecomp, found by fuzz_fits) */
    qsort(h->seen, h->nseen, sizeof *h->seen, name_cmp);
    for (size_t i = 1; i < h->nseen; i++)
        if (!strcmp(h->seen[i - 1], h->seen[i])) {
            snprintf(why, len, "%s appears more than once", h->seen[i]);
            return 1;
        }
    if (h->block_n > 0 && h->block_n < 100 && h->zval[h->block_n][0] &&
        !at_least_one(h->zval[h->block_n], 0, (int)strlen(h->zval[h->block_n]))) {
        snprintf(why, len, "BLOCKSIZE = %s",
                 shown(h->zval[h->block_n], 0, (int)strlen(h->zval[h->block_n]), tok));
        return 1;
    }
    /* for RICE_1 CFITSIO takes ZVAL1 as the block size whatever ZNAME1 says */
    if (h->rice && h->zval[1][0] && !at_least_one(h->zval[1], 0, (int)strlen(h->zval[1]))) {
        snprintf(why, len, "RICE_1 block size ZVAL1 = %s",
                 shown(h->zval[1], 0, (int)strlen(h->zval[1]), tok));
        return 1;
    }
    /* and ZVAL2 as the bytes per pixel: names other than the convention's (Pence et al. 2009) would make
     * morphcat's tile check and CFITSIO's decoder read different parameters */
    if (h->rice && ((h->zname[1][0] && !str_is(h->zname[1], "BLOCKSIZE")) ||
                    (h->zname[2][0] && !str_is(h->zname[2], "BYTEPIX")))) {
        snprintf(why, len, "RICE_1 parameters named %s and %s, not 'BLOCKSIZE' and 'BYTEPIX'",
                 h->zname[1][0] ? shown(h->zname[1], 0, (int)strlen(h->zname[1]), tok) : "(none)",
                 h->zname[2][0] ? shown(h->zname[2], 0, (int)strlen(h->zname[2]), tok2) : "(none)");
        return 1;
    }
    return 0;
}

/* The mandatory keywords come first and in order (FITS 4.0, section 4.4.1): SIMPLE or XTENSION, BITPIX,
 * NAXIS, NAXIS1 ... NAXISn, and in an extension PCOUNT and GCOUNT. CFITSIO reads them by position and is more
 * lenient with their names (it read a card named "NAXIS  \x01" as NAXIS and went on to an HDU this scan
 * could not reach: SIGFPE, found by fuzz_fits); this holds the header to the standard, so the HDUs it walks
 * are the ones CFITSIO can reach. 0 if card number card (0-based) is as it should be, else 1 and why. */
static int mandatory_check(const char *c, const hdr_state *h, int hdu, int64_t card, char *why, size_t len)
{
    char want[16] = "", name[9];
    if (card == 1)
        snprintf(want, sizeof want, "BITPIX");
    else if (card == 2)
        snprintf(want, sizeof want, "NAXIS");
    else if (card >= 3 && card < 3 + h->naxis)
        snprintf(want, sizeof want, "NAXIS%lld", (long long)card - 2);
    else if (hdu > 1 && card == 3 + h->naxis)
        snprintf(want, sizeof want, "PCOUNT");
    else if (hdu > 1 && card == 4 + h->naxis)
        snprintf(want, sizeof want, "GCOUNT");
    if (card == 3 && (h->bitpix != 8 && h->bitpix != 16 && h->bitpix != 32 && h->bitpix != 64 &&
                      h->bitpix != -32 && h->bitpix != -64)) {
        snprintf(why, len, "BITPIX = %lld is not 8, 16, 32, 64, -32 or -64", (long long)h->bitpix);
        return 1;
    }
    if (card == 3 && (h->naxis < 0 || h->naxis > 999)) {
        snprintf(why, len, "NAXIS = %lld is not from 0 to 999", (long long)h->naxis);
        return 1;
    }
    if (card >= 4 && card <= 3 + h->naxis && h->naxes[card - 4] < 0) {
        snprintf(why, len, "NAXIS%lld = %lld is negative", (long long)card - 3,
                 (long long)h->naxes[card - 4]);
        return 1;
    }
    if (card == 0 && c[8] != '=') {
        snprintf(why, len, "%.8s has no value", c);
        return 1;
    }
    if (!want[0]) return 0;
    card_name(c, name);
    if (strcmp(name, want) || c[8] != '=') {
        snprintf(why, len, "%s where the standard puts %s", name, want);
        return 1;
    }
    return 0;
}

/* Bytes [at, at + n) of b into dst; how many were there. */
static size_t bytes_read(const io_fits_bytes *b, int64_t at, char *dst, size_t n)
{
    if (at < 0 || at >= b->size) return 0;
    if ((int64_t)n > b->size - at) n = (size_t)(b->size - at);
    if (b->mem) {
        memcpy(dst, b->mem + at, n);
        return n;
    }
    if (fseeko(b->fp, (off_t)at, SEEK_SET)) return 0;
    return fread(dst, 1, n, b->fp);
}

int io_fits_headers_check(const io_fits_bytes *b, char *why, size_t len)
{
    hdr_state *h = mc_calloc(1, sizeof *h);
    char blk[2880];
    int bad = 0;
    int64_t at = 0;
    for (int hdu = 1; !bad; hdu++) {
        char(*seen)[9] = h->seen;
        size_t capseen = h->capseen;
        memset(h, 0, sizeof *h);
        h->seen = seen;
        h->capseen = capseen;
        h->gcount = 1;
        int64_t card = 0, end = -1;
        while (end < 0) { /* one header, a block of 36 cards at a time, up to its END */
            size_t got = bytes_read(b, at + card * 80, blk, sizeof blk);
            if (got < 80) break; /* the file ends inside the header: CFITSIO says so */
            if (card == 0 && memcmp(blk, hdu == 1 ? "SIMPLE  " : "XTENSION", 8))
                goto out; /* no further HDU */
            for (size_t j = 0; j + 80 <= got; j += 80, card++) {
                const char *c = blk + j;
                if (!memcmp(c, "END     ", 8)) {
                    end = card;
                    break;
                }
                if (mandatory_check(c, h, hdu, card, why, len) || card_check(c, h, why, len)) {
                    char w2[160];
                    snprintf(w2, sizeof w2, "%s", why);
                    snprintf(why, len, "HDU %d, card %lld: %s", hdu, (long long)card + 1, w2);
                    bad = 1;
                    goto out;
                }
            }
            if (got < sizeof blk) break;
        }
        if (end < 0) break;
        if (header_end_check(h, why, len)) {
            char w2[160];
            snprintf(w2, sizeof w2, "%s", why);
            snprintf(why, len, "HDU %d: %s", hdu, w2);
            bad = 1;
            break;
        }
        /* where CFITSIO will look for the next HDU: the data's |BITPIX|/8 * GCOUNT * (PCOUNT + NAXIS1 * ... *
         * NAXISn) bytes (NAXIS1 = 0 left out for random groups), in 2880-byte blocks */
        if (!h->have_bitpix || !h->have_naxis || h->naxis < 0 || h->naxis > 999) break;
        int64_t bytes = h->naxis > 0 ? 1 : 0, lim = (int64_t)1 << 50;
        for (int i = 0; i < h->naxis && bytes; i++) {
            int64_t n = h->naxes[i];
            if (i == 0 && n == 0 && h->groups) continue;
            if (n < 0 || (n > 0 && bytes > lim / n)) goto out;
            bytes *= n;
        }
        if (h->pcount < 0 || h->gcount < 0 || h->pcount > lim || h->gcount > 1 << 20) break;
        bytes = (bytes + h->pcount) * h->gcount;
        int64_t bpix = h->bitpix < 0 ? -h->bitpix : h->bitpix;
        if (bytes > lim) break;
        bytes *= bpix / 8;
        at += ((end + 1) * 80 + 2879) / 2880 * 2880 + (bytes + 2879) / 2880 * 2880;
        if (at >= b->size) break;
    }
out:
    free(h->seen);
    free(h);
    return bad;
}

/* ---- the WCS cards WCSLIB is given ---- */

enum { WK_NUM = 1, WK_STR, WK_INT };

/* A primary (unlettered) WCS keyword of the FITS WCS papers (Greisen & Calabretta 2002, Calabretta & Greisen
 * 2002) that morphcat gives WCSLIB, with its type; 0 for any other name (an alternate description's, or not
 * WCS). Axis numbers 1-9, PVi_m's m 0-99. */
static int wcs_key_type(const char *name)
{
    static const char *num1[] = {"CRVAL", "CRPIX", "CDELT", "CROTA"}, *str1[] = {"CTYPE", "CUNIT"},
                      *num2[] = {"CD", "PC", "PV"};
    static const char *num0[] = {"LONPOLE", "LATPOLE", "EQUINOX", "EPOCH"}, *str0[] = {"RADESYS", "RADECSYS"};
    for (size_t i = 0; i < sizeof num0 / sizeof *num0; i++)
        if (!strcmp(name, num0[i])) return WK_NUM;
    for (size_t i = 0; i < sizeof str0 / sizeof *str0; i++)
        if (!strcmp(name, str0[i])) return WK_STR;
    if (!strcmp(name, "WCSAXES")) return WK_INT;
    /* SIP (Shupe et al. 2005), which WCSLIB 7.12 reads as a prior distortion: A_ORDER, A_p_q, AP_p_q, B_DMAX
     * ... */
    const char *u = strchr(name, '_');
    if (u && (u - name == 1 || u - name == 2) && (name[0] == 'A' || name[0] == 'B') &&
        (u - name == 1 || name[1] == 'P')) {
        if (!strcmp(u, "_ORDER")) return WK_INT;
        if (!strcmp(u, "_DMAX")) return WK_NUM;
        if (is_digit(u[1]) && u[2] == '_' && is_digit(u[3]) && !u[4]) return WK_NUM;
    }
    for (int t = 0; t < 2; t++) {
        const char **set = t ? str1 : num1;
        size_t n = t ? 2 : 4;
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(set[i]);
            if (!strncmp(name, set[i], l) && name[l] >= '1' && name[l] <= '9' && !name[l + 1])
                return t ? WK_STR : WK_NUM;
        }
    }
    for (size_t i = 0; i < 3; i++) {
        const char *p = name + 2;
        if (strncmp(name, num2[i], 2) || *p < '1' || *p > '9' || p[1] != '_') continue;
        p += 2;
        int pv = i == 2;
        if (!(pv ? is_digit(p[0]) : p[0] >= '1' && p[0] <= '9')) continue;
        if (!p[1] || (pv && is_digit(p[1]) && p[0] != '0' && !p[2])) return WK_NUM;
    }
    return 0;
}

/* One 80-character card at o, blank padded. */
static MC_PRINTF(2, 3) void card_put(char *o, const char *fmt, ...)
{
    char buf[96];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memset(o, ' ', 80);
    memcpy(o, buf, (size_t)(m < 80 ? m : 80));
}

char *io_fits_wcs_cards(const char *hdr, int nkeys, int naxis, int *ncards, int *bad_card, char *why,
                        size_t len)
{
    char *out = mc_malloc(((size_t)nkeys + 2) * 80 + 1), *o = out;
    int n = 0;
    *bad_card = 0;
    card_put(o + 80 * n++, "NAXIS   = %d", naxis);
    for (int k = 0; k < nkeys; k++) {
        const char *c = hdr + (size_t)k * 80;
        char name[9];
        card_name(c, name);
        int type = c[8] == '=' ? wcs_key_type(name) : 0;
        if (!type) continue;
        int t0, t1, v = card_value(c, &t0, &t1);
        const char *bad = NULL;
        if (v == FV_NONASCII)
            bad = "bytes outside printable ASCII";
        else if (v == FV_BAD && t0 < 80 && c[t0] == '\'')
            bad = "a string value without its closing quote";
        else if (type == WK_STR && v != FV_STR)
            bad = "not a quoted string";
        else if (type == WK_INT && (v != FV_INT || t1 - t0 > 2))
            bad = "not an integer from 0 to 9";
        else if (type == WK_NUM && v != FV_INT && v != FV_REAL)
            bad = "not a number";
        double x = 0;
        if (!bad && type != WK_STR) {
            char num[81];
            memcpy(num, c + t0, (size_t)(t1 - t0));
            num[t1 - t0] = 0;
            for (char *p = num; *p; p++)
                if (*p == 'D' || *p == 'd') *p = 'E';
            x = strtod(num, NULL);
            if (!isfinite(x))
                bad = "not a finite number";
            else if (type == WK_INT && (x < 0 || x > 9))
                bad = "not an integer from 0 to 9";
        }
        if (bad) {
            *bad_card = k + 1;
            snprintf(why, len, "%s", bad);
            free(out);
            return NULL;
        }
        if (type == WK_STR) { /* the string as it stands, quotes included: printable, escaped, within 70 */
            card_put(o + 80 * n++, "%-8s= %.*s", name, t1 - t0, c + t0);
        } else if (type == WK_INT) {
            card_put(o + 80 * n++, "%-8s= %d", name, (int)x);
        } else { /* 17 digits give back the same double; a point or an exponent keeps it a real */
            char d[40];
            snprintf(d, sizeof d, "%.17G", x);
            if (!strpbrk(d, ".E")) strcat(d, ".0");
            card_put(o + 80 * n++, "%-8s= %s", name, d);
        }
    }
    card_put(o + 80 * n++, "END");
    o[80 * n] = 0;
    *ncards = n;
    return out;
}
