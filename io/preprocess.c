/* io/preprocess.c: the recipes of io/preprocess.h, exactly as docs/preprocessing.md states them (that
 * document is the contract; tools/preprocess_ref.py is its independent numpy reading). Per galaxy it only
 * uses pp_work's memory. It does not decode files (io/cutout.c) or batch galaxies (pipeline/). */
#include "io/preprocess.h"

#include <float.h>
#include <math.h>
#include <strings.h>

/* Full-width vectors where the CPU has them: GCC's default of 256 bits on AVX-512 left the colour stage (three
 * asinh and a sine per pixel) at 1.4 ms of a 256 px cube's 2 ms; 512 bits take it to 0.9. No effect on AVX2. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("prefer-vector-width=512")
#endif

/* ------------------------------------------------------------------------------------ recipe specs */

/* A per-galaxy refusal: message into err, the row status returned. */
static MC_PRINTF(3, 4) int pp_fail(char *err, int status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, MC_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return status;
}

static const char *kind_name(pp_kind k)
{
    switch (k) {
    case PP_GZ_DECALS:
        return "gz_decals";
    case PP_IMAGE:
        return "image";
    case PP_ASINH:
        return "asinh";
    default:
        return "auto";
    }
}

static void recipe_defaults(pp_recipe *r, pp_kind kind)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->zoom = 1.2; /* galaxy-datasets minimal_view_config: RandomAffine scale=(1.2, 1.2) */
    r->flip =
        0; /* io/preprocess.h default; the GZ DECaLS orientation is unsettled (docs/preprocessing.md 4.1) */
    r->quantize = 1;
    r->asinh_q = 1.0; /* galaxy-datasets fits_to_jpg_like_scaling(arcsinh_q=1.0, 0, 99.7) */
    r->pmin = 0.0;
    r->pmax = 99.7;
    r->max_blank = 0.2; /* GZ DECaLS quality flag: badmax_limit=0.2 (zooniverse/decals) */
    if (kind == PP_GZ_DECALS) {
        r->nbands = 3;
        strcpy(r->bands[0], "g");
        strcpy(r->bands[1], "r");
        strcpy(r->bands[2], "z");
    }
}

static int parse_number(const char *v, double lo, double hi, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !isfinite(d) || d < lo || d > hi) return -1;
    *out = d;
    return 0;
}

int pp_recipe_parse(const char *spec, pp_recipe *r, char *err)
{
    if (!spec) spec = "";
    char buf[512];
    if (strlen(spec) >= sizeof buf) return mc_fail(err, "recipe '%.40s...': too long", spec);
    strcpy(buf, spec);
    char *opts = strchr(buf, ':');
    if (opts) *opts++ = 0;
    pp_kind kind;
    if (!buf[0] || !strcmp(buf, "auto"))
        kind = PP_AUTO;
    else if (!strcmp(buf, "gz_decals"))
        kind = PP_GZ_DECALS;
    else if (!strcmp(buf, "image"))
        kind = PP_IMAGE;
    else if (!strcmp(buf, "asinh"))
        kind = PP_ASINH;
    else
        return mc_fail(err, "recipe '%s': unknown name '%s' (known: gz_decals, image, asinh, auto)", spec,
                       buf);
    recipe_defaults(r, kind);
    for (char *kv = opts; kv && *kv;) {
        char *next = strchr(kv, ',');
        if (next) *next++ = 0;
        char *eq = strchr(kv, '=');
        if (!eq || eq == kv) return mc_fail(err, "recipe '%s': expected key=value, got '%s'", spec, kv);
        *eq = 0;
        const char *key = kv, *val = eq + 1;
        double d = 0;
        int asinh_only = 0;
        if (!strcmp(key, "bands")) {
            int n = 0;
            for (const char *p = val;; n++) {
                const char *q = strchr(p, ';');
                size_t len = q ? (size_t)(q - p) : strlen(p);
                if (len == 0 || len >= sizeof r->bands[0])
                    return mc_fail(
                        err, "recipe '%s': bad band list '%s' (names of 1..15 characters separated by ';')",
                        spec, val);
                if (n >= 3) return mc_fail(err, "recipe '%s': bands takes 1 or 3 names, got more", spec);
                memcpy(r->bands[n], p, len);
                r->bands[n][len] = 0;
                if (!q) {
                    n++;
                    break;
                }
                p = q + 1;
            }
            if (n != 1 && n != 3)
                return mc_fail(err, "recipe '%s': bands takes 1 name (grey) or 3 (R;G;B), got %d", spec, n);
            if (kind == PP_GZ_DECALS && n != 3)
                return mc_fail(err, "recipe '%s': gz_decals takes exactly 3 bands (its g;r;z)", spec);
            r->nbands = n;
        } else if (!strcmp(key, "zoom")) {
            if (parse_number(val, 1.0, 10.0, &r->zoom))
                return mc_fail(err, "recipe '%s': zoom must be a number in [1, 10], got '%s'", spec, val);
        } else if (!strcmp(key, "flip") || !strcmp(key, "quantize")) {
            if (strcmp(val, "0") && strcmp(val, "1"))
                return mc_fail(err, "recipe '%s': %s must be 0 or 1, got '%s'", spec, key, val);
            *(key[0] == 'f' ? &r->flip : &r->quantize) = val[0] - '0';
            if (key[0] == 'q' && kind == PP_ASINH)
                return mc_fail(err,
                               "recipe '%s': quantize does not apply to asinh (its outputs were never 8-bit)",
                               spec);
        } else if (!strcmp(key, "max_blank")) {
            if (parse_number(val, 0.0, 1.0, &r->max_blank))
                return mc_fail(err, "recipe '%s': max_blank must be in [0, 1], got '%s'", spec, val);
        } else if (!strcmp(key, "q")) {
            asinh_only = 1;
            if (parse_number(val, 1e-6, 1e6, &r->asinh_q))
                return mc_fail(err, "recipe '%s': q must be a positive number, got '%s'", spec, val);
        } else if (!strcmp(key, "pmin") || !strcmp(key, "pmax")) {
            asinh_only = 1;
            if (parse_number(val, 0.0, 100.0, &d))
                return mc_fail(err, "recipe '%s': %s must be a percentage in [0, 100], got '%s'", spec, key,
                               val);
            *(key[1] == 'm' && key[2] == 'i' ? &r->pmin : &r->pmax) = d;
        } else {
            return mc_fail(err,
                           "recipe '%s': unknown key '%s' (known: bands, zoom, flip, quantize, max_blank; "
                           "asinh also q, pmin, pmax)",
                           spec, key);
        }
        if (asinh_only && kind != PP_ASINH && kind != PP_AUTO)
            return mc_fail(err, "recipe '%s': key '%s' applies only to asinh", spec, key);
        kv = next;
    }
    if (r->pmin >= r->pmax)
        return mc_fail(err, "recipe '%s': pmin (%g) must be below pmax (%g)", spec, r->pmin, r->pmax);
    return 0;
}

void pp_recipe_describe(const pp_recipe *r, char *buf, size_t len)
{
    size_t u = 0;
#define PUT(...) u += (size_t)snprintf(buf + (u < len ? u : len), u < len ? len - u : 0, __VA_ARGS__)
    PUT("%s:", kind_name(r->kind));
    if (r->nbands > 0) {
        PUT("bands=");
        for (int i = 0; i < r->nbands; i++) PUT("%s%s", i ? ";" : "", r->bands[i]);
        PUT(",");
    }
    PUT("zoom=%.15g,flip=%d", r->zoom, r->flip);
    if (r->kind != PP_ASINH) PUT(",quantize=%d", r->quantize);
    if (r->kind == PP_ASINH || r->kind == PP_AUTO)
        PUT(",q=%.15g,pmin=%.15g,pmax=%.15g", r->asinh_q, r->pmin, r->pmax);
    PUT(",max_blank=%.15g", r->max_blank);
#undef PUT
}

/* Plane of c called name: a band name from the header (case-insensitive), else a plane number. */
static int find_band(const io_cutout *c, const char *name)
{
    for (int i = 0; i < c->nband; i++)
        if (c->band[i][0] && !strcasecmp(c->band[i], name)) return i;
    char *end;
    long k = strtol(name, &end, 10);
    if (end != name && !*end && k >= 0 && k < c->nband) return (int)k;
    return -1;
}

pp_kind pp_recipe_resolve(const pp_recipe *r, const io_cutout *c)
{
    /* PNG and JPEG cutouts are already rendered 8-bit pictures: a flux recipe means nothing for them, so
     * a survey's recipe (say gz_decals) applies to its FITS cutouts and its pictures take the image view */
    if (c->kind != IO_KIND_FITS) return PP_IMAGE;
    if (r->kind != PP_AUTO) return r->kind;
    for (int i = 0; i < c->nband; i++)
        if (!c->band[i][0]) return PP_ASINH;
    if (find_band(c, "g") >= 0 && find_band(c, "r") >= 0 && find_band(c, "z") >= 0) return PP_GZ_DECALS;
    return PP_ASINH;
}

void pp_work_free(pp_work *w)
{
    if (!w) return;
    free(w->buf);
    w->buf = NULL;
    w->cap = 0;
}

/* ------------------------------------------------------------------------------- float32 functions */

/* asinh and sin in float32, written so the compiler vectorises the recipe loops (libm's scalar calls
 * would cost more than the rest of the recipe). Both are within 3 float32 ulps of the true value
 * (checked against double in tests/unit/test_preprocess.c). */

/* asinh |x| = 2 atanh(s): for t = |x| < 3/4 with s = t / (1 + sqrt(1 + t^2)) (asinh t = log(t + w),
 * w = sqrt(1 + t^2), and (t + w - 1) / (t + w + 1) reduces to t / (1 + w) since (w - 1)(w + 1) = t^2), which
 * keeps s's relative precision for small t and stays below 1/3; above, log(t + w) from t + w = m 2^e with m in
 * [sqrt(1/2), sqrt(2)), log m = 2 atanh(s) for s = (m - 1) / (m + 1), |s| <= 0.1716, and e ln 2 in two parts
 * (the first exact in float). One division serves both (its operands selected lane by lane), and one odd series
 * to s^17 (relative truncation below 2e-10 at s = 1/3): the former form took three divisions, which bounded the
 * gz_decals bands on the divider. Above 1e18, asinh t = log(2t) to float precision (and t^2 would overflow).
 * Selects are arithmetic blends (by exact 0 and 1 factors): with GCC's default trapping-math a conditional
 * around a division blocks vectorising. */
static inline float pp_asinhf(float x)
{
    float t = fabsf(x);
    t = t < 3.0e38f ? t : 3.0e38f;
    float huge = t > 1.0e18f ? 1.0f : 0.0f;
    float tl = t < 1.0e18f ? t : 1.0e18f;
    float w = sqrtf(1.0f + tl * tl);
    float arg = huge * t + (1.0f - huge) * (tl + w);
    uint32_t u;
    memcpy(&u, &arg, 4);
    int32_t e = (int32_t)(u >> 23) - 127;
    u = (u & 0x007fffffu) | 0x3f800000u;
    float m;
    memcpy(&m, &u, 4);
    float bigm = m > 1.41421356f ? 1.0f : 0.0f;
    m = m * (1.0f - 0.5f * bigm);
    float sel = tl < 0.75f ? 1.0f : 0.0f;
    float s = (sel * tl + (1.0f - sel) * (m - 1.0f)) / (sel * (1.0f + w) + (1.0f - sel) * (m + 1.0f)), s2 = s * s;
    float ser =
        s2 * (1.0f / 3 +
              s2 * (1.0f / 5 +
                    s2 * (1.0f / 7 +
                          s2 * (1.0f / 9 +
                                s2 * (1.0f / 11 + s2 * (1.0f / 13 + s2 * (1.0f / 15 + s2 * (1.0f / 17))))))));
    float at = 2.0f * s + 2.0f * s * ser;
    float fe = (1.0f - sel) * ((float)e + bigm);
    float r = at + fe * 0.693145751953125f + fe * 1.428606765330187e-06f + huge * 0.69314718f;
    return x < 0.0f ? -r : r;
}

/* sin(y) for y in [0, pi/2]: y + y^3 P(y^2), the Taylor series to y^15 (truncation below 1e-10); adding the
 * small correction last keeps the rounding to about one ulp. */
static inline float pp_sin_quadrant(float y)
{
    float y2 = y * y;
    float p =
        y2 * (-1.0f / 6 +
              y2 * (1.0f / 120 + y2 * (-1.0f / 5040 + y2 * (1.0f / 362880 +
                                                            y2 * (-1.0f / 39916800 +
                                                                  y2 * (1.0f / 6227020800.0f +
                                                                        y2 * (-1.0f / 1307674368000.0f)))))));
    return y + y * p;
}

float pp_test_asinhf(float x);
float pp_test_sinf(float y);
/* For tests/unit/test_preprocess.c only. */
float pp_test_asinhf(float x)
{
    return pp_asinhf(x);
}
float pp_test_sinf(float y)
{
    return pp_sin_quadrant(y);
}

/* ------------------------------------------------------------------------------- the view geometry */

/* One axis of the view: output i takes taps cnt[i] input pixels from lo[i] with weights wt[i*ks ..]. */
typedef struct {
    int ks;
    int *lo, *cnt;
    float *wt;
    int rlo, rhi; /* input pixels [rlo, rhi) that any output touches */
} pp_axis;

/* Triangle (bilinear) filter from input [box0, box0 + side) to size outputs, as docs/preprocessing.md 3:
 * output i is centred at box0 + (i + 0.5) side/size; input pixel j (centre j + 0.5) weighs
 * max(0, 1 - |j + 0.5 - centre| / fs) with fs = max(side/size, 1); weights outside [0, in_len) are dropped
 * and the rest normalised to sum 1 (PIL's BILINEAR resize with a box does the same). flip reverses the
 * outputs. */
static void axis_build(pp_axis *a, int in_len, double box0, double side, int size, int flip)
{
    double scale = side / size, fs = fmax(scale, 1.0);
    a->rlo = in_len;
    a->rhi = 0;
    for (int i = 0; i < size; i++) {
        int o = flip ? size - 1 - i : i;
        double centre = box0 + (o + 0.5) * scale;
        int j0 = (int)floor(centre - fs - 0.5), j1 = (int)ceil(centre + fs - 0.5);
        if (j0 < 0) j0 = 0;
        if (j1 > in_len - 1) j1 = in_len - 1;
        double w[64], sum = 0;
        int first = -1, n = 0;
        for (int j = j0; j <= j1; j++) {
            double v = 1.0 - fabs(j + 0.5 - centre) / fs;
            if (v <= 0) {
                if (first >= 0) break;
                continue;
            }
            if (first < 0) first = j;
            MC_ASSERT(n < a->ks && n < 64);
            w[n++] = v;
            sum += v;
        }
        MC_ASSERT(n > 0 && sum > 0);
        a->lo[i] = first;
        a->cnt[i] = n;
        for (int k = 0; k < n; k++) a->wt[(size_t)i * a->ks + k] = (float)(w[k] / sum);
        if (first < a->rlo) a->rlo = first;
        if (first + n > a->rhi) a->rhi = first + n;
    }
}

/* ------------------------------------------------------------------------------- colour stages */

/* y / c for a constant c, bit for bit, without the division: q = y (1/c), then one correction from the exact
 * remainder fma(-q, c, y) (Markstein). Checked against y / c on every float y with |y| >= 2^-100 for each c
 * used below (tools/check_divisions.c); smaller y, where a subnormal quotient can round otherwise, do not
 * reach it (see gz_decals_band). Where q overflows, the quotient does too and q is kept; y = -0 gives +0. */
static inline float pp_div_const(float y, float c, float r)
{
    float q = y * r, q2 = __builtin_fmaf(__builtin_fmaf(-q, c, y), r, q);
    return isfinite(q) ? q2 : q;
}

/* k / 255 for the 8-bit levels k = 0 .. 255, bit for bit (pp_div_const; all 256 checked in
 * tests/unit/test_preprocess.c): a division per value was a tenth of the recipe. */
static inline float pp_level(float k)
{
    return pp_div_const(k, 255.0f, 1.0f / 255.0f);
}

float pp_test_level(float k);
/* For tests/unit/test_preprocess.c only. */
float pp_test_level(float k)
{
    return pp_level(k);
}

/* gz_decals colour mapping (zooniverse/decals dr2_style_rgb with the downloader's arguments, zoobot.md 2.4),
 * in float32 and in the reference's order of operations; contraction into FMAs is off so each step rounds
 * as numpy's float32 arrays do. In two passes over a run of pixels: first each band's scaled arcsinh (one loop
 * a band), then the desaturation. One loop doing everything per pixel was a chain of some fifteen divisions and
 * square roots too long for the core to overlap the next pixels' (about 40 cycles a pixel); the short loops
 * overlap. The same operations on the same values in the same order: the output is unchanged. */
enum { GZ_RUN = 256 };

/* c = (asinh(f / scale) - mn) / span for one band, n <= GZ_RUN */
__attribute__((optimize("fp-contract=off"))) static void gz_decals_band(const float *restrict f, float scale,
                                                                        float *restrict c, int n)
{
    const float mn = (float)asinh(-0.5);
    const float span = (float)(asinh(300.0) - asinh(-0.5));
    const float rs = 1.0f / scale, rspan = 1.0f / span;
    for (int x = 0; x < n; x++) {
        /* blanks (NaN, Inf) are 0 nanomaggies. Fluxes below 2^-60 become 0 too, which changes nothing: their
         * arcsinh is below ulp(mn) / 2^25, so asinh - mn is -mn for them as for 0; it keeps the divisions
         * by constants away from subnormal quotients. Every quotient by a constant here and below is y / c
         * exactly (pp_div_const); the other operands are 0 or above 2^-60 in size (differences of values
         * >= 2^-28). */
        float v = f[x];
        v = isfinite(v) && fabsf(v) >= 0x1p-60f ? v : 0.0f;
        c[x] = pp_div_const(pp_asinhf(pp_div_const(v, scale, rs)) - mn, span, rspan);
    }
}

/* desaturation of one run of c0, c1, c2 (R, G, B before it) into R, G, B in [0, 1] (before the 8-bit step) */
__attribute__((optimize("fp-contract=off"))) static void
gz_decals_desaturate(const float *restrict c0s, const float *restrict c1s, const float *restrict c2s,
                     float *restrict Rr, float *restrict Gr, float *restrict Br, int n)
{
    const float pi = (float)M_PI;
    const float r3 = 1.0f / 3.0f, r25 = 1.0f / 2.5f;
    for (int x = 0; x < n; x++) {
        const float c0 = c0s[x], c1 = c1s[x], c2 = c2s[x];
        /* a = channel mean (1 where 0); wt = sin(pi/2 (1 - min(1, max_c(c/a/2.5)))). A division by a > 0 and
         * by 2.5 never reverses an order (correctly rounded quotients are monotonic), and by a < 0 always
         * does, so max_c((c / a) / 2.5) is ((max c) / a) / 2.5, or with min c for a < 0: one division, not
         * three, for the same value (c and a are finite, a != 0, |c / a| >= 2^-100 or 0). */
        float a = pp_div_const((c0 + c1) + c2, 3.0f, r3);
        a = a == 0.0f ? 1.0f : a;
        float hi = c0 > c1 ? c0 : c1, lo = c0 < c1 ? c0 : c1;
        hi = hi > c2 ? hi : c2;
        lo = lo < c2 ? lo : c2;
        float wt = pp_div_const((a > 0.0f ? hi : lo) / a, 2.5f, r25);
        wt = wt > 1.0f ? 1.0f : wt;
        wt = 1.0f - wt;
        wt = pp_sin_quadrant((wt * pi) / 2.0f);
        /* rgb wt + a (1 - wt) + a (1 - wt)^2 rgb, summed left to right */
        float om = 1.0f - wt, aom = a * om, aom2 = a * (om * om);
        float o0 = (c0 * wt + aom) + aom2 * c0;
        float o1 = (c1 * wt + aom) + aom2 * c1;
        float o2 = (c2 * wt + aom) + aom2 * c2;
        o0 = o0 > 0.0f ? (o0 < 1.0f ? o0 : 1.0f) : 0.0f;
        o1 = o1 > 0.0f ? (o1 < 1.0f ? o1 : 1.0f) : 0.0f;
        o2 = o2 > 0.0f ? (o2 < 1.0f ? o2 : 1.0f) : 0.0f;
        Rr[x] = o0;
        Gr[x] = o1;
        Br[x] = o2;
    }
}

/* gz_decals on the region (rw x rh from (x0, y0)) of full planes of width iw: src g, r, z; dst R, G, B.
 * Band -> (RGB plane, scale): z -> R 0.019, r -> G 0.014, g -> B 0.008; mnmx (-0.5, 300), arcsinh 1. */
static void colour_gz_decals(const float *const src[3], int iw, int x0, int y0, int rw, int rh, int quantize,
                             float *dst)
{
    size_t plane = (size_t)rw * rh;
    float c[3][GZ_RUN];
    for (int y = 0; y < rh; y++)
        for (int xs = 0; xs < rw; xs += GZ_RUN) {
            const int n = rw - xs < GZ_RUN ? rw - xs : GZ_RUN;
            size_t so = (size_t)(y + y0) * iw + x0 + xs, d = (size_t)y * rw + xs;
            gz_decals_band(src[2] + so, 0.019f, c[0], n);
            gz_decals_band(src[1] + so, 0.014f, c[1], n);
            gz_decals_band(src[0] + so, 0.008f, c[2], n);
            gz_decals_desaturate(c[0], c[1], c[2], dst + d, dst + plane + d, dst + 2 * plane + d, n);
        }
    if (quantize)
        /* np.uint8(rgb * 255.): truncation to the 8-bit level (values are >= 0, so the cast truncates), then
         * /255 as the model saw it */
        for (size_t i = 0; i < 3 * plane; i++) dst[i] = pp_level((float)(int)(dst[i] * 255.0f));
}

/* image: values 0..255 (blanks 0) to [0, 1]. */
static void colour_image(const float *src, int iw, int x0, int y0, int rw, int rh, float *dst)
{
    for (int y = 0; y < rh; y++) {
        const float *s = src + (size_t)(y + y0) * iw + x0;
        float *d = dst + (size_t)y * rw;
        for (int x = 0; x < rw; x++) {
            float v = s[x];
            v = isfinite(v) ? v : 0.0f;
            v = v > 0.0f ? (v < 255.0f ? v : 255.0f) : 0.0f;
            d[x] = v / 255.0f;
        }
    }
}

static void swap_f(float *a, float *b)
{
    float t = *a;
    *a = *b;
    *b = t;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* k-th smallest of a[0..n) (0-based), reordering a so that every element after index k is >= a[k].
 * Quickselect with a median-of-three pivot; a sort finishes ranges that stop shrinking. */
static float select_kth(float *a, ptrdiff_t n, ptrdiff_t k)
{
    ptrdiff_t lo = 0, hi = n - 1;
    int budget = 64;
    while (hi > lo) {
        if (--budget == 0) {
            qsort(a + lo, (size_t)(hi - lo + 1), sizeof(float), cmp_float);
            return a[k];
        }
        ptrdiff_t mid = lo + (hi - lo) / 2;
        if (a[mid] < a[lo]) swap_f(&a[mid], &a[lo]);
        if (a[hi] < a[lo]) swap_f(&a[hi], &a[lo]);
        if (a[hi] < a[mid]) swap_f(&a[hi], &a[mid]);
        float pivot = a[mid];
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                swap_f(&a[i], &a[j]);
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return a[k];
    }
    return a[k];
}

/* Percentile p (in %) of a[0..n) with linear interpolation between order statistics at p/100 (n - 1)
 * (numpy.percentile's default, torch.quantile's 'linear'). a is reordered. */
static double percentile(float *a, ptrdiff_t n, double p)
{
    double pos = p / 100.0 * (double)(n - 1);
    ptrdiff_t k = (ptrdiff_t)floor(pos);
    if (k >= n - 1) {
        float m = a[0];
        for (ptrdiff_t i = 1; i < n; i++) m = a[i] > m ? a[i] : m;
        return m;
    }
    if (p <= 0) {
        float m = a[0];
        for (ptrdiff_t i = 1; i < n; i++) m = a[i] < m ? a[i] : m;
        return m;
    }
    double t = pos - (double)k;
    double lo = select_kth(a, n, k);
    float nx = a[k + 1];
    for (ptrdiff_t i = k + 2; i < n; i++) nx = a[i] < nx ? a[i] : nx;
    return lo + ((double)nx - lo) * t;
}

/* asinh: per band, clip to the [pmin, pmax] percentiles of the whole band (blanks as 0), scale to [0, 1],
 * then asinh(q x) (galaxy-datasets fits_to_jpg_like_scaling, zoobot.md 2.3). scratch holds ih*iw floats. */
static void colour_asinh(const pp_recipe *r, const float *src, int iw, int ih, int x0, int y0, int rw, int rh,
                         float *scratch, float *dst)
{
    size_t n = (size_t)iw * ih;
    for (size_t i = 0; i < n; i++) scratch[i] = isfinite(src[i]) ? src[i] : 0.0f;
    double lo = percentile(scratch, (ptrdiff_t)n, r->pmin);
    double hi = percentile(scratch, (ptrdiff_t)n, r->pmax);
    float flo = (float)lo, fhi = (float)hi, q = (float)r->asinh_q;
    float inv = hi > lo ? (float)(1.0 / (hi - lo)) : 0.0f;
    for (int y = 0; y < rh; y++) {
        const float *s = src + (size_t)(y + y0) * iw + x0;
        float *d = dst + (size_t)y * rw;
        for (int x = 0; x < rw; x++) {
            float v = s[x];
            v = isfinite(v) ? v : 0.0f;
            v = v > flo ? (v < fhi ? v : fhi) : flo;
            d[x] = pp_asinhf(q * ((v - flo) * inv));
        }
    }
}

/* ----------------------------------------------------------------------------------------- apply */

/* Planes feeding the recipe (1 = grey, 3 = R, G, B), per docs/preprocessing.md 2. */
static int select_planes(pp_kind kind, const pp_recipe *r, const io_cutout *c, int *planes, int *np,
                         char *err)
{
    /* a spec's band list names FITS planes; pictures (PNG/JPEG) are always R, G, B or grey */
    if ((r->nbands > 0 && c->kind == IO_KIND_FITS) || kind == PP_GZ_DECALS) {
        const char(*names)[16] = r->bands;
        static const char grz[3][16] = {"g", "r", "z"};
        int nb = r->nbands;
        if (kind == PP_GZ_DECALS && nb != 3) {
            /* gz_decals always takes three bands: an 'auto' spec's 1-band list is for the other recipes */
            names = grz;
            nb = 3;
        }
        int missing = -1;
        for (int i = 0; i < nb; i++) {
            planes[i] = find_band(c, names[i]);
            if (planes[i] < 0 && missing < 0) missing = i;
        }
        /* An unlabelled 3-plane cube fed to gz_decals is taken in the cutout service's g, r, z order. */
        if (missing >= 0 && kind == PP_GZ_DECALS && c->nband == 3 && !c->band[0][0] && !c->band[1][0] &&
            !c->band[2][0] && !strcasecmp(names[0], "g") && !strcasecmp(names[1], "r") &&
            !strcasecmp(names[2], "z")) {
            planes[0] = 0, planes[1] = 1, planes[2] = 2;
            missing = -1;
        }
        if (missing >= 0) {
            char have[IO_MAX_BANDS * 17 + 8] = "";
            size_t u = 0;
            for (int i = 0; i < c->nband; i++)
                u += (size_t)snprintf(have + u, sizeof have - u, "%s%s", i ? ", " : "",
                                      c->band[i][0] ? c->band[i] : "?");
            return pp_fail(err, MC_ROW_BAD_SHAPE, "%s needs band '%s': the cutout has %d plane%s (bands: %s)",
                           kind_name(kind), names[missing], c->nband, c->nband == 1 ? "" : "s", have);
        }
        *np = nb;
        return MC_ROW_OK;
    }
    if (kind == PP_IMAGE) {
        /* image files hold R, G, B in planes 0, 1, 2 */
        if (c->nband >= 3) {
            planes[0] = 0, planes[1] = 1, planes[2] = 2;
            *np = 3;
        } else {
            planes[0] = 0;
            *np = 1;
        }
    } else {
        /* flux cubes list bands from blue to red (g, r, z; g, r, i, z, y): red from plane 2 */
        if (c->nband >= 3) {
            planes[0] = 2, planes[1] = 1, planes[2] = 0;
            *np = 3;
        } else {
            planes[0] = 0;
            *np = 1;
        }
    }
    return MC_ROW_OK;
}

/* One resampling pass along the row index: dst row i (len floats) = sum over q of a->wt[i][q] times src row
 * (a->lo[i] - origin + q), for i < n; vectorises over the rows' length. */
static void resample_rows(const pp_axis *a, int origin, const float *src, int len, int n, float *dst)
{
    for (int i = 0; i < n; i++) {
        float *d = dst + (size_t)i * len;
        const float *wt = a->wt + (size_t)i * a->ks;
        const float *s0 = src + (size_t)(a->lo[i] - origin) * len;
        for (int x = 0; x < len; x++) d[x] = 0.0f;
        for (int q = 0; q < a->cnt[i]; q++) {
            const float wq = wt[q];
            const float *sr = s0 + (size_t)q * len;
            for (int x = 0; x < len; x++) d[x] += wq * sr[x];
        }
    }
}

#if defined(__AVX512F__)
#include <immintrin.h>

/* The horizontal pass straight along the region's rows, 16 outputs at a time: dst row y (n floats) = sum over q
 * of a->wt[i][q] times src[y][a->lo[i] - origin + q], for rows rows of len floats. Lane i takes its q-th tap
 * where q < cnt[i] (masked FMAs: the same fma(w, x, acc) from 0, tap by tap, as resample_rows on the transposed
 * region, so the sums are bit for bit those). Where a block's taps lie within 32 floats, two loads and a
 * permute per tap fetch them (upsampling and mild downsampling: taps of neighbouring outputs overlap), else a
 * gather. It replaces transposing the region, a pass over the transposed copy and transposing back (the two
 * transposes alone were 0.2 ms of a 256 px cube in the catalogue job's loader, on caches the encoder had just
 * used; perf).
 * wq (ks x n16 floats) and ib (3 x n16 + 3 x nblk ints) are scratch. */
static void resample_cols(const pp_axis *a, int origin, const float *src, int len, int rows, int n, float *wq,
                          int *ib, float *dst)
{
    const int n16 = (n + 15) & ~15, nblk = n16 / 16, ks = a->ks;
    int *base = ib, *cnt = ib + n16, *b0 = ib + 2 * n16, *bq = b0 + nblk, *perm = bq + nblk;
    for (int i = 0; i < n16; i++) {
        base[i] = i < n ? a->lo[i] - origin : 0;
        cnt[i] = i < n ? a->cnt[i] : 0; /* padding lanes take no tap */
        for (int q = 0; q < ks; q++) wq[(size_t)q * n16 + i] = i < n && q < a->cnt[i] ? a->wt[(size_t)i * ks + q] : 0.0f;
    }
    for (int b = 0; b < nblk; b++) {
        int lo = INT32_MAX, hi = 0, mq = 0;
        for (int i = b * 16; i < b * 16 + 16 && i < n; i++) {
            lo = base[i] < lo ? base[i] : lo;
            hi = base[i] + cnt[i] > hi ? base[i] + cnt[i] : hi;
            mq = cnt[i] > mq ? cnt[i] : mq;
        }
        b0[b] = lo;
        bq[b] = mq;
        perm[b] = hi - lo <= 32;
    }
    for (int y = 0; y < rows; y++) {
        const float *row = src + (size_t)y * len;
        float *d = dst + (size_t)y * n;
        for (int b = 0; b < nblk; b++) {
            const int i0 = b * 16;
            const __m512i vb = _mm512_loadu_si512(base + i0), vc = _mm512_loadu_si512(cnt + i0);
            __m512 acc = _mm512_setzero_ps();
            if (perm[b]) {
                const int s0 = b0[b], left = len - s0; /* > 0: every tap is in the row */
                const __mmask16 m1 = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
                const __mmask16 m2 = left >= 32 ? 0xffff : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
                const __m512 w0 = _mm512_maskz_loadu_ps(m1, row + s0), w1 = _mm512_maskz_loadu_ps(m2, row + s0 + 16);
                const __m512i rel = _mm512_sub_epi32(vb, _mm512_set1_epi32(s0));
                for (int q = 0; q < bq[b]; q++) {
                    const __mmask16 k = _mm512_cmpgt_epi32_mask(vc, _mm512_set1_epi32(q));
                    const __m512 x = _mm512_permutex2var_ps(w0, _mm512_add_epi32(rel, _mm512_set1_epi32(q)), w1);
                    acc = _mm512_mask3_fmadd_ps(_mm512_loadu_ps(wq + (size_t)q * n16 + i0), x, acc, k);
                }
            } else {
                for (int q = 0; q < bq[b]; q++) {
                    const __mmask16 k = _mm512_cmpgt_epi32_mask(vc, _mm512_set1_epi32(q));
                    const __m512 x = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k,
                                                              _mm512_add_epi32(vb, _mm512_set1_epi32(q)), row, 4);
                    acc = _mm512_mask3_fmadd_ps(_mm512_loadu_ps(wq + (size_t)q * n16 + i0), x, acc, k);
                }
            }
            if (i0 + 16 <= n)
                _mm512_storeu_ps(d + i0, acc);
            else
                _mm512_mask_storeu_ps(d + i0, (__mmask16)((1u << (n - i0)) - 1), acc);
        }
    }
}
#else
typedef float pp_v8 __attribute__((vector_size(32)));

/* The 8 x 8 block at src (row stride ls) transposed into dst (row stride ld), in three rounds of shuffles
 * (pairs of rows interleaved, then pairs of pairs, then halves): AVX's unpack/shuffle/permute. */
static inline void transpose8(const float *src, size_t ls, float *dst, size_t ld)
{
    pp_v8 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) memcpy(&r[i], src + i * ls, sizeof r[i]);
    for (int i = 0; i < 8; i += 2) {
        t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4)
        for (int j = 0; j < 2; j++) {
            u[i + 2 * j] = __builtin_shufflevector(t[i + j], t[i + j + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            u[i + 2 * j + 1] = __builtin_shufflevector(t[i + j], t[i + j + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int j = 0; j < 4; j++) {
        pp_v8 lo = __builtin_shufflevector(u[j], u[j + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        pp_v8 hi = __builtin_shufflevector(u[j], u[j + 4], 4, 5, 6, 7, 12, 13, 14, 15);
        memcpy(dst + j * ld, &lo, sizeof lo);
        memcpy(dst + (j + 4) * ld, &hi, sizeof hi);
    }
}

/* dst (cols x rows) = src (rows x cols)^T: 8 x 8 blocks in registers (element by element cost 1.4 ns each, a
 * sixth of the recipe), within 32 x 32 tiles so both sides stay in cache lines; the edges element by element. */
static void transpose(const float *restrict src, int rows, int cols, float *restrict dst)
{
    for (int r0 = 0; r0 < rows; r0 += 32)
        for (int c0 = 0; c0 < cols; c0 += 32) {
            int r1 = r0 + 32 < rows ? r0 + 32 : rows, c1 = c0 + 32 < cols ? c0 + 32 : cols;
            int r8 = r0 + ((r1 - r0) & ~7), c8 = c0 + ((c1 - c0) & ~7);
            for (int r = r0; r < r8; r += 8)
                for (int c = c0; c < c8; c += 8)
                    transpose8(src + (size_t)r * cols + c, (size_t)cols, dst + (size_t)c * rows + r, (size_t)rows);
            for (int r = r0; r < r1; r++)
                for (int c = r < r8 ? c8 : c0; c < c1; c++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
        }
}
#endif

static size_t align16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

/* The 8-bit image PIL's resize returns: v clamped to [0, 1] (NaN: 0), then the nearest level, halves up. Two
 * loops: in one, GCC turns the clamp into branches (v <= 0 gives a known 0) and vectorises neither. */
static void quantize_levels(float *o, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = o[i] > 0.0f ? o[i] : 0.0f;
        o[i] = v < 1.0f ? v : 1.0f;
    }
    for (size_t i = 0; i < n; i++) o[i] = pp_level((float)(int)(o[i] * 255.0f + 0.5f)); /* >= 0: the cast floors */
}

int pp_apply(const pp_recipe *r, const io_cutout *c, int chans, int size, pp_work *w, float *out, char *err)
{
    MC_ASSERT(r && c && w && out);
    MC_ASSERT(chans == 1 || chans == 3);
    MC_ASSERT(size >= 1 && size <= 16384);
    pp_kind kind = pp_recipe_resolve(r, c);
    if (c->nband < 1 || !c->pix) return pp_fail(err, MC_ROW_BAD_SHAPE, "no planes were decoded");
    if (c->w < 8 || c->h < 8)
        return pp_fail(err, MC_ROW_BAD_SHAPE, "image is %d x %d pixels, smaller than the 8 px minimum", c->w,
                       c->h);
    int planes[3], np = 0;
    int rc = select_planes(kind, r, c, planes, &np, err);
    if (rc != MC_ROW_OK) return rc;

    /* Blank pixels (zero, NaN, Inf) per band, over the whole image: the GZ DECaLS quality flag, for flux
     * images. A rendered picture's black sky is legitimately 0 (synthetic and real GZ renderings have
     * 20-25% of such pixels), so a PNG/JPEG is refused only when a plane is entirely black. */
    const double limit = c->kind == IO_KIND_FITS ? r->max_blank : 1.0 - 0.5 / ((double)c->w * c->h);
    size_t npix = (size_t)c->w * c->h;
    for (int k = 0; k < np; k++) {
        const float *p = c->pix + (size_t)planes[k] * npix;
        size_t nblank = 0;
        for (size_t i = 0; i < npix; i++) {
            float a = fabsf(p[i]); /* NaN fails both comparisons */
            nblank += (a > 0.0f) & (a <= FLT_MAX) ? 0 : 1;
        }
        double frac = (double)nblank / (double)npix;
        if (frac > limit && c->kind != IO_KIND_FITS)
            return pp_fail(err, MC_ROW_BAD_PIXELS, "plane %d is entirely black (an empty picture)", planes[k]);
        if (frac > limit) {
            const char *nm = c->band[planes[k]];
            if (nm[0])
                return pp_fail(err, MC_ROW_BAD_PIXELS,
                               "band %s: %.1f%% of pixels are zero or NaN (limit %.0f%%)", nm, 100 * frac,
                               100 * r->max_blank);
            return pp_fail(err, MC_ROW_BAD_PIXELS,
                           "plane %d: %.1f%% of pixels are zero or NaN (limit %.0f%%)", planes[k], 100 * frac,
                           100 * r->max_blank);
        }
    }

    /* Geometry: the central square of side min(w, h)/zoom, in continuous pixel coordinates. */
    double side = fmin(c->w, c->h) / r->zoom;
    double bx = (c->w - side) / 2.0, by = (c->h - side) / 2.0;
    double fs = fmax(side / size, 1.0);
    int ks = (int)ceil(fs) * 2 + 3;

    /* Work memory, all from one reusable buffer. Sizes use the whole image as the region bound. */
    size_t n_axes = 2 * (align16((size_t)size * ks) + 2 * align16((size_t)size));
    size_t n_col = align16((size_t)np * npix);
    size_t n_tmp = align16((size_t)c->h * size);
    size_t n_scr = kind == PP_ASINH ? align16(npix) : 0;
#if defined(__AVX512F__)
    size_t n_colt = align16((size_t)ks * align16((size_t)size)), n_tmpt = 3 * align16((size_t)size) + 16; /* resample_cols's */
#else
    size_t n_colt = align16(npix), n_tmpt = n_tmp; /* transposed copies for the horizontal pass */
#endif
    size_t need = n_axes + n_col + n_tmp + n_scr + n_colt + n_tmpt;
    if (w->cap < need || !w->buf) {
        free(w->buf);
        w->buf = (float *)mc_malloc_aligned(need * sizeof(float));
        w->cap = need;
    }
    float *mem = w->buf;
    pp_axis ax, ay;
    ax.ks = ay.ks = ks;
    ax.wt = mem, mem += align16((size_t)size * ks);
    ax.lo = (int *)mem, mem += align16((size_t)size);
    ax.cnt = (int *)mem, mem += align16((size_t)size);
    ay.wt = mem, mem += align16((size_t)size * ks);
    ay.lo = (int *)mem, mem += align16((size_t)size);
    ay.cnt = (int *)mem, mem += align16((size_t)size);
    float *col = mem;
    mem += n_col;
    float *tmp = mem;
    mem += n_tmp;
    float *scr = n_scr ? mem : NULL;
    mem += n_scr;
    float *colt = mem;
    mem += n_colt;
    float *tmpt = mem;
    axis_build(&ax, c->w, bx, side, size, 0);
    axis_build(&ay, c->h, by, side, size, r->flip);
    int rx0 = ax.rlo, rw = ax.rhi - ax.rlo, ry0 = ay.rlo, rh = ay.rhi - ay.rlo;
    size_t rplane = (size_t)rw * rh;

    /* Colour stage on the region the view reads. */
    if (kind == PP_GZ_DECALS) {
        const float *src[3];
        for (int k = 0; k < 3; k++) src[k] = c->pix + (size_t)planes[k] * npix;
        colour_gz_decals(src, c->w, rx0, ry0, rw, rh, r->quantize, col);
    } else if (kind == PP_IMAGE) {
        for (int k = 0; k < np; k++)
            colour_image(c->pix + (size_t)planes[k] * npix, c->w, rx0, ry0, rw, rh, col + k * rplane);
    } else {
        for (int k = 0; k < np; k++)
            colour_asinh(r, c->pix + (size_t)planes[k] * npix, c->w, c->h, rx0, ry0, rw, rh, scr,
                         col + k * rplane);
    }
    int ncol = np;
    if (chans == 1 && ncol == 3) {
        /* 1-channel models: unweighted channel mean (Zoobot 1.x greyscale, galaxy-datasets ToGray) */
        for (size_t i = 0; i < rplane; i++) col[i] = (col[i] + col[rplane + i] + col[2 * rplane + i]) / 3.0f;
        ncol = 1;
    }

    /* The view: horizontal pass into tmp (region rows x size), then vertical into out. */
    size_t oplane = (size_t)size * size;
    for (int k = 0; k < ncol; k++) {
        /* Horizontal pass: with AVX-512 along the rows by masked taps (resample_cols); else on the
         * transposed region, so that it vectorises over rows like the vertical one (a tap-by-tap gather
         * along a row does not): colt = region^T, tmpt[i][y] = sum_q w[i][q] colt[lo_i + q][y], tmp =
         * tmpt^T. Each output sums the same products in the same order either way, so the result is the
         * row-wise form's. */
#if defined(__AVX512F__)
        resample_cols(&ax, rx0, col + k * rplane, rw, rh, size, colt, (int *)tmpt, tmp);
#else
        transpose(col + k * rplane, rh, rw, colt);
        resample_rows(&ax, rx0, colt, rh, size, tmpt);
        transpose(tmpt, size, rh, tmp);
#endif
        float *o = out + k * oplane;
        resample_rows(&ay, ry0, tmp, size, size, o);
        if (kind != PP_ASINH && r->quantize) {
            /* the 8-bit image PIL's resize returns: nearest level, halves up */
            quantize_levels(o, oplane);
        }
    }
    if (chans == 3 && ncol == 1) {
        memcpy(out + oplane, out, oplane * sizeof(float));
        memcpy(out + 2 * oplane, out, oplane * sizeof(float));
    }
    return MC_ROW_OK;
}
