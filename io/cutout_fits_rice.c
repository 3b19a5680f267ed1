/* io/cutout_fits_rice.c: the tiles of a tile-compressed FITS image, checked before CFITSIO sees them and, for
 * the kind surveys write (RICE_1-coded, quantised float images: fpack's and astropy's default), decoded here.
 *
 * Why both: CFITSIO 4.2's fits_rdecomp scans a run of zero bytes without checking the end of its input, so a
 * damaged tile makes it read past its buffer and crash the whole job (found by fuzz/fuzz_fits.c; the input is
 * in fuzz/regress/fits/), and it allocates whatever a damaged ZTILEn or descriptor asks. So every tile is
 * walked first. The walk is the decoder minus its output, and CFITSIO then decodes the tiles a second time
 * and unquantises them a pixel at a time: 3.9 ms of a 256 px g,r,z cube, a fifth of EfficientNet-B0's time
 * per galaxy. For the common kind the walk writes the pixels and the tile is unquantised here, in the same
 * arithmetic as CFITSIO (checked bit for bit against it in tests/test_cutout_read.py); every other kind is
 * left to CFITSIO after the walk.
 *
 * The Rice code (White 1992; the FITS tiled-image convention, Pence et al. 2009): a first pixel of BYTEPIX
 * bytes, then per block of BLOCKSIZE pixels an FS code of 3/4/5 bits, FS - 1 = -1 for an all-zero block, the
 * top code for raw BYTEPIX*8-bit differences, otherwise per pixel a unary count and FS low bits; differences
 * are zigzag-mapped and summed. Quantised floats (ZQUANTIZ): value = (q - r + 0.5) * ZSCALE + ZZERO with r
 * the convention's dither sequence (Park and Miller's minimal standard generator, 10,000 values), 0 for
 * NO_DITHER; the ZBLANK value as NaN; SUBTRACTIVE_DITHER_2's zero code as 0. */
#include "io/cutout_internal.h"

#include <fitsio.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

/* Full-width vectors for the unquantising loops where the CPU has them (GCC's default on AVX-512 is 256 bits):
 * the same operations on twice the lanes. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("prefer-vector-width=512")
#endif

enum { N_RANDOM = 10000 };
#define RICE_ZERO_VALUE (-2147483646) /* SUBTRACTIVE_DITHER_2's code for an exact 0 */

/* The convention's dither sequence: seed_{k+1} = 16807 seed_k mod (2^31 - 1) from 1, in double, each value
 * seed / (2^31 - 1) stored as float (the 10,000th seed is 1043618065, checked). */
static float rand_value[N_RANDOM];
static pthread_once_t rand_once = PTHREAD_ONCE_INIT;

static void rand_init(void)
{
    const double a = 16807.0, m = 2147483647.0;
    double seed = 1;
    for (int i = 0; i < N_RANDOM; i++) {
        double t = a * seed;
        seed = t - m * (double)(int)(t / m);
        rand_value[i] = (float)(seed / m);
    }
    MC_ASSERT((int)seed == 1043618065);
}

/* The tile's bytes are followed by RICE_PAD zero bytes (io_fits_tiles_read), so the bit reader needs no
 * bounds of its own: 8 bytes read at any byte up to 8 past the end hold the code there and zeros past it.
 * The decoder checks the position against the end before it reads a block code or a pixel's code; the only
 * reads past such a check, a long code's low bits and the window read 57 bits ahead, start at most 64 bits
 * further on. */
enum { RICE_PAD = 16 };

/* the 64 bits from bit position bp, big-endian; the top 64 - (bp & 7) >= 57 are the code's, the rest zeros */
static inline uint64_t rice_peek(const unsigned char *buf, uint64_t bp)
{
    uint64_t w;
    memcpy(&w, buf + (bp >> 3), 8);
    return __builtin_bswap64(w) << (bp & 7);
}

/* the top fs bits (0 <= fs <= 32) of w */
static inline uint32_t rice_top(uint64_t w, int fs)
{
    return (uint32_t)((w >> 1) >> (63 - fs));
}

/* A block's codes are decoded in two passes of up to RICE_CHUNK codes. The first walks the bits and keeps, per
 * code, its unary count z and x, the 1 that ends it with the fs low bits after it (so d = ((z - 1) << fs) + x
 * mod 2^32): a chain of one LZCNT and one shift per code, the window word built from the bits it already held and
 * a word read ahead rather than a fresh read at the new bit position. The second forms the zigzag-mapped
 * differences and sums them onto the last pixel, on 16 lanes with AVX-512 (a prefix sum in four shifted adds).
 * Same arithmetic mod 2^32 as one pass, so the same pixels. */
enum { RICE_CHUNK = 64 };

#if defined(__AVX512F__)
static inline uint32_t rice_sum(const uint32_t *z, const uint32_t *x, int cnt, int fs, uint32_t last,
                                uint32_t mask, uint32_t *o)
{
    const __m512i one = _mm512_set1_epi32(1), vfs = _mm512_set1_epi32(fs), zero = _mm512_setzero_si512(),
                  vmask = _mm512_set1_epi32((int)mask), top = _mm512_set1_epi32(15);
    __m512i carry = _mm512_set1_epi32((int)last);
    for (int k = 0; k < cnt; k += 16) {
        const __mmask16 mk = cnt - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cnt - k)) - 1);
        const __m512i vz = _mm512_maskz_loadu_epi32(mk, z + k), vx = _mm512_maskz_loadu_epi32(mk, x + k);
        const __m512i d =
            _mm512_maskz_add_epi32(mk, _mm512_sllv_epi32(_mm512_sub_epi32(vz, one), vfs), vx); /* 0 past cnt */
        __m512i v = _mm512_xor_si512(_mm512_srli_epi32(d, 1), _mm512_srai_epi32(_mm512_slli_epi32(d, 31), 31));
        v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 15)); /* lane i += lane i - 1 */
        v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 14)); /* += i - 2 */
        v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 12)); /* += i - 4 */
        v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 8));  /* += i - 8 */
        v = _mm512_add_epi32(v, carry);
        _mm512_mask_storeu_epi32(o + k, mk, _mm512_and_si512(v, vmask));
        carry = _mm512_permutexvar_epi32(top, v); /* lanes past cnt added 0: lane 15 is the last pixel */
    }
    return (uint32_t)_mm_cvtsi128_si32(_mm512_castsi512_si128(carry)) & mask;
}
#else
static inline uint32_t rice_sum(const uint32_t *z, const uint32_t *x, int cnt, int fs, uint32_t last,
                                uint32_t mask, uint32_t *o)
{
    for (int k = 0; k < cnt; k++) {
        const uint32_t d = ((z[k] - 1u) << fs) + x[k];
        last = (last + ((d >> 1) ^ (0u - (d & 1)))) & mask;
        o[k] = last;
    }
    return last;
}
#endif

/* One RICE_1 tile of n pixels (bytepix 1, 2 or 4) from its len bytes (RICE_PAD zeros after them) into out: 1
 * when its code ends within its bytes, 0 when it runs past them, -1 for a block code above the raw one (out
 * then partly written). Past the end the code reads as zeros, so a damaged tile is caught by the bits it
 * used: before each code is read, and so after each block. A pixel's code is its unary count (z zeros and
 * a 1) and fs low bits. Up to six codes are taken from one 64-bit window while they fit the 57 bits it surely
 * holds (noise-level survey tiles: codes of about 5 bits); a code that does not fit (a long unary run) is read
 * run by run. */
__attribute__((always_inline)) static inline int
rice_decode(const unsigned char *buf, uint64_t len, int64_t n, int nblock, int bytepix, uint32_t *out)
{
    const int fsbits = bytepix == 1   ? 3
                       : bytepix == 2 ? 4
                                      : 5,
              fsmax = bytepix == 1   ? 6
                      : bytepix == 2 ? 14
                                     : 25;
    const int bbits = bytepix * 8;
    const uint32_t mask = bbits == 32 ? 0xffffffffu : (1u << bbits) - 1;
    const uint64_t end = len * 8;
    if ((uint64_t)bbits > end) return 0;
    uint64_t bp = (uint64_t)bbits;
    uint32_t last = rice_top(rice_peek(buf, 0), bbits);
    uint32_t zb[RICE_CHUNK], xb[RICE_CHUNK];
    for (int64_t i = 0; i < n; i += nblock) {
        const int64_t m = n - i < nblock ? n - i : nblock;
        uint32_t *o = out + i;
        if (bp > end) return 0;
        const int fs = (int)rice_top(rice_peek(buf, bp), fsbits) - 1;
        bp += (uint64_t)fsbits;
        if (fs > fsmax) return -1; /* no encoder writes these (CFITSIO decodes them into garbage) */
        if (fs < 0) {              /* all differences zero */
            for (int64_t k = 0; k < m; k++) o[k] = last;
            continue;
        }
        if (fs == fsmax) { /* raw differences */
            for (int64_t k = 0; k < m; k++) {
                if (bp > end) return 0;
                const uint32_t d = rice_top(rice_peek(buf, bp), bbits);
                bp += (uint64_t)bbits;
                last = (last + ((d & 1) ? ~(d >> 1) : d >> 1)) & mask;
                o[k] = last;
            }
            continue;
        }
        /* a code of z zeros, a 1 and fs low bits: shifted up by z, its top fs + 1 bits are x, and the next
         * code is fs + 1 bits further */
        const int fs1 = fs + 1, sh = 63 - fs;
        for (int64_t c0 = 0; c0 < m; c0 += RICE_CHUNK) {
            const int cnt = m - c0 < RICE_CHUNK ? (int)(m - c0) : RICE_CHUNK;
            int k = 0;
            uint64_t w = rice_peek(buf, bp); /* 57 or more of its top bits are the code's from bp */
            while (cnt - k >= 6) {
                if (bp > end) return 0;
                /* six codes with no check between them, taken only if together they fit the 57 bits (then
                 * each was read from bits the window holds); otherwise decoded again below, code by code. A
                 * window of zeros (no code end) shifts by 0 and fails the fit. The bits from bp + 57 are read
                 * now (within the pad: bp <= end), off the chain of shifts. */
                const uint64_t ahead = rice_peek(buf, bp + 57);
                uint64_t ww = w;
                int used = 0;
#pragma GCC unroll 6
                for (int j = 0; j < 6; j++) {
                    const int zz = ww ? __builtin_clzll(ww) : 64; /* one LZCNT */
                    const uint64_t wf = ww << fs1;                 /* (beside the LZCNT, not after it) */
                    zb[k + j] = (uint32_t)zz;
                    xb[k + j] = (uint32_t)((ww << (zz & 63)) >> sh);
                    used += zz + fs1;
                    ww = wf << (zz & 63);
                }
                if (used > 57) break;
                k += 6;
                bp += (uint64_t)used;
                /* the window from the new bp: what is left of this one (57 - used bits or more), then the bits
                 * read ahead, which agree with it where both hold the code */
                w = ww | (ahead >> (57 - used));
            }
            while (k < cnt) {
                if (bp > end) return 0;
                w = rice_peek(buf, bp);
                int z, used = 0;
#pragma GCC unroll 6
                for (int j = 0; j < 6 && k < cnt; j++) { /* up to six codes from the 57 bits held */
                    z = w ? __builtin_clzll(w) : 64;
                    if (used + z + fs1 > 57) break;
                    const uint64_t ws = w << z;
                    zb[k] = (uint32_t)z;
                    xb[k++] = (uint32_t)(ws >> sh);
                    used += z + fs1;
                    w = ws << fs1;
                }
                bp += (uint64_t)used;
                if (used) continue;
                /* a long code: the unary part read by runs of the bits each read holds */
                uint64_t nz = 0;
                for (;;) {
                    const int have = 64 - (int)(bp & 7);
                    z = w ? __builtin_clzll(w) : 64;
                    if (z < have) break;
                    nz += (uint64_t)have;
                    bp += (uint64_t)have;
                    if (bp > end) return 0;
                    w = rice_peek(buf, bp);
                }
                nz += (uint64_t)z;
                bp += (uint64_t)z + 1;
                const uint32_t low = rice_top(rice_peek(buf, bp), fs); /* bp <= end + 64: within the pad */
                bp += (uint64_t)fs;
                zb[k] = (uint32_t)nz; /* d = (nz << fs) | low, mod 2^32 */
                xb[k++] = (1u << fs) | low;
            }
            last = rice_sum(zb, xb, cnt, fs, last, mask, o + c0);
        }
    }
    return bp <= end;
}

/* rice_decode with the pixel width a constant, each on its own (inlined into its caller it ran out of
 * registers) */
__attribute__((noinline, optimize("no-tree-slp-vectorize"))) static int rice_decode4(const unsigned char *buf, uint64_t len, int64_t n,
                                                  int nblock, uint32_t *out)
{
    return rice_decode(buf, len, n, nblock, 4, out);
}

__attribute__((noinline)) static int rice_decode12(const unsigned char *buf, uint64_t len, int64_t n,
                                                   int nblock, int bytepix, uint32_t *out)
{
    return bytepix == 1 ? rice_decode(buf, len, n, nblock, 1, out) : rice_decode(buf, len, n, nblock, 2, out);
}

static int rice_tile_decode(const unsigned char *buf, uint64_t len, int64_t n, int nblock, int bytepix,
                            uint32_t *out)
{
    return bytepix == 4 ? rice_decode4(buf, len, n, nblock, out)
                        : rice_decode12(buf, len, n, nblock, bytepix, out);
}

/* The HDU's own decoding, when it is of the kind decoded here. */
typedef struct {
    int on; /* decode here (else CFITSIO does, after the walk) */
    int zscale_col, zzero_col;
    double zscale, zzero; /* keywords, when there is no column */
    int dither;           /* 0 NO_DITHER, 1 SUBTRACTIVE_DITHER_1, 2 SUBTRACTIVE_DITHER_2 */
    int dither0;          /* ZDITHER0 */
    int has_blank;
    int32_t blank; /* ZBLANK */
} quant;

/* Decides whether the tiles are decoded here: RICE_1, BYTEPIX 4, float images quantised with one of the three
 * methods, ZSCALE and ZZERO as columns or keywords, no ZBLANK column, BSCALE/BZERO (if any) 1 and 0 (the
 * caller's plain_values). Anything else goes to
 * CFITSIO, as does an HDU with a tile stored otherwise (empty COMPRESSED_DATA: GZIP_COMPRESSED_DATA or
 * UNCOMPRESSED_DATA, which CFITSIO writes for tiles it could not quantise). */
static void quant_setup(fitsfile *f, int rice, int bytepix, int plain_values, quant *q)
{
    memset(q, 0, sizeof *q);
    int st = 0, zbitpix = 0, col = 0;
    char v[FLEN_VALUE];
    if (!rice || bytepix != 4 || !plain_values) return;
    if (fits_read_key(f, TINT, "ZBITPIX", &zbitpix, NULL, &st) ||
        (zbitpix != FLOAT_IMG && zbitpix != DOUBLE_IMG))
        return;
    if (!fits_get_colnum(f, CASEINSEN, "ZBLANK", &col, &st)) return; /* a null value per tile */
    st = 0;
    if (fits_read_key(f, TSTRING, "ZQUANTIZ", v, NULL, &st)) {
        q->dither = 0; /* absent: the values are only scaled */
    } else if (!strcasecmp(v, "NO_DITHER")) {
        q->dither = 0;
    } else if (!strcasecmp(v, "SUBTRACTIVE_DITHER_1")) {
        q->dither = 1;
    } else if (!strcasecmp(v, "SUBTRACTIVE_DITHER_2")) {
        q->dither = 2;
    } else {
        return;
    }
    if (q->dither) {
        st = 0;
        if (fits_read_key(f, TINT, "ZDITHER0", &q->dither0, NULL, &st) || q->dither0 < 1 ||
            q->dither0 > N_RANDOM)
            return;
    }
    st = 0;
    if (fits_get_colnum(f, CASEINSEN, "ZSCALE", &q->zscale_col, &st)) {
        q->zscale_col = 0;
        st = 0;
        if (fits_read_key(f, TDOUBLE, "ZSCALE", &q->zscale, NULL, &st)) return;
    }
    st = 0;
    if (fits_get_colnum(f, CASEINSEN, "ZZERO", &q->zzero_col, &st)) {
        q->zzero_col = 0;
        st = 0;
        if (fits_read_key(f, TDOUBLE, "ZZERO", &q->zzero, NULL, &st)) return;
    }
    long blank = 0;
    st = 0;
    if (!fits_read_key(f, TLONG, "ZBLANK", &blank, NULL, &st)) {
        if (blank < INT32_MIN || blank > INT32_MAX) return;
        q->has_blank = 1;
        q->blank = (int32_t)blank;
    }
    pthread_once(&rand_once, rand_init);
    q->on = 1;
}

/* Tile `row` (1-based): n int32 codes in, float32 values out, as CFITSIO's
 * unquantising does it (double arithmetic with the product rounded before the sum: no FMA, which gave -3e-15
 * for CFITSIO's 0; one rounding to float). The dither index runs through the sequence
 * from a start set by the tile number and ZDITHER0; each run up to the sequence's end is one vectorisable
 * loop. */
__attribute__((optimize("fp-contract=off"))) static void
unquantise(const quant *q, int64_t row, double scale, double zero, const int32_t *in, float *out, int64_t n)
{
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
    const float nanv = NAN;
    if (!q->dither) {
        for (int64_t i = 0; i < n; i++) {
            float y = (float)((double)in[i] * scale + zero);
            out[i] = q->has_blank && in[i] == q->blank ? nanv : y;
        }
        return;
    }
    int iseed = (int)((row + q->dither0 - 2) % N_RANDOM);
    int next = (int)(rand_value[iseed] * 500);
    int64_t i = 0;
    while (i < n) {
        int64_t run = N_RANDOM - next < n - i ? N_RANDOM - next : n - i;
        const float *r = rand_value + next;
        for (int64_t k = 0; k < run; k++) {
            const int32_t c = in[i + k];
            float y = (float)(((double)c - r[k] + 0.5) * scale + zero);
            y = q->dither == 2 && c == RICE_ZERO_VALUE ? 0.0f : y;
            out[i + k] = q->has_blank && c == q->blank ? nanv : y;
        }
        i += run;
        next += (int)run;
        if (next == N_RANDOM) {
            iseed = iseed + 1 == N_RANDOM ? 0 : iseed + 1;
            next = (int)(rand_value[iseed] * 500);
        }
    }
}

/* The offset in the image (FITS order, naxes) of pixel p of a tile (p[i] from its first pixel t0) */
static int64_t image_offset(int naxis, const LONGLONG *naxes, const int64_t *t0, const int64_t *p)
{
    int64_t off = 0, stride = 1;
    for (int i = 0; i < naxis; i++) {
        off += (t0[i] + p[i]) * stride;
        stride *= (int64_t)naxes[i];
    }
    return off;
}

int io_fits_tiles_read(fitsfile *f, int naxis, const LONGLONG *naxes, int plain_values, io_cutout *c, float *pix,
                       int *decoded, char *why, size_t len)
{
    int st = 0;
    *decoded = 0;
    long tile[FITS_MAXDIM]; /* ZTILEn (fits_get_tile_dim is the writing side's); absent: row by row */
    if (naxis < 1 || naxis > FITS_MAXDIM) return 0;
    int64_t tile_pix = 1;
    for (int i = 0; i < naxis; i++) {
        char key[16];
        int s = 0;
        snprintf(key, sizeof key, "ZTILE%d", i + 1);
        if (fits_read_key(f, TLONG, key, &tile[i], NULL, &s)) tile[i] = i == 0 ? (long)naxes[0] : 1;
        if (tile[i] < 1) return 0; /* left for CFITSIO to refuse */
        tile_pix = tile_pix > IO_MAX_PIXELS ? tile_pix : tile_pix * tile[i];
    }
    /* CFITSIO allocates a whole tile per read, from ZTILEn alone: a damaged ZTILE asks for gigabytes */
    if (tile_pix > IO_MAX_PIXELS) {
        snprintf(why, len, "tiles of %lld pixels (ZTILEn), more than the %lld a cutout may have",
                 (long long)tile_pix, (long long)IO_MAX_PIXELS);
        return 1;
    }
    char ctype[FLEN_VALUE] = "";
    /* (fits_get_compression_type, too, is the type CFITSIO would write, not the HDU's) */
    if (fits_read_key(f, TSTRING, "ZCMPTYPE", ctype, NULL, &st)) return 0;
    const int rice = !strcasecmp(ctype, "RICE_1") || !strcasecmp(ctype, "RICE_ONE");
    /* CFITSIO takes ZVAL1 as the block size and ZVAL2 as the bytes per pixel (io_fits_headers_check has made
     * sure ZNAME1 and ZNAME2, if given, say so, and that neither is given twice) */
    int nblock = 32, bytepix = 4;
    {
        long v = 0;
        int s = 0;
        if (!fits_read_key(f, TLONG, "ZVAL1", &v, NULL, &s)) nblock = v > 0 && v < (1 << 20) ? (int)v : 0;
        s = 0;
        if (!fits_read_key(f, TLONG, "ZVAL2", &v, NULL, &s)) bytepix = v > 0 && v <= 8 ? (int)v : 0;
    }
    if (rice && (nblock < 1 || (bytepix != 1 && bytepix != 2 && bytepix != 4 && bytepix != 8))) {
        snprintf(why, len, "RICE_1 with BLOCKSIZE %d and BYTEPIX %d", nblock, bytepix);
        return 1;
    }
    if (bytepix == 8) bytepix = 4; /* CFITSIO codes 8-byte integers as 4-byte ones */
    int col = 0;
    LONGLONG rows = 0;
    LONGLONG pcount = 0;
    if (fits_get_colnum(f, CASEINSEN, "COMPRESSED_DATA", &col, &st) || fits_get_num_rowsll(f, &rows, &st) ||
        fits_read_key(f, TLONGLONG, "PCOUNT", &pcount, NULL, &st))
        return 0;
    LONGLONG ntile[FITS_MAXDIM], tiles = 1;
    for (int i = 0; i < naxis; i++) {
        ntile[i] = (naxes[i] + tile[i] - 1) / tile[i];
        tiles *= ntile[i];
    }
    quant q;
    quant_setup(f, rice, bytepix, plain_values, &q);
    if (tiles != rows) q.on = 0; /* decoded here only when the rows are the tiles, each once */
    uint32_t *val = rice ? io_cutout_scratch(c, 1, (size_t)tile_pix * sizeof *val) : NULL;
    float *tv = q.on ? io_cutout_scratch(c, 2, (size_t)tile_pix * sizeof *tv)
                     : NULL; /* a tile's values, when not one run */
    int bad = 0;
    for (LONGLONG r = 1; r <= rows && !bad; r++) {
        LONGLONG repeat = 0, offset = 0;
        if (fits_read_descriptll(f, col, r, &repeat, &offset, &st)) {
            snprintf(why, len, "tile %lld of %lld: unreadable descriptor", (long long)r, (long long)rows);
            bad = 1;
            break;
        }
        if (repeat == 0) { /* stored otherwise (GZIP_COMPRESSED_DATA, UNCOMPRESSED_DATA) */
            q.on = 0;
            continue;
        }
        if (repeat < 0 || offset < 0 ||
            repeat + offset > pcount) { /* CFITSIO would allocate `repeat` bytes */
            snprintf(why, len, "tile %lld of %lld claims %lld bytes at offset %lld of a %lld-byte heap",
                     (long long)r, (long long)rows, (long long)repeat, (long long)offset, (long long)pcount);
            bad = 1;
            break;
        }
        unsigned char *buf = io_cutout_scratch(c, 0, (size_t)repeat + RICE_PAD); /* grows only */
        memset(buf + repeat, 0, RICE_PAD); /* the decoder reads up to RICE_PAD bytes past the tile */
        int anynul = 0;
        if (fits_read_col(f, TBYTE, col, r, 1, repeat, NULL, buf, &anynul, &st)) {
            /* (CFITSIO 4.2 goes on to decode what it could not read, and crashes: found by fuzz_fits) */
            snprintf(why, len, "tile %lld of %lld: its %lld bytes cannot be read (file truncated?)",
                     (long long)r, (long long)rows, (long long)repeat);
            bad = 1;
            break;
        }
        if (!rice) continue;
        /* this tile's place and extent: edge tiles are cut to the image */
        int64_t n = 1, t0[FITS_MAXDIM], ext[FITS_MAXDIM];
        LONGLONG idx = r - 1;
        for (int i = 0; i < naxis; i++) {
            LONGLONG t = idx % ntile[i];
            idx /= ntile[i];
            t0[i] = (int64_t)(t * tile[i]);
            LONGLONG e = naxes[i] - t * tile[i];
            ext[i] = e < tile[i] ? e : tile[i];
            n *= ext[i];
        }
        const int dec = rice_tile_decode(buf, (uint64_t)repeat, n, nblock, bytepix, val);
        if (dec != 1) {
            if (dec == 0)
                snprintf(why, len, "RICE_1 tile %lld of %lld: its code runs past its %lld bytes",
                         (long long)r, (long long)rows, (long long)repeat);
            else
                snprintf(why, len,
                         "RICE_1 tile %lld of %lld: a block code above the largest for %d-byte pixels",
                         (long long)r, (long long)rows, bytepix);
            bad = 1;
            break;
        }
        if (!q.on) continue;
        double scale = q.zscale, zero = q.zzero;
        if ((q.zscale_col && fits_read_col(f, TDOUBLE, q.zscale_col, r, 1, 1, NULL, &scale, &anynul, &st)) ||
            (q.zzero_col && fits_read_col(f, TDOUBLE, q.zzero_col, r, 1, 1, NULL, &zero, &anynul, &st))) {
            st = 0;
            q.on = 0; /* CFITSIO reports it */
            continue;
        }
        /* a tile is one run of the image when, past its first axis not taken whole, it is one pixel deep */
        int whole = 1, contiguous = 1;
        for (int i = 0; i < naxis; i++) {
            if (!whole && ext[i] > 1) contiguous = 0;
            if (ext[i] < naxes[i]) whole = 0;
        }
        int64_t cnt[FITS_MAXDIM] = {0};
        if (contiguous) {
            unquantise(&q, r, scale, zero, (const int32_t *)val, pix + image_offset(naxis, naxes, t0, cnt),
                       n);
            continue;
        }
        unquantise(&q, r, scale, zero, (const int32_t *)val, tv, n);
        /* into the image: runs of ext[0] pixels along the first axis */
        for (int64_t k = 0; k < n; k += ext[0]) {
            memcpy(pix + image_offset(naxis, naxes, t0, cnt), tv + k, (size_t)ext[0] * sizeof *pix);
            for (int i = 1; i < naxis; i++) {
                if (++cnt[i] < ext[i]) break;
                cnt[i] = 0;
            }
        }
    }
    if (!bad && q.on) *decoded = 1;
    return bad;
}
