/* nn/kernels.c: portable C kernels written so GCC vectorises their inner loops over channels (NHWC), plus
 * the sgemm entry point. Exactness matters more than tricks here: activations use full-range polynomial
 * approximations accurate to a few float ulps so the network matches PyTorch to ~1e-6 relative.
 * Not here: tiling and fusion decisions (nn/layers.c), threads (one BLAS thread per rank, by design). */
#include "nn/kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "mc.h"
#include "nn/vec.h"

/* e^r * 2^n for |r| <= ln2/2: Taylor degree 6 (truncation error < 1.2e-7 relative), the scale through the
 * exponent bits. */
static inline float exp_reduced(float r, float n)
{
    float p = NN_EXP_TAYLOR[0];
#pragma GCC unroll 8
    for (int k = 1; k < 7; k++) p = p * r + NN_EXP_TAYLOR[k];
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* e^x for float: round x/ln2 to n with the 1.5*2^23 trick, reduce with a two-part ln2, then exp_reduced.
 * Branch-free so loops calling it vectorise. Inputs are clamped to the range where e^x is a normal float. */
static inline float expf_fast(float x)
{
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float shift = 12582912.0f; /* 1.5 * 2^23 */
    float n = (x * 1.44269504088896341f + shift) - shift;
    float r = x - n * 0.693145751953125f; /* ln2 high part, exact in float */
    r = r - n * 1.428606765330187045e-06f;  /* ln2 low part */
    return exp_reduced(r, n);
}

float nn_expf(float x)
{
    return expf_fast(x);
}

/* e^(p - h - l) for GELU's tail: p small (P(t) below), h = x^2/2 exact and large, l a small correction.
 * Rounding p - h to one float would cost up to half an ulp of h (2e-6 relative at x = -11); instead n is
 * picked from the rounded sum but the reduced argument is formed as p - (h + n*ln2_hi) - n*ln2_lo - l, where
 * h + n*ln2_hi is exact (Sterbenz: the two are within a factor of two once h > 1.7; below, its rounding is
 * under 1.2e-7). One exp, with the accuracy of the two-exp form. Below e^-87 the result is 0. */
static inline float expf_parts(float p, float h, float l)
{
    float x = p - h;
    float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float shift = 12582912.0f;
    float n = (xc * 1.44269504088896341f + shift) - shift;
    float r = p - (h + n * 0.693145751953125f);
    r = r - n * 1.428606765330187045e-06f - l;
    return x < -87.0f ? 0.0f : exp_reduced(r, n);
}

/* Numerical Recipes' erfcc polynomial P(t), highest term first (scalar and vector forms share it) */
static const float ERFCC[10] = {0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f,
                                -0.18628806f, 0.09678418f,  0.37409196f, 1.00002368f, -1.26551223f};

/* erfc(|x|/sqrt2) via the Chebyshev-fitted form t*exp(-z^2 + P(t)), z = |x|/sqrt2, t = 1/(1+z/2)
 * (Numerical Recipes' erfcc; fractional error below 1.2e-7 for every z), which keeps relative accuracy in
 * the far tail. z^2 = x^2/2 is formed from x itself, split as x = xh + xl with xh holding 12 significant
 * bits, so xh^2/2 is exact and the rest, (x - xh)(x + xh)/2, is small; expf_parts takes both. */
static inline float erfc_scaled(float x)
{
    float a = fabsf(x), z = a * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = ERFCC[0];
#pragma GCC unroll 10
    for (int k = 1; k < 10; k++) p = p * t + ERFCC[k];
    uint32_t ab;
    memcpy(&ab, &a, sizeof ab);
    ab &= 0xfffff000u;
    float ah;
    memcpy(&ah, &ab, sizeof ah);
    return t * expf_parts(p, 0.5f * ah * ah, 0.5f * (a - ah) * (a + ah));
}

/* gelu(x) = x/2 * (1 + erf(x/sqrt2)) = x/2 * erfc(-x/sqrt2), written through erfc of |x|/sqrt2. */
static inline float gelu(float x)
{
    float e = erfc_scaled(x);
    float one_plus_erf = x < 0.0f ? e : 2.0f - e;
    return 0.5f * x * one_plus_erf;
}

static inline float sigmoid(float x)
{
    return 1.0f / (1.0f + expf_fast(-x));
}

/* gelu of nv native vectors, each step taken for all of them before the next (the scalar gelu above, operation for
 * operation, lane by lane; expf_parts' reduction written out so it interleaves too, then vexp_reduced_n). One
 * vector's chain (reciprocal, the degree-9 P(t), the exp) is about a hundred cycles of dependent operations; with
 * four vectors interleaved the loop runs at the multiply-add units' rate instead: 1.30-1.38x on AVX-512 (AMD Zen 4)
 * and 1.50x on AVX2 in a microbenchmark, 2026-12-03 (written one vector after another, four vectors gave 1.00x: the
 * out-of-order window does not reach the next vector's chain).
 */
static inline __attribute__((always_inline)) void vgelu_n(vfa *xs, const int nv)
{
    vfa a[4], t[4], p[4], h[4], l[4], n[4], r[4], e[4];
    via under[4];
#pragma GCC unroll 4
    for (int u = 0; u < nv; u++) {
        a[u] = (vfa)((via)xs[u] & 0x7fffffff);
        t[u] = vrecip(1.0f + 0.5f * (a[u] * 0.70710678118654752f));
        p[u] = vsplat(ERFCC[0]);
    }
#pragma GCC unroll 10
    for (int k = 1; k < 10; k++)
#pragma GCC unroll 4
        for (int u = 0; u < nv; u++) p[u] = p[u] * t[u] + ERFCC[k];
#pragma GCC unroll 4
    for (int u = 0; u < nv; u++) { /* expf_parts(p, h, l): z^2 = h + l, h exact */
        vfa ah = (vfa)((via)a[u] & (int32_t)0xfffff000u);
        h[u] = 0.5f * ah * ah;
        l[u] = 0.5f * (a[u] - ah) * (a[u] + ah);
        vfa x = p[u] - h[u];
        under[u] = x < vsplat(-87.0f);
        vfa xc = vselect(under[u], vsplat(-87.0f), x);
        xc = vselect(xc > vsplat(88.0f), vsplat(88.0f), xc);
        const vfa shift = vsplat(12582912.0f);
        n[u] = (xc * 1.44269504088896341f + shift) - shift;
        r[u] = p[u] - (h[u] + n[u] * 0.693145751953125f);
        r[u] = r[u] - n[u] * 1.428606765330187045e-06f - l[u];
    }
    vexp_reduced_n(e, r, n, nv);
#pragma GCC unroll 4
    for (int u = 0; u < nv; u++) {
        vfa ex = t[u] * vselect(under[u], vsplat(0.0f), e[u]);
        vfa one_plus_erf = vselect(xs[u] < 0.0f, ex, 2.0f - ex);
        xs[u] = 0.5f * xs[u] * one_plus_erf;
    }
}

/* sigmoid of nv native vectors, 1/(1 + e^-x), interleaved as vgelu_n is */
static inline __attribute__((always_inline)) void vsigmoid_n(vfa *xs, const int nv)
{
    vfa e[4];
#pragma GCC unroll 4
    for (int u = 0; u < nv; u++) e[u] = -xs[u];
    vexp_n(e, nv);
#pragma GCC unroll 4
    for (int u = 0; u < nv; u++) xs[u] = vrecip(1.0f + e[u]);
}

/* one of the vector activations on nv native vectors */
static inline __attribute__((always_inline)) void act_n(vfa *v, const int nv, const nn_act act)
{
    vfa g[4];
    switch (act) {
    case NN_ACT_SILU:
        for (int u = 0; u < nv; u++) g[u] = v[u];
        vsigmoid_n(g, nv);
        for (int u = 0; u < nv; u++) v[u] = v[u] * g[u];
        break;
    case NN_ACT_GELU: vgelu_n(v, nv); break;
    case NN_ACT_SIGMOID: vsigmoid_n(v, nv); break;
    default: break;
    }
}

/* x[0 .. returned) in place, four vectors at a time, then one; the scalar tail is the caller's */
static inline __attribute__((always_inline)) size_t act_vectors(float *x, size_t n, const nn_act act)
{
    size_t i = 0;
    for (; i + 4 * VA <= n; i += 4 * VA) {
        vfa v[4];
        for (int u = 0; u < 4; u++) v[u] = vload(x + i + u * VA);
        act_n(v, 4, act);
        for (int u = 0; u < 4; u++) vstore(x + i + u * VA, v[u]);
    }
    for (; i + VA <= n; i += VA) {
        vfa v = vload(x + i);
        act_n(&v, 1, act);
        vstore(x + i, v);
    }
    return i;
}

void nn_act_apply(float *x, size_t n, nn_act act)
{
    size_t i = 0;
    switch (act) {
    case NN_ACT_NONE: break;
    case NN_ACT_RELU:
        for (; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case NN_ACT_SILU:
        for (i = act_vectors(x, n, NN_ACT_SILU); i < n; i++) x[i] = x[i] * sigmoid(x[i]);
        break;
    case NN_ACT_GELU:
        for (i = act_vectors(x, n, NN_ACT_GELU); i < n; i++) x[i] = gelu(x[i]);
        break;
    case NN_ACT_SIGMOID:
        for (i = act_vectors(x, n, NN_ACT_SIGMOID); i < n; i++) x[i] = sigmoid(x[i]);
        break;
    }
}

void nn_gemm_fused(int M, int N, int K, const float *A, int lda, const float *W, int ldw, const float *bias,
                   const float *res, int ldr, int accumulate, nn_act act, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        const float *r = res ? res + (size_t)i * ldr : NULL;
        if (accumulate) {
            if (bias)
                for (int j = 0; j < N; j++) c[j] += bias[j];
            if (r)
                for (int j = 0; j < N; j++) c[j] += r[j];
        } else if (bias && r) {
            for (int j = 0; j < N; j++) c[j] = bias[j] + r[j];
        } else if (bias) {
            memcpy(c, bias, sizeof(float) * (size_t)N);
        } else if (r) {
            memcpy(c, r, sizeof(float) * (size_t)N);
        } else {
            memset(c, 0, sizeof(float) * (size_t)N);
        }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, lda, W, ldw, 1.0f, C, ldc);
    if (act == NN_ACT_NONE) return;
    if (ldc == N) /* one call over the block: rows of a few dozen channels would each end in a scalar tail */
        nn_act_apply(C, (size_t)M * N, act);
    else
        for (int i = 0; i < M; i++) nn_act_apply(C + (size_t)i * ldc, (size_t)N, act);
}

void nn_im2col(const float *x, int h, int w, int c, int kh, int kw, int stride, int pad, int oh, int ow,
               long p0, long p1, float *out)
{
    const long ld = (long)kh * kw * c;
    const long per_img = (long)oh * ow;
    for (long p = p0; p < p1; p++) {
        long img = p / per_img, rem = p % per_img;
        int oy = (int)(rem / ow), ox = (int)(rem % ow);
        const float *xi = x + (size_t)img * h * w * c;
        float *o = out + (size_t)(p - p0) * ld;
        int iy0 = oy * stride - pad, ix0 = ox * stride - pad;
        for (int ky = 0; ky < kh; ky++) {
            int iy = iy0 + ky;
            if (iy < 0 || iy >= h) {
                memset(o, 0, sizeof(float) * (size_t)kw * c);
                o += (size_t)kw * c;
                continue;
            }
            int kx_lo = ix0 < 0 ? -ix0 : 0;
            int kx_hi = ix0 + kw > w ? w - ix0 : kw;
            if (kx_hi < kx_lo) kx_hi = kx_lo;
            if (kx_lo > 0) memset(o, 0, sizeof(float) * (size_t)kx_lo * c);
            if (kx_hi > kx_lo)
                memcpy(o + (size_t)kx_lo * c, xi + ((size_t)iy * w + ix0 + kx_lo) * c,
                       sizeof(float) * (size_t)(kx_hi - kx_lo) * c);
            if (kx_hi < kw) memset(o + (size_t)kx_hi * c, 0, sizeof(float) * (size_t)(kw - kx_hi) * c);
            o += (size_t)kw * c;
        }
    }
}

/* dw_pixel's sums for the nv * VA channels from cb, in registers across the taps */
static inline __attribute__((always_inline)) void dw_pixel_block(const float *x, int w, int c, const float *k,
                                                                 const float *b, int kw, int iy0, int ix0, int ky_lo,
                                                                 int ky_hi, int kx_lo, int kx_hi, float *acc, int cb,
                                                                 const int nv)
{
    vfa a[4];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) a[v] = vload(b + cb + v * VA);
    for (int ky = ky_lo; ky < ky_hi; ky++)
        for (int kx = kx_lo; kx < kx_hi; kx++) {
            const float *xp = x + ((size_t)(iy0 + ky) * w + (ix0 + kx)) * c + cb;
            const float *kp = k + ((size_t)ky * kw + kx) * c + cb;
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) a[v] += vload(xp + v * VA) * vload(kp + v * VA);
        }
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) vstore(acc + cb + v * VA, a[v]);
}

/* One output pixel at any position: taps clipped to the image (borders; on 7x7 maps every pixel, on 14x14 six
 * of each row's fourteen). Four native vectors of channels at a time (four chains, so the FMAs' latency
 * overlaps), then one vector, then one channel: each channel's sum in the same order throughout (bias, then
 * the taps row by row). */
static void dw_pixel(const float *x, int w, int c, const float *k, const float *b, int kw, int iy0, int ix0, int ky_lo,
                     int ky_hi, int kx_lo, int kx_hi, float *acc)
{
    int cb = 0;
    for (; cb + 4 * VA <= c; cb += 4 * VA)
        dw_pixel_block(x, w, c, k, b, kw, iy0, ix0, ky_lo, ky_hi, kx_lo, kx_hi, acc, cb, 4);
    for (; cb + VA <= c; cb += VA) dw_pixel_block(x, w, c, k, b, kw, iy0, ix0, ky_lo, ky_hi, kx_lo, kx_hi, acc, cb, 1);
    for (; cb < c; cb++) {
        float a = b[cb];
        for (int ky = ky_lo; ky < ky_hi; ky++)
            for (int kx = kx_lo; kx < kx_hi; kx++)
                a += x[((size_t)(iy0 + ky) * w + (ix0 + kx)) * c + cb] * k[((size_t)ky * kw + kx) * c + cb];
        acc[cb] = a;
    }
}

/* Native vectors per block of 16 channels in dw_quad. A 16-float generic vector was one AVX-512 register but
 * on AVX2 GCC kept it on the stack, moving halves through general registers at every tap (a third of the
 * depthwise time there); arrays of native vectors with constant indices stay in registers on both. */
#define DW_NV (VA >= 16 ? 1 : 16 / VA)

/* dw_quad's four outputs for the nv * VA channels from cb: weights loaded once for four FMAs, the
 * accumulators in registers across all taps */
static inline __attribute__((always_inline)) void dw_quad_block(const float *x, int w, int c, const float *k,
                                                                const float *b, int kw, size_t sx, int iy0, int ix0,
                                                                int ky_lo, int ky_hi, float *y, int cb, const int nv)
{
    vfa a[4][DW_NV];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        a[0][v] = vload(b + cb + v * VA);
        a[1][v] = a[2][v] = a[3][v] = a[0][v];
    }
    for (int ky = ky_lo; ky < ky_hi; ky++) {
        const float *xr = x + ((size_t)(iy0 + ky) * w + ix0) * c + cb;
        const float *kr = k + (size_t)ky * kw * c + cb;
        for (int kx = 0; kx < kw; kx++) {
            const float *xp = xr + (size_t)kx * c;
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) {
                const vfa wv = vload(kr + (size_t)kx * c + v * VA);
                a[0][v] += vload(xp + v * VA) * wv;
                a[1][v] += vload(xp + sx + v * VA) * wv;
                a[2][v] += vload(xp + 2 * sx + v * VA) * wv;
                a[3][v] += vload(xp + 3 * sx + v * VA) * wv;
            }
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) vstore(y + (size_t)j * c + cb + v * VA, a[j][v]);
}

/* Four horizontally adjacent output pixels whose windows lie inside the image columns: blocks of 16 channels,
 * then of one native vector, then one channel at a time (each channel's sum in the same order throughout). */
static void dw_quad(const float *x, int w, int c, const float *k, const float *b, int kw, int stride, int iy0,
                    int ix0, int ky_lo, int ky_hi, float *y)
{
    const size_t sx = (size_t)stride * c;
    int cb = 0;
    for (; cb + DW_NV * VA <= c; cb += DW_NV * VA)
        dw_quad_block(x, w, c, k, b, kw, sx, iy0, ix0, ky_lo, ky_hi, y, cb, DW_NV);
    for (; DW_NV > 1 && cb + VA <= c; cb += VA) dw_quad_block(x, w, c, k, b, kw, sx, iy0, ix0, ky_lo, ky_hi, y, cb, 1);
    for (int j = 0; j < 4 && cb < c; j++) /* channels past the last multiple of the vector width */
        for (int ci = cb; ci < c; ci++) {
            float acc = b[ci];
            for (int ky = ky_lo; ky < ky_hi; ky++)
                for (int kx = 0; kx < kw; kx++)
                    acc += x[((size_t)(iy0 + ky) * w + ix0 + j * stride + kx) * c + ci] * k[((size_t)ky * kw + kx) * c + ci];
            y[(size_t)j * c + ci] = acc;
        }
}

void nn_dwconv(const float *x, int h, int w, int c, const float *k, const float *b, int kh, int kw, int stride,
               int pad, int oh, int ow, nn_act act, float *y, float *csum)
{
    if (csum) memset(csum, 0, sizeof(float) * (size_t)c);
    /* output columns whose window is inside the image horizontally: ox*stride - pad >= 0 and
     * ox*stride - pad + kw <= w */
    int ox_in_lo = (pad + stride - 1) / stride;
    int ox_in_hi = w - kw + pad >= 0 ? (w - kw + pad) / stride + 1 : 0;
    if (ox_in_hi > ow) ox_in_hi = ow;
    if (ox_in_lo > ox_in_hi) ox_in_lo = ox_in_hi;
    for (int oy = 0; oy < oh; oy++) {
        int iy0 = oy * stride - pad;
        int ky_lo = iy0 < 0 ? -iy0 : 0, ky_hi = iy0 + kh > h ? h - iy0 : kh;
        float *yrow = y + (size_t)oy * ow * c;
        int ox = 0;
        while (ox < ow) {
            if (ox >= ox_in_lo && ox + 4 <= ox_in_hi) {
                dw_quad(x, w, c, k, b, kw, stride, iy0, ox * stride - pad, ky_lo, ky_hi, yrow + (size_t)ox * c);
                ox += 4;
            } else {
                int ix0 = ox * stride - pad;
                int kx_lo = ix0 < 0 ? -ix0 : 0, kx_hi = ix0 + kw > w ? w - ix0 : kw;
                dw_pixel(x, w, c, k, b, kw, iy0, ix0, ky_lo, ky_hi, kx_lo, kx_hi, yrow + (size_t)ox * c);
                ox += 1;
            }
        }
        /* activation and squeeze-excite sums on the row just written, while it is in L1/L2 */
        nn_act_apply(yrow, (size_t)ow * c, act);
        if (csum)
            for (int o = 0; o < ow; o++)
                for (int ci = 0; ci < c; ci++) csum[ci] += yrow[(size_t)o * c + ci];
    }
}

/* sum of v[0..c), and of (v - m)^2: VA partial sums, then their total (GCC keeps a float reduction scalar
 * without -ffast-math) */
static inline float row_sum(const float *v, int c)
{
    vfa acc = {0};
    int i = 0;
    for (; i + VA <= c; i += VA) acc += vload(v + i);
    float s = vhsum(acc);
    for (; i < c; i++) s += v[i];
    return s;
}

static inline float row_sq(const float *v, int c, float m)
{
    vfa acc = {0};
    int i = 0;
    for (; i + VA <= c; i += VA) {
        vfa d = vload(v + i) - m;
        acc += d * d;
    }
    float s = vhsum(acc);
    for (; i < c; i++) s += (v[i] - m) * (v[i] - m);
    return s;
}

void nn_layernorm_to(const float *x, float *y, long rows, int c, float eps, const float *weight, const float *bias)
{
    for (long r = 0; r < rows; r++) {
        const float *v = x + (size_t)r * c;
        float *o = y + (size_t)r * c;
        const float mean = row_sum(v, c) / (float)c;
        const float q = row_sq(v, c, mean) / (float)c; /* a second pass about the mean, not E[x^2] - mean^2 */
        const float inv = 1.0f / sqrtf(q + eps);
        if (weight && bias) {
            for (int i = 0; i < c; i++) o[i] = (v[i] - mean) * inv * weight[i] + bias[i];
        } else {
            for (int i = 0; i < c; i++) o[i] = (v[i] - mean) * inv;
        }
    }
}

void nn_layernorm(float *x, long rows, int c, float eps, const float *weight, const float *bias)
{
    nn_layernorm_to(x, x, rows, c, eps, weight, bias);
}

void nn_maxpool(const float *x, int h, int w, int c, int k, int stride, int pad, int oh, int ow, float *y)
{
    for (int oy = 0; oy < oh; oy++) {
        int iy0 = oy * stride - pad;
        int ky_lo = iy0 < 0 ? -iy0 : 0, ky_hi = iy0 + k > h ? h - iy0 : k;
        for (int ox = 0; ox < ow; ox++) {
            int ix0 = ox * stride - pad;
            int kx_lo = ix0 < 0 ? -ix0 : 0, kx_hi = ix0 + k > w ? w - ix0 : k;
            float *o = y + ((size_t)oy * ow + ox) * c;
            for (int ci = 0; ci < c; ci++) o[ci] = -INFINITY;
            for (int ky = ky_lo; ky < ky_hi; ky++)
                for (int kx = kx_lo; kx < kx_hi; kx++) {
                    const float *xp = x + ((size_t)(iy0 + ky) * w + (ix0 + kx)) * c;
                    for (int ci = 0; ci < c; ci++) o[ci] = xp[ci] > o[ci] ? xp[ci] : o[ci];
                }
        }
    }
}

void nn_mean_pixels(const float *x, long hw, int c, float *y)
{
    memset(y, 0, sizeof(float) * (size_t)c);
    for (long p = 0; p < hw; p++) {
        const float *xp = x + (size_t)p * c;
        for (int i = 0; i < c; i++) y[i] += xp[i];
    }
    float inv = 1.0f / (float)hw;
    for (int i = 0; i < c; i++) y[i] *= inv;
}

void nn_scale_channels(float *x, long hw, int c, const float *s)
{
    for (long p = 0; p < hw; p++) {
        float *xp = x + (size_t)p * c;
        for (int i = 0; i < c; i++) xp[i] *= s[i];
    }
}
