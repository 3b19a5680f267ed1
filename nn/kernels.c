/* nn/kernels.c: portable C kernels written so GCC vectorises their inner loops over channels (NHWC), plus
 * the sgemm entry point. Exactness matters more than tricks here: activations use full-range polynomial
 * approximations accurate to a few float ulps so the network matches PyTorch to ~1e-6 relative.
 * Not here: tiling and fusion decisions (nn/layers.c), threads (one BLAS thread per rank, by design). */
#include "nn/kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "mc.h"

void nn_gemm(int M, int N, int K, const float *A, int lda, const float *W, int ldw, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, lda, W, ldw, beta, C, ldc);
}

/* e^x for float: round x/ln2 to n with the 1.5*2^23 trick, reduce with a two-part ln2, Taylor degree 6 on
 * |r| <= ln2/2 (truncation error < 1.2e-7 relative), scale by 2^n through the exponent bits. Branch-free so
 * loops calling it vectorise. Inputs are clamped to the range where e^x is a normal float. */
static inline float expf_fast(float x)
{
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float shift = 12582912.0f; /* 1.5 * 2^23 */
    float n = (x * 1.44269504088896341f + shift) - shift;
    float r = x - n * 0.693145751953125f; /* ln2 high part, exact in float */
    r = r - n * 1.428606765330187045e-06f;  /* ln2 low part */
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

float nn_expf(float x)
{
    return expf_fast(x);
}

/* erfc(|x|/sqrt2) via the Chebyshev-fitted form t*exp(-z^2 + P(t)), z = |x|/sqrt2, t = 1/(1+z/2)
 * (Numerical Recipes' erfcc; fractional error below 1.2e-7 for every z), which keeps relative accuracy in
 * the far tail. z^2 = x^2/2 is formed from x itself, split as x = xh + xl with xh holding 12 significant
 * bits, so xh^2 is exact and neither the 1/sqrt2 scaling nor the squaring is rounded into the exponent. */
static inline float erfc_scaled(float x)
{
    float a = fabsf(x), z = a * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    uint32_t ab;
    memcpy(&ab, &a, sizeof ab);
    ab &= 0xfffff000u;
    float ah;
    memcpy(&ah, &ab, sizeof ah);
    return t * expf_fast(-0.5f * ah * ah) * expf_fast(p - 0.5f * (a - ah) * (a + ah));
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

void nn_act_apply(float *x, size_t n, nn_act act)
{
    switch (act) {
    case NN_ACT_NONE: break;
    case NN_ACT_RELU:
        for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case NN_ACT_SILU:
        for (size_t i = 0; i < n; i++) x[i] = x[i] * sigmoid(x[i]);
        break;
    case NN_ACT_GELU:
        for (size_t i = 0; i < n; i++) x[i] = gelu(x[i]);
        break;
    case NN_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++) x[i] = sigmoid(x[i]);
        break;
    }
}

void nn_epilogue(float *C, int rows, int n, int ldc, const float *bias, const float *res, int ldr, nn_act act)
{
    for (int i = 0; i < rows; i++) {
        float *c = C + (size_t)i * ldc;
        if (bias && res) {
            const float *r = res + (size_t)i * ldr;
            for (int j = 0; j < n; j++) c[j] += bias[j] + r[j];
        } else if (bias) {
            for (int j = 0; j < n; j++) c[j] += bias[j];
        } else if (res) {
            const float *r = res + (size_t)i * ldr;
            for (int j = 0; j < n; j++) c[j] += r[j];
        }
        nn_act_apply(c, (size_t)n, act);
    }
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

void nn_dwconv(const float *x, int h, int w, int c, const float *k, const float *b, int kh, int kw, int stride,
               int pad, int oh, int ow, nn_act act, float *y, float *csum)
{
    if (csum) memset(csum, 0, sizeof(float) * (size_t)c);
    for (int oy = 0; oy < oh; oy++) {
        int iy0 = oy * stride - pad;
        int ky_lo = iy0 < 0 ? -iy0 : 0, ky_hi = iy0 + kh > h ? h - iy0 : kh;
        for (int ox = 0; ox < ow; ox++) {
            int ix0 = ox * stride - pad;
            int kx_lo = ix0 < 0 ? -ix0 : 0, kx_hi = ix0 + kw > w ? w - ix0 : kw;
            float *acc = y + ((size_t)oy * ow + ox) * c;
            memcpy(acc, b, sizeof(float) * (size_t)c);
            for (int ky = ky_lo; ky < ky_hi; ky++) {
                for (int kx = kx_lo; kx < kx_hi; kx++) {
                    const float *xp = x + ((size_t)(iy0 + ky) * w + (ix0 + kx)) * c;
                    const float *kp = k + ((size_t)ky * kw + kx) * c;
                    for (int ci = 0; ci < c; ci++) acc[ci] += xp[ci] * kp[ci];
                }
            }
            nn_act_apply(acc, (size_t)c, act);
            if (csum)
                for (int ci = 0; ci < c; ci++) csum[ci] += acc[ci];
        }
    }
}

void nn_layernorm(float *x, long rows, int c, float eps, const float *weight, const float *bias)
{
    for (long r = 0; r < rows; r++) {
        float *v = x + (size_t)r * c;
        float s = 0.0f;
        for (int i = 0; i < c; i++) s += v[i];
        float mean = s / (float)c;
        float q = 0.0f;
        for (int i = 0; i < c; i++) {
            float d = v[i] - mean;
            q += d * d;
        }
        float inv = 1.0f / sqrtf(q / (float)c + eps);
        if (weight && bias) {
            for (int i = 0; i < c; i++) v[i] = (v[i] - mean) * inv * weight[i] + bias[i];
        } else {
            for (int i = 0; i < c; i++) v[i] = (v[i] - mean) * inv;
        }
    }
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
