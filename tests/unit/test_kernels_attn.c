/* tests/unit/test_kernels_attn.c: the attention kernels (nn/kernels_attn.c) against plain double-precision
 * references written here: tanh-GELU over [-30, 30], row softmax, zero padding, 2x2 average pooling, the
 * window and grid partition orders (timm's view/permute written as index formulas), and multi-head attention
 * over token sets in both q/k/v layouts, with a bias. Tolerances are stated per check. */
#include <math.h>

#include "mc.h"
#include "nn/kernels.h"
#include "nn/kernels_attn.h"
#include "rng.h"

static int failures, checks;

static void check(int ok, const char *what, double got, double tol)
{
    checks++;
    printf("%s %-62s err %.3g (tol %.3g)\n", ok ? "ok  " : "FAIL", what, got, tol);
    if (!ok) failures++;
}

static uint32_t rng = 88172645u;
static float frand(void) /* uniform in [-1, 1) */
{
    return (float)(unit_xorshift32(&rng) >> 8) / 8388608.0f - 1.0f;
}

static void test_gelu_tanh(void)
{
    /* each value alone (the scalar code) and within the whole array (native vectors) */
    enum { NX = 600001 };
    float *all = malloc(sizeof(float) * NX);
    for (int i = 0; i < NX; i++) all[i] = (float)(i - NX / 2) * 1e-4f;
    nn_gelu_tanh_apply(all, NX);
    double worst = 0;
    for (int i = -300000; i <= 300000; i++) {
        float x = (float)i * 1e-4f, y = x;
        nn_gelu_tanh_apply(&y, 1);
        /* 0.5 x (1 + tanh(u)) written as x / (1 + e^{-2u}): in double, 1 + tanh(u) itself cancels below u ~
         * -18 */
        double r = x / (1.0 + exp(-2.0 * 0.7978845608028654 * (x + 0.044715 * (double)x * x * x)));
        double e = fmax(fabs(y - r), fabs(all[i + NX / 2] - r)) / fmax(fabs(r), 1e-30);
        if (fabs(r) > 1e-30 && e > worst) worst = e;
    }
    free(all);
    /* u is a float: in the far negative tail e^{-2u} turns its rounding into ~2|u| ulp of relative error (u ~
     * -40 where the value is ~1e-30), the same in torch's float evaluation */
    check(worst < 2e-5, "tanh-GELU relative error on [-30, 30] (step 1e-4)", worst, 2e-5);
}

/* rows of n logits: 49 (7x7 windows: vectors and a tail), 64 (8x8: vectors only), 5 (shorter than a vector) */
static void test_softmax_n(int N)
{
    enum { R = 7, NMAX = 64 };
    float x[R * NMAX];
    double worst = 0;
    for (int i = 0; i < R * N; i++) x[i] = 20.0f * frand();
    double ref[R * NMAX];
    for (int r = 0; r < R; r++) {
        double mx = -1e300, s = 0;
        for (int i = 0; i < N; i++) mx = fmax(mx, x[r * N + i]);
        for (int i = 0; i < N; i++) s += exp(x[r * N + i] - mx);
        for (int i = 0; i < N; i++) ref[r * N + i] = exp(x[r * N + i] - mx) / s;
    }
    nn_softmax_rows(x, R, N);
    for (int i = 0; i < R * N; i++) worst = fmax(worst, fabs(x[i] - ref[i]));
    char what[80];
    snprintf(what, sizeof what, "softmax rows of %d, logits in [-20, 20]: max abs error", N);
    check(worst < 1e-6, what, worst, 1e-6);
}

static void test_softmax(void)
{
    test_softmax_n(49);
    test_softmax_n(64);
    test_softmax_n(5);
}

static void test_pad_pool(void)
{
    enum { H = 4, W = 6, C = 3 };
    float x[H * W * C], y[(H + 1) * (W + 3) * C], p[(H / 2) * (W / 2) * C];
    for (int i = 0; i < H * W * C; i++) x[i] = frand();
    nn_pad_nhwc(x, H, W, C, 0, 2, 1, 1, y);
    double bad = 0;
    for (int r = 0; r < H + 1; r++)
        for (int q = 0; q < W + 3; q++)
            for (int c = 0; c < C; c++) {
                int sr = r, sq = q - 2;
                float want = sr < H && sq >= 0 && sq < W ? x[(sr * W + sq) * C + c] : 0.0f;
                bad = fmax(bad, fabs(y[((r * (W + 3)) + q) * C + c] - want));
            }
    check(bad == 0, "zero padding (top 0, left 2, bottom 1, right 1) exact", bad, 0);
    nn_avgpool2(x, H, W, C, p);
    bad = 0;
    for (int r = 0; r < H / 2; r++)
        for (int q = 0; q < W / 2; q++)
            for (int c = 0; c < C; c++) {
                double s = 0;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++) s += x[((2 * r + a) * W + 2 * q + b) * C + c];
                bad = fmax(bad, fabs(p[(r * (W / 2) + q) * C + c] - s / 4));
            }
    check(bad < 1e-7, "2x2 average pooling", bad, 1e-7);
}

static void test_partitions(void)
{
    /* timm: window_partition views (B, H/p, p, W/p, p, C) and permutes (0,1,3,2,4,5); grid_partition views
     * (B, p, H/p, p, W/p, C) and permutes (0,2,4,1,3,5); token t of set s is then element s*p*p+t */
    enum { H = 12, W = 8, P = 4 };
    int pw[H * W], pg[H * W], bad = 0;
    nn_partition_window(H, W, P, pw);
    nn_partition_grid(H, W, P, pg);
    for (int i1 = 0; i1 < H / P; i1++)
        for (int i3 = 0; i3 < W / P; i3++)
            for (int i2 = 0; i2 < P; i2++)
                for (int i4 = 0; i4 < P; i4++) {
                    int flat = ((i1 * (W / P) + i3) * P + i2) * P + i4;
                    bad += pw[flat] != (i1 * P + i2) * W + i3 * P + i4;
                }
    for (int g2 = 0; g2 < H / P; g2++)
        for (int g4 = 0; g4 < W / P; g4++)
            for (int g1 = 0; g1 < P; g1++)
                for (int g3 = 0; g3 < P; g3++) {
                    int flat = ((g2 * (W / P) + g4) * P + g1) * P + g3;
                    bad += pg[flat] != (g1 * (H / P) + g2) * W + g3 * (W / P) + g4;
                }
    check(bad == 0, "window and grid partition orders = timm's view/permute", bad, 0);
}

static void test_attention(int head_first)
{
    enum { HH = 4, WW = 4, P = 2, NT = P * P, HEADS = 3, DH = 8, C = HEADS * DH, PIX = HH * WW };
    static float qkv[PIX * 3 * C], bias[HEADS * NT * NT], out[PIX * C];
    float scratch[4096];
    int pix[PIX];
    for (int i = 0; i < PIX * 3 * C; i++) qkv[i] = 2.0f * frand();
    for (int i = 0; i < HEADS * NT * NT; i++) bias[i] = frand();
    nn_partition_grid(HH, WW, P, pix);
    MC_ASSERT(nn_attn_scratch(NT, HEADS, DH) <= sizeof scratch / sizeof scratch[0]);
    nn_attn_sets(qkv, PIX / NT, NT, pix, HEADS, DH, head_first, bias, scratch, out);
    double worst = 0;
    for (int s = 0; s < PIX / NT; s++)
        for (int h = 0; h < HEADS; h++) {
            int qo = head_first ? h * 3 * DH : h * DH, ko = head_first ? qo + DH : C + h * DH;
            int vo = head_first ? qo + 2 * DH : 2 * C + h * DH;
            for (int i = 0; i < NT; i++) {
                const float *qi = qkv + pix[s * NT + i] * 3 * C;
                double a[NT], mx = -1e300, sum = 0;
                for (int j = 0; j < NT; j++) {
                    const float *kj = qkv + pix[s * NT + j] * 3 * C;
                    double d = 0;
                    for (int e = 0; e < DH; e++) d += (double)qi[qo + e] * kj[ko + e];
                    a[j] = d / sqrt((double)DH) + bias[(h * NT + i) * NT + j];
                    mx = fmax(mx, a[j]);
                }
                for (int j = 0; j < NT; j++) sum += (a[j] = exp(a[j] - mx));
                for (int e = 0; e < DH; e++) {
                    double o = 0;
                    for (int j = 0; j < NT; j++) o += a[j] / sum * qkv[pix[s * NT + j] * 3 * C + vo + e];
                    worst = fmax(worst, fabs(out[pix[s * NT + i] * C + h * DH + e] - o));
                }
            }
        }
    check(worst < 1e-5,
          head_first ? "attention over grid sets, per-head [q k v] (rw): max abs error"
                     : "attention over grid sets, [q][k][v] blocks (tf): max abs error",
          worst, 1e-5);
}

int main(void)
{
    test_gelu_tanh();
    test_softmax();
    test_pad_pool();
    test_partitions();
    test_attention(1);
    test_attention(0);
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
