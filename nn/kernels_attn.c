/* nn/kernels_attn.c: the kernels declared in nn/kernels_attn.h (attention, softmax, tanh-GELU, padding,
 * average pooling). Exactness first, as nn/kernels.c: exp as nn_expf (~2e-7 relative, on native vectors), sums in float
 * in the order torch uses for short rows. Does not decide layout or fusion (nn/arch_maxvit.c does). */
#include "nn/kernels_attn.h"

#include <math.h>
#include <string.h>

#include "mc.h"
#include "nn/kernels.h"
#include "nn/vec.h"

void nn_gelu_tanh_apply(float *x, size_t n)
{
    /* 0.5 x (1 + tanh(u)) = x / (1 + e^{-2u}): the same function without the cancellation of 1 + tanh(u) for
     * negative u, so relative accuracy holds over the whole range (nn_expf clamps its argument) */
    const float k0 = 0.7978845608028654f, k1 = 0.044715f;
    size_t i = 0;
    for (; i + VA <= n; i += VA) {
        vfa v = vload(x + i);
        vfa u = k0 * (v + k1 * v * v * v);
        vstore(x + i, v / (1.0f + vexp(-2.0f * u)));
    }
    for (; i < n; i++) {
        float v = x[i];
        float u = k0 * (v + k1 * v * v * v);
        x[i] = v / (1.0f + nn_expf(-2.0f * u));
    }
}

/* The max and the sum on native vectors (VA partial sums; GCC keeps float reductions scalar without -ffast-math,
 * and the sum of a 49-token row was then a chain of 49 dependent adds) */
void nn_softmax_rows(float *x, long rows, int n)
{
    for (long r = 0; r < rows; r++) {
        float *v = x + (size_t)r * n;
        int i = 0;
        float mx = v[0];
        if (n >= VA) {
            vfa m = vload(v);
            for (i = VA; i + VA <= n; i += VA) {
                vfa t = vload(v + i);
                m = vselect(t > m, t, m);
            }
            for (int l = 0; l < VA; l++) mx = m[l] > mx ? m[l] : mx;
        }
        for (; i < n; i++) mx = v[i] > mx ? v[i] : mx;
        vfa acc = {0};
        for (i = 0; i + VA <= n; i += VA) {
            vfa e = vexp(vload(v + i) - mx);
            vstore(v + i, e);
            acc += e;
        }
        float s = vhsum(acc);
        for (; i < n; i++) s += (v[i] = nn_expf(v[i] - mx));
        float inv = 1.0f / s;
        for (i = 0; i < n; i++) v[i] *= inv;
    }
}

void nn_pad_nhwc(const float *x, int h, int w, int c, int top, int left, int bottom, int right, float *y)
{
    const int ow = w + left + right, oh = h + top + bottom;
    const size_t row = (size_t)ow * c;
    memset(y, 0, sizeof(float) * row * (size_t)top);
    for (int r = 0; r < h; r++) {
        float *o = y + (size_t)(r + top) * row;
        memset(o, 0, sizeof(float) * (size_t)left * c);
        memcpy(o + (size_t)left * c, x + (size_t)r * w * c, sizeof(float) * (size_t)w * c);
        memset(o + (size_t)(left + w) * c, 0, sizeof(float) * (size_t)right * c);
    }
    memset(y + (size_t)(top + h) * row, 0, sizeof(float) * row * (size_t)(oh - top - h));
}

void nn_avgpool2(const float *x, int h, int w, int c, float *y)
{
    MC_ASSERT(h % 2 == 0 && w % 2 == 0);
    const int oh = h / 2, ow = w / 2;
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
            const float *a = x + ((size_t)(2 * oy) * w + 2 * ox) * c, *b = a + c;
            const float *d = a + (size_t)w * c, *e = d + c;
            float *o = y + ((size_t)oy * ow + ox) * c;
            for (int i = 0; i < c; i++) o[i] = (a[i] + b[i] + d[i] + e[i]) * 0.25f;
        }
}

void nn_partition_window(int h, int w, int p, int *pix)
{
    MC_ASSERT(h % p == 0 && w % p == 0);
    const int nx = w / p, ny = h / p;
    int s = 0;
    for (int wy = 0; wy < ny; wy++)
        for (int wx = 0; wx < nx; wx++, s++)
            for (int a = 0; a < p; a++)
                for (int b = 0; b < p; b++)
                    pix[(size_t)s * p * p + a * p + b] = (wy * p + a) * w + wx * p + b;
}

void nn_partition_grid(int h, int w, int p, int *pix)
{
    MC_ASSERT(h % p == 0 && w % p == 0);
    const int gh = h / p, gw = w / p; /* spacing between a set's tokens */
    int s = 0;
    for (int gy = 0; gy < gh; gy++)
        for (int gx = 0; gx < gw; gx++, s++)
            for (int a = 0; a < p; a++)
                for (int b = 0; b < p; b++)
                    pix[(size_t)s * p * p + a * p + b] = (a * gh + gy) * w + b * gw + gx;
}

size_t nn_attn_scratch(int ntok, int heads, int dh)
{
    (void)heads;
    return (size_t)3 * ntok * dh + (size_t)ntok * ntok + (size_t)ntok * dh;
}

void nn_attn_sets(const float *qkv, int nsets, int ntok, const int *pix, int heads, int dh, int head_first,
                  const float *bias, float *scratch, float *out)
{
    const int C = heads * dh, ld = 3 * C;
    const float scale = 1.0f / sqrtf((float)dh);
    float *q = scratch, *k = q + (size_t)ntok * dh, *vt = k + (size_t)ntok * dh;
    float *s = vt + (size_t)ntok * dh, *o = s + (size_t)ntok * ntok;
    for (int set = 0; set < nsets; set++) {
        const int *pp = pix + (size_t)set * ntok;
        for (int h = 0; h < heads; h++) {
            const int qo = head_first ? h * 3 * dh : h * dh;
            const int ko = head_first ? qo + dh : C + h * dh;
            const int vo = head_first ? qo + 2 * dh : 2 * C + h * dh;
            for (int t = 0; t < ntok; t++) {
                const float *r = qkv + (size_t)pp[t] * ld;
                for (int d = 0; d < dh; d++) {
                    q[(size_t)t * dh + d] = r[qo + d] * scale; /* timm scales q before q @ k^T */
                    k[(size_t)t * dh + d] = r[ko + d];
                    vt[(size_t)d * ntok + t] = r[vo + d];
                }
            }
            const float *bh = bias + (size_t)h * ntok * ntok;
            nn_gemm_fused(ntok, ntok, dh, q, dh, k, dh, NULL, bh, ntok, 0, NN_ACT_NONE, s, ntok);
            nn_softmax_rows(s, ntok, ntok);
            nn_gemm_fused(ntok, dh, ntok, s, ntok, vt, ntok, NULL, NULL, 0, 0, NN_ACT_NONE, o, dh);
            for (int t = 0; t < ntok; t++)
                memcpy(out + (size_t)pp[t] * C + h * dh, o + (size_t)t * dh, sizeof(float) * (size_t)dh);
        }
    }
}
