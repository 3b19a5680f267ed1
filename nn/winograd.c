/* nn/winograd.c: 3x3 stride-1 convolution by Winograd's minimal filtering F(m x m, 3x3) (Lavin and Gray,
 * "Fast Algorithms for Convolutional Neural Networks", 2015): each m x m block of output pixels comes from an
 * a x a input tile (a = m + 2) as Y = A^T [ (G g G^T) . (B^T d B) ] A, so the products over input channels
 * become a^2 independent GEMMs, one per position xi of the transformed tile, of (tiles x cin) by
 * (cin x cout). F(2x2, 3x3): 16 multiply-adds per 2x2 outputs and channel pair instead of 36 (2.25x fewer),
 * coefficients 0, +-1, +-1/2, so within a few roundings of the direct sum. F(4x4, 3x3): 36 per 4x4 outputs
 * instead of 144 (4x fewer), with coefficients up to 8 and 1/24 that amplify rounding several times over.
 * NHWC throughout, so every transform is a loop over contiguous channels in GCC vector extensions; the
 * products in a kernel of this file's own (below). */
#include <string.h>

#include "mc.h"
#include "nn/kernels.h"
#include "nn/vec.h"

/* Channels go VA at a time (nn/vec.h: 16 on AVX-512, 8 on AVX2, 4 otherwise), the last chunk of a channel
 * count that is not a multiple of VA through a partial load and store. */

/* n (1..VA) floats at p, zeros after. The chunk functions below are inlined twice, with n == VA (one vector
 * load) and with the remainder. */
__attribute__((always_inline)) static inline vfa ld(const float *p, const int n)
{
    vfa v = {0};
    if (n == VA)
        memcpy(&v, p, sizeof v);
    else
        memcpy(&v, p, sizeof(float) * (size_t)n);
    return v;
}

__attribute__((always_inline)) static inline void st(float *p, vfa v, const int n)
{
    if (n == VA)
        memcpy(p, &v, sizeof v);
    else
        memcpy(p, &v, sizeof(float) * (size_t)n);
}


/* The transforms (Lavin and Gray's matrices for the points 0, +-1 (F2) and 0, +-1, +-2 (F4)). */
static const float BT2[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
static const float G2[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
static const float AT2[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
static const float BT4[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
static const float G4[6][3] = {{1.0f / 4, 0, 0},
                               {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                               {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                               {1.0f / 24, 1.0f / 12, 1.0f / 6},
                               {1.0f / 24, -1.0f / 12, 1.0f / 6},
                               {0, 0, 1}};
static const float AT4[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};

#define BT(m, i, j) ((m) == 2 ? BT2[i][j] : BT4[i][j])
#define GG(m, i, j) ((m) == 2 ? G2[i][j] : G4[i][j])
#define AT(m, i, j) ((m) == 2 ? AT2[i][j] : AT4[i][j])

/* r = sum_j c_j x_j over the nonzero c_j of a constant row (the loops unroll, so the zeros vanish) */
#define DOT(r, n, coef, x)                                                                                         \
    do {                                                                                                           \
        r = (vfa){0};                                                                                               \
        _Pragma("GCC unroll 8") for (int j_ = 0; j_ < (n); j_++) if ((coef) != 0.0f) r += (coef) * (x);           \
    } while (0)

int nn_wino_pick(int cin, int cout)
{
    if (cin < 16 || cout < 16 || cin % 8 || cout % 8) return 0;
    /* F(4x4) on layers of 128 to 256 channels in and out. Wider, its transformed weights (36 cin cout floats
     * of scratch) would outgrow what F(2x2) needs for ResNet's widest layers (16 x 512 x 512); narrower, its
     * rounding showed: on EfficientNetV2-S (24-64 channels in its fused stages) F(4x4) raised the model's
     * fp32 noise to 3.5e-5 (greyscale model against colour model on a grey image, test_model_errors_encoders2)
     * where PyTorch's own is 7.8e-6 and F(2x2)'s 8.8e-6. */
    return cin >= 128 && cout >= 128 && (long)cin * cout <= 256L * 256 ? 4 : 2;
}

/* The products M[xi] = V[xi] U[xi]^T go through the register-blocked kernel of nn/panel.h rather than
 * sgemm: per call sgemm packs both operands, and with blocks of tiles small enough to keep V and M near the
 * core that packing was about a seventh of the layer (each position's weights repacked for every block). Here
 * neither operand is packed: V stays as the input transform writes it (one row of cin values per tile), and
 * U is written by the weight transform directly in the kernel's layout, NR output channels side by side per
 * input channel, in panels of cin x NR (the last one zero-padded), so the kernel reads both as they lie. */
#include "nn/panel.h"

static int padded_cout(int cout) { return (cout + NR - 1) / NR * NR; }

/* U for output channels o.. (VA of them, zeros from cout on) of input channel i: (G g G^T), each of the a^2
 * positions stored as VA floats of the panel row for i */
__attribute__((always_inline)) static inline void weights_chunk(const int m, const float *w, int cin, int cout,
                                                                float *u, size_t plane, int o, int i)
{
    const int a = m + 2;
    vfa g[3][3], t[6][3];
    for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++) {
            vfa x = {0};
            for (int l = 0; l < VA && o + l < cout; l++) x[l] = w[((size_t)(o + l) * 9 + ky * 3 + kx) * cin + i];
            g[ky][kx] = x;
        }
#pragma GCC unroll 6
    for (int r = 0; r < a; r++) /* G g */
        for (int kx = 0; kx < 3; kx++) DOT(t[r][kx], 3, GG(m, r, j_), g[j_][kx]);
    float *dst = u + (size_t)(o / NR) * NR * cin + (size_t)i * NR + o % NR;
#pragma GCC unroll 6
    for (int r = 0; r < a; r++) /* (G g) G^T */
#pragma GCC unroll 6
        for (int q = 0; q < a; q++) {
            vfa v;
            DOT(v, 3, GG(m, q, j_), t[r][j_]);
            memcpy(dst + (size_t)(r * a + q) * plane, &v, sizeof v);
        }
}

__attribute__((always_inline)) static inline void weights_m(const int m, const float *w, int cout, int cin,
                                                            float *u)
{
    const int cp = padded_cout(cout);
    const size_t plane = (size_t)cp * cin;
    for (int o = 0; o < cp; o += VA)
        for (int i = 0; i < cin; i++) weights_chunk(m, w, cin, cout, u, plane, o, i);
}

void nn_wino_weights(int m, const float *w, int cout, int cin, float *u)
{
    MC_ASSERT(m == 2 || m == 4);
    if (m == 2)
        weights_m(2, w, cout, cin, u);
    else
        weights_m(4, w, cout, cin, u);
}

/* mm[nt x cout] = v[nt x cin] times the packed u of one position. The sum over input channels goes KC at a
 * time into mm, fewer roundings in a row (with all 256 channels in one run, F(4x4)'s error at 256 channels
 * rose from 2.7e-6 to 1.2e-5 in test_kernels; 6.5e-6 in runs of 128). For each run, MR tiles' rows of V are
 * copied into a panel of the kernel's order (MR x KC floats, in the first-level cache) and multiplied by every
 * panel of U's run (KC x cout, in the second-level cache): V's rows stay as the input transform wrote them,
 * one after another, and the copy is used cout / NR times. */
static void wino_gemm(int nt, int cin, int cout, const float *v, const float *u, float *mm)
{
    float pa[MR * KC] __attribute__((aligned(64)));
    for (int k0 = 0; k0 < cin; k0 += KC) {
        const int kc = cin - k0 < KC ? cin - k0 : KC, add = k0 > 0;
        for (int t = 0; t < nt; t += MR) {
            const int mr = nt - t < MR ? nt - t : MR;
            panel_copy(mr, kc, v + (size_t)t * cin + k0, (size_t)cin, pa);
            float *c = mm + (size_t)t * cout;
            const int ahead = t + 2 * MR <= nt;
            panel_ahead ah = {0};
            if (ahead)
                ah = (panel_ahead){v + (size_t)(t + MR) * cin + k0, add ? NULL : c + (size_t)MR * cout, NULL,
                                   (size_t)cin};
            if (mr == MR)
                panel_row(MR, kc, pa, u, cin, k0, 0, cout, cout, c, cout, add, t == 0, NULL, NULL, 0, 0,
                          ahead ? &ah : NULL);
            else
                panel_tail(mr, kc, pa, u, cin, k0, 0, cout, cout, c, cout, add, NULL, NULL, 0, 0);
        }
    }
}

/* The a x a x c input patch of a tile whose top-left input pixel is (iy0, ix0), zeros outside the image. */
static void load_patch(const float *xi, int h, int w, int c, int a, int iy0, int ix0, float *patch)
{
    const int xlo = ix0 < 0 ? -ix0 : 0, xhi = ix0 + a > w ? w - ix0 : a;
    for (int r = 0; r < a; r++) {
        float *dst = patch + (size_t)r * a * c;
        const int iy = iy0 + r;
        if (iy < 0 || iy >= h || xhi <= xlo) {
            memset(dst, 0, sizeof(float) * (size_t)a * c);
            continue;
        }
        if (xlo > 0) memset(dst, 0, sizeof(float) * (size_t)xlo * c);
        memcpy(dst + (size_t)xlo * c, xi + ((size_t)iy * w + ix0 + xlo) * c, sizeof(float) * (size_t)(xhi - xlo) * c);
        if (xhi < a) memset(dst + (size_t)xhi * c, 0, sizeof(float) * (size_t)(a - xhi) * c);
    }
}

long nn_wino_tiles(int m, int n, int oh, int ow)
{
    return (long)n * ((oh + m - 1) / m) * ((ow + m - 1) / m);
}

/* Tiles per block: the transformed input and output of a block (a^2 x T x (cin + cout) floats) near 2 MB,
 * and at least 128 tiles so that U, read once per block, is used by enough rows; a multiple of the kernel's
 * MR (so at least 140 on AVX-512, 132 otherwise). */
void nn_wino_sizes(int m, int cin, int cout, long tiles, nn_wino_size *z)
{
    const long a2 = (long)(m + 2) * (m + 2);
    long t = (1L << 19) / (a2 * (cin + cout)) / MR * MR, tmin = (128 + MR - 1) / MR * MR;
    if (t < tmin) t = tmin;
    if (t > tiles) t = tiles;
    z->T = (int)t;
    z->u = (size_t)a2 * (size_t)padded_cout(cout) * cin;
    z->v = (size_t)a2 * t * cin;
    z->mm = (size_t)a2 * t * cout;
    z->scr = (size_t)a2 * cin + (size_t)m * m * cout;
}

/* V for input channels i.. (nv of them) of one tile (rows rs apart, pixels cin apart): B^T d B */
__attribute__((always_inline)) static inline void input_chunk(const int m, const float *src, size_t rs, int cin,
                                                              float *vt, size_t vs, int i, const int nv)
{
    const int a = m + 2;
    vfa d[6][6], e[6][6];
    for (int r = 0; r < a; r++)
        for (int q = 0; q < a; q++) d[r][q] = ld(src + r * rs + (size_t)q * cin + i, nv);
#pragma GCC unroll 6
    for (int r = 0; r < a; r++)
#pragma GCC unroll 6
        for (int q = 0; q < a; q++) DOT(e[r][q], a, BT(m, r, j_), d[j_][q]);
#pragma GCC unroll 6
    for (int r = 0; r < a; r++)
#pragma GCC unroll 6
        for (int q = 0; q < a; q++) {
            vfa s;
            DOT(s, a, BT(m, q, j_), e[r][j_]);
            st(vt + (size_t)(r * a + q) * vs, s, nv);
        }
}

/* The m x m outputs of output channels o.. (nv of them) of one tile: A^T M A + bias, + res where res is
 * given, then ReLU where relu is set; pixels ps apart and rows rs apart in y and in res. */
__attribute__((always_inline)) static inline void output_chunk(const int m, const float *mt, size_t ms,
                                                               const float *bias, float *y, const float *res,
                                                               size_t rs, size_t ps, int relu, int o, const int nv)
{
    const int a = m + 2;
    vfa q[6][6], s[4][6];
    for (int r = 0; r < a; r++)
        for (int c = 0; c < a; c++) q[r][c] = ld(mt + (size_t)(r * a + c) * ms + o, nv);
#pragma GCC unroll 4
    for (int r = 0; r < m; r++)
#pragma GCC unroll 6
        for (int c = 0; c < a; c++) DOT(s[r][c], a, AT(m, r, j_), q[j_][c]);
    const vfa bo = bias ? ld(bias + o, nv) : (vfa){0};
#pragma GCC unroll 4
    for (int r = 0; r < m; r++)
#pragma GCC unroll 4
        for (int c = 0; c < m; c++) {
            vfa yv;
            DOT(yv, a, AT(m, c, j_), s[r][j_]);
            yv += bo;
            const size_t at = r * rs + c * ps + o;
            if (res) yv += ld(res + at, nv);
            if (relu) yv = vselect(yv > 0, yv, (vfa){0});
            st(y + at, yv, nv);
        }
}

/* one tile's outputs for all channels; chunk calls inlined with constant flags */
__attribute__((always_inline)) static inline void output_tile(const int m, const float *mt, size_t ms,
                                                              const float *bias, float *y, const float *res,
                                                              size_t rs, size_t ps, const int relu, int cout)
{
    for (int o = 0; o < cout; o += VA) {
        if (cout - o >= VA)
            output_chunk(m, mt, ms, bias, y, res, rs, ps, relu, o, VA);
        else
            output_chunk(m, mt, ms, bias, y, res, rs, ps, relu, o, cout - o);
    }
}

__attribute__((always_inline)) static inline void conv_m(const int m, const float *x, int n, int h, int w, int cin,
                                                         const float *u, int cout, int pad, int oh, int ow,
                                                         const float *bias, const float *res, nn_act act, float *y,
                                                         int T, float *v, float *mm, float *scr)
{
    const int a = m + 2, a2 = a * a;
    const int tx = (ow + m - 1) / m, ty = (oh + m - 1) / m;
    const long per_img = (long)tx * ty, tiles = (long)n * per_img;
    const size_t up = (size_t)padded_cout(cout) * cin; /* one xi plane of U */
    float *patch = scr, *out = scr + (size_t)a2 * cin; /* a^2 x cin, then m^2 x cout */
    for (long t0 = 0; t0 < tiles; t0 += T) {
        const int nt = tiles - t0 < T ? (int)(tiles - t0) : T;
        const size_t vs = (size_t)nt * cin, ms = (size_t)nt * cout; /* one xi plane of V, of M */
        for (int t = 0; t < nt; t++) { /* V = B^T d B */
            const long g = t0 + t, img = g / per_img, rem = g % per_img;
            const int iy0 = (int)(rem / tx) * m - pad, ix0 = (int)(rem % tx) * m - pad;
            /* a tile inside the image is read where it lies, one at an edge from a zero-padded copy */
            const float *src = x + (size_t)img * h * w * cin;
            size_t rs = (size_t)w * cin;
            if (iy0 >= 0 && ix0 >= 0 && iy0 + a <= h && ix0 + a <= w) {
                src += ((size_t)iy0 * w + ix0) * cin;
            } else {
                load_patch(src, h, w, cin, a, iy0, ix0, patch);
                src = patch;
                rs = (size_t)a * cin;
            }
            float *vt = v + (size_t)t * cin;
            for (int i = 0; i < cin; i += VA) {
                if (cin - i >= VA)
                    input_chunk(m, src, rs, cin, vt + i, vs, i, VA);
                else
                    input_chunk(m, src, rs, cin, vt + i, vs, i, cin - i);
            }
        }
        for (int xi = 0; xi < a2; xi++) /* M[xi] = V[xi] U[xi]^T */
            wino_gemm(nt, cin, cout, v + xi * vs, u + xi * up, mm + xi * ms);
        for (int t = 0; t < nt; t++) { /* Y = A^T M A, + bias, + residual, activation */
            const long g = t0 + t, img = g / per_img, rem = g % per_img;
            const int oy0 = (int)(rem / tx) * m, ox0 = (int)(rem % tx) * m;
            const float *mt = mm + (size_t)t * cout;
            const size_t pix0 = ((size_t)img * oh + oy0) * ow + ox0;
            if (oy0 + m <= oh && ox0 + m <= ow && (act == NN_ACT_NONE || act == NN_ACT_RELU)) {
                /* a whole tile: straight into y with the residual and ReLU */
                const float *rp = res ? res + pix0 * cout : NULL;
                if (act == NN_ACT_RELU)
                    output_tile(m, mt, ms, bias, y + pix0 * cout, rp, (size_t)ow * cout, cout, 1, cout);
                else
                    output_tile(m, mt, ms, bias, y + pix0 * cout, rp, (size_t)ow * cout, cout, 0, cout);
                continue;
            }
            output_tile(m, mt, ms, bias, out, NULL, (size_t)m * cout, cout, 0, cout);
            for (int dy = 0; dy < m; dy++)
                for (int dx = 0; dx < m; dx++) {
                    const int oy = oy0 + dy, ox = ox0 + dx;
                    if (oy >= oh || ox >= ow) continue;
                    const size_t pix = ((size_t)img * oh + oy) * ow + ox;
                    float *yp = y + pix * cout;
                    const float *op = out + (size_t)(dy * m + dx) * cout;
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

void nn_wino_conv(int m, const float *x, int n, int h, int w, int cin, const float *u, int cout, int pad, int oh,
                  int ow, const float *bias, const float *res, nn_act act, float *y, int T, float *v, float *mm,
                  float *scr)
{
    MC_ASSERT(m == 2 || m == 4);
    if (m == 2)
        conv_m(2, x, n, h, w, cin, u, cout, pad, oh, ow, bias, res, act, y, T, v, mm, scr);
    else
        conv_m(4, x, n, h, w, cin, u, cout, pad, oh, ow, bias, res, act, y, T, v, mm, scr);
}
