/* nn/winograd.c: 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray,
 * "Fast Algorithms for Convolutional Neural Networks", 2015): each 2x2 block of output pixels comes from
 * a 4x4 input tile as Y = A^T [ (G g G^T) . (B^T d B) ] A, so the products over input channels become 16
 * independent GEMMs, one per position xi of the 4x4 transformed tile, of (tiles x cin) by (cin x cout):
 * 16 multiply-adds per 2x2 outputs and channel pair instead of 36 (2.25x fewer). The transforms of F(2x2, 3x3)
 * have coefficients 0, +-1 and +-1/2 only, so the result stays within a few float roundings of the direct
 * sum (F(4x4, 3x3), 4x fewer, amplifies rounding about tenfold: not used). NHWC throughout, so every
 * transform is a loop over contiguous channels that GCC vectorises. */
#include <cblas.h>
#include <string.h>

#include "mc.h"
#include "nn/kernels.h"

/* Channels go VW at a time in GCC vector extensions (16 on AVX-512, 8 on AVX2, 4 otherwise); callers keep
 * cin and cout multiples of 16 (nn_wino23_fits). */
#if defined(__AVX512F__)
#define VW 16
#elif defined(__AVX__)
#define VW 8
#else
#define VW 4
#endif
typedef float wv __attribute__((vector_size(VW * 4)));

static inline wv ld(const float *p)
{
    wv v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void st(float *p, wv v)
{
    memcpy(p, &v, sizeof v);
}

int nn_wino23_fits(int cin, int cout)
{
    return cin >= 16 && cout >= 16 && cin % 16 == 0 && cout % 16 == 0;
}

/* U[xi][o][i] = (G g G^T)[xi] for the 3x3 kernel g of output o and input i; w is [cout][3][3][cin]. */
void nn_wino23_weights(const float *w, int cout, int cin, float *u)
{
    const size_t plane = (size_t)cout * cin;
    for (int o = 0; o < cout; o++) {
        const float *wo = w + (size_t)o * 9 * cin;
        float *uo = u + (size_t)o * cin;
        for (int i = 0; i < cin; i += VW) {
            wv g[3][3], t[4][3];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) g[ky][kx] = ld(wo + (size_t)(ky * 3 + kx) * cin + i);
            for (int kx = 0; kx < 3; kx++) { /* G g: rows g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2 */
                t[0][kx] = g[0][kx];
                t[1][kx] = 0.5f * (g[0][kx] + g[1][kx] + g[2][kx]);
                t[2][kx] = 0.5f * (g[0][kx] - g[1][kx] + g[2][kx]);
                t[3][kx] = g[2][kx];
            }
            for (int a = 0; a < 4; a++) { /* (G g) G^T, the same on columns */
                st(uo + (size_t)(a * 4 + 0) * plane + i, t[a][0]);
                st(uo + (size_t)(a * 4 + 1) * plane + i, 0.5f * (t[a][0] + t[a][1] + t[a][2]));
                st(uo + (size_t)(a * 4 + 2) * plane + i, 0.5f * (t[a][0] - t[a][1] + t[a][2]));
                st(uo + (size_t)(a * 4 + 3) * plane + i, t[a][2]);
            }
        }
    }
}

/* The 4x4 x c input patch of a tile whose top-left input pixel is (iy0, ix0), zeros outside the image. */
static void load_patch(const float *xi, int h, int w, int c, int iy0, int ix0, float *patch)
{
    const int xlo = ix0 < 0 ? -ix0 : 0, xhi = ix0 + 4 > w ? w - ix0 : 4;
    for (int r = 0; r < 4; r++) {
        float *dst = patch + (size_t)r * 4 * c;
        const int iy = iy0 + r;
        if (iy < 0 || iy >= h || xhi <= xlo) {
            memset(dst, 0, sizeof(float) * 4 * (size_t)c);
            continue;
        }
        if (xlo > 0) memset(dst, 0, sizeof(float) * (size_t)xlo * c);
        memcpy(dst + (size_t)xlo * c, xi + ((size_t)iy * w + ix0 + xlo) * c, sizeof(float) * (size_t)(xhi - xlo) * c);
        if (xhi < 4) memset(dst + (size_t)xhi * c, 0, sizeof(float) * (size_t)(4 - xhi) * c);
    }
}

long nn_wino23_tiles(int n, int oh, int ow)
{
    return (long)n * ((oh + 1) / 2) * ((ow + 1) / 2);
}

/* Tiles per block: the transformed input and output of a block (16 x T x (cin + cout) floats) near 2 MB,
 * and at least 128 tiles so each of the 16 GEMMs has rows enough for OpenBLAS. */
int nn_wino23_block(int cin, int cout, long tiles)
{
    long t = (1L << 19) / (16L * (cin + cout));
    if (t < 128) t = 128;
    if (t > tiles) t = tiles;
    return (int)t;
}

void nn_wino23_conv(const float *x, int n, int h, int w, int cin, const float *u, int cout, int pad, int oh, int ow,
                    const float *bias, const float *res, nn_act act, float *y, int T, float *v, float *m,
                    float *scr)
{
    const int tx = (ow + 1) / 2, ty = (oh + 1) / 2;
    const long per_img = (long)tx * ty, tiles = (long)n * per_img;
    float *patch = scr, *out = scr + 16 * (size_t)cin; /* 16 x cin, then 4 x cout */
    for (long t0 = 0; t0 < tiles; t0 += T) {
        const int nt = tiles - t0 < T ? (int)(tiles - t0) : T;
        const size_t vs = (size_t)nt * cin, ms = (size_t)nt * cout; /* one xi plane of V, of M */
        for (int t = 0; t < nt; t++) { /* V = B^T d B */
            const long g = t0 + t, img = g / per_img, rem = g % per_img;
            const int iy0 = (int)(rem / tx) * 2 - pad, ix0 = (int)(rem % tx) * 2 - pad;
            load_patch(x + (size_t)img * h * w * cin, h, w, cin, iy0, ix0, patch);
            float *vt = v + (size_t)t * cin;
            for (int i = 0; i < cin; i += VW) {
                wv d[4][4], e[4][4];
                for (int r = 0; r < 4; r++)
                    for (int q = 0; q < 4; q++) d[r][q] = ld(patch + (size_t)(r * 4 + q) * cin + i);
                for (int q = 0; q < 4; q++) { /* B^T d: rows d0-d2, d1+d2, d2-d1, d1-d3 */
                    e[0][q] = d[0][q] - d[2][q];
                    e[1][q] = d[1][q] + d[2][q];
                    e[2][q] = d[2][q] - d[1][q];
                    e[3][q] = d[1][q] - d[3][q];
                }
                for (int a = 0; a < 4; a++) { /* (B^T d) B, the same on columns */
                    st(vt + (size_t)(a * 4 + 0) * vs + i, e[a][0] - e[a][2]);
                    st(vt + (size_t)(a * 4 + 1) * vs + i, e[a][1] + e[a][2]);
                    st(vt + (size_t)(a * 4 + 2) * vs + i, e[a][2] - e[a][1]);
                    st(vt + (size_t)(a * 4 + 3) * vs + i, e[a][1] - e[a][3]);
                }
            }
        }
        for (int xi = 0; xi < 16; xi++) /* M[xi] = V[xi] U[xi]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nt, cout, cin, 1.0f, v + xi * vs, cin,
                        u + (size_t)xi * cout * cin, cin, 0.0f, m + xi * ms, cout);
        for (int t = 0; t < nt; t++) { /* Y = A^T M A, + bias, + residual, activation */
            const long g = t0 + t, img = g / per_img, rem = g % per_img;
            const int oy0 = (int)(rem / tx) * 2, ox0 = (int)(rem % tx) * 2;
            const float *mt = m + (size_t)t * cout;
            for (int o = 0; o < cout; o += VW) {
                wv s[2][4];
                for (int b = 0; b < 4; b++) { /* A^T M: rows m0+m1+m2, m1-m2-m3 */
                    const wv m0 = ld(mt + (size_t)b * ms + o), m1 = ld(mt + (size_t)(4 + b) * ms + o);
                    const wv m2 = ld(mt + (size_t)(8 + b) * ms + o), m3 = ld(mt + (size_t)(12 + b) * ms + o);
                    s[0][b] = m0 + m1 + m2;
                    s[1][b] = m1 - m2 - m3;
                }
                const wv bo = bias ? ld(bias + o) : (wv){0};
                st(out + o, bo + (s[0][0] + s[0][1] + s[0][2]));
                st(out + cout + o, bo + (s[0][1] - s[0][2] - s[0][3]));
                st(out + 2 * (size_t)cout + o, bo + (s[1][0] + s[1][1] + s[1][2]));
                st(out + 3 * (size_t)cout + o, bo + (s[1][1] - s[1][2] - s[1][3]));
            }
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++) {
                    const int oy = oy0 + dy, ox = ox0 + dx;
                    if (oy >= oh || ox >= ow) continue;
                    const size_t pix = ((size_t)img * oh + oy) * ow + ox;
                    float *yp = y + pix * cout;
                    const float *op = out + (size_t)(dy * 2 + dx) * cout;
                    if (res) {
                        const float *rp = res + pix * cout;
                        for (int o = 0; o < cout; o++) yp[o] = op[o] + rp[o];
                    } else {
                        memcpy(yp, op, sizeof(float) * (size_t)cout);
                    }
                    if (act != NN_ACT_NONE) nn_act_apply(yp, (size_t)cout, act);
                }
        }
    }
}
