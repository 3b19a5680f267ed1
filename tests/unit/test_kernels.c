/* tests/unit/test_kernels.c: each kernel against a plain double-precision reference written here, with the
 * tolerance stated per check: activations over their whole float range, convolution by im2col+sgemm and
 * depthwise against direct loops, LayerNorm, pooling; and the arena planner's replay invariants. */
#include <math.h>

#include "nn/engine.h"
#include "rng.h"

static int failures, checks;

static void check(int ok, const char *what, double got, double tol)
{
    checks++;
    printf("%s %-58s err %.3g (tol %.3g)\n", ok ? "ok  " : "FAIL", what, got, tol);
    if (!ok) failures++;
}

static uint32_t rng = 2463534242u;
static float frand(void) /* uniform in [-1, 1) */
{
    return (float)(unit_xorshift32(&rng) >> 8) / 8388608.0f - 1.0f;
}

static double gelu_ref(double x)
{
    return 0.5 * x * erfc(-x / sqrt(2.0));
}

static void test_activations(void)
{
    /* relative error, floored at 1e-30 absolute, over a dense sweep of [-30, 30]; each value goes through
     * nn_act_apply twice: alone (the scalar code) and within the whole array (16 lanes at a time) */
    enum { NX = 600001 };
    float *ga = malloc(sizeof(float) * NX), *sa = malloc(sizeof(float) * NX), *siga = malloc(sizeof(float) * NX);
    for (int i = 0; i < NX; i++) ga[i] = sa[i] = siga[i] = (float)(i - NX / 2) * 1e-4f;
    nn_act_apply(ga, NX, NN_ACT_GELU);
    nn_act_apply(sa, NX, NN_ACT_SILU);
    nn_act_apply(siga, NX, NN_ACT_SIGMOID);
    double worst_g = 0, worst_s = 0, worst_e = 0, worst_sig = 0;
    for (int i = 0; i < NX; i++) {
        float x = (float)(i - NX / 2) * 1e-4f;
        float g = x, s = x, sg = x;
        nn_act_apply(&g, 1, NN_ACT_GELU);
        nn_act_apply(&s, 1, NN_ACT_SILU);
        nn_act_apply(&sg, 1, NN_ACT_SIGMOID);
        double rg = gelu_ref(x), rs = x / (1.0 + exp(-(double)x)), rsig = 1.0 / (1.0 + exp(-(double)x));
        double eg = fmax(fabs(g - rg), fabs(ga[i] - rg)) / fmax(fabs(rg), 1e-30);
        double es = fmax(fabs(s - rs), fabs(sa[i] - rs)) / fmax(fabs(rs), 1e-30);
        double esig = fmax(fabs(sg - rsig), fabs(siga[i] - rsig)) / rsig;
        /* relative accuracy is asked where the value matters to a float network (|gelu| > 1e-20, i.e.
         * x > -9.3); deeper in the tail the value itself is below any float sum it joins */
        if (fabs(rg) > 1e-30 && eg > worst_g) worst_g = eg;
        if (fabs(rs) > 1e-30 && es > worst_s) worst_s = es;
        if (esig > worst_sig) worst_sig = esig;
        if (fabs(x) < 80) {
            double ee = fabs(nn_expf(x) - exp((double)x)) / exp((double)x);
            if (ee > worst_e) worst_e = ee;
        }
    }
    free(ga);
    free(sa);
    free(siga);
    check(worst_e < 4e-7, "expf relative error on [-30, 30]", worst_e, 4e-7);
    check(worst_g < 1e-6, "gelu (erf form) relative error where |gelu| > 1e-30", worst_g, 1e-6);
    check(worst_s < 1e-6, "silu relative error on [-30, 30]", worst_s, 1e-6);
    check(worst_sig < 1e-6, "sigmoid relative error on [-30, 30]", worst_sig, 1e-6);
    float big[20] = {200.0f, -200.0f, 1e30f, -1e30f};
    for (int i = 4; i < 20; i++) big[i] = big[i % 4];
    nn_act_apply(big, 20, NN_ACT_GELU); /* 16 lanes, then the scalar tail */
    int clean = 1;
    for (int i = 0; i < 20; i++)
        clean &= i % 2 == 0 ? big[i] == big[i % 4 == 0 ? 0 : 2] && big[i] >= 200.0f : fabsf(big[i]) < 1e-30f;
    check(clean && big[0] == 200.0f && big[2] == 1e30f, "gelu saturates cleanly (no NaN or Inf at +-200, +-1e30)",
          0, 0);
}

/* direct NHWC convolution in double */
static void conv_ref(const float *x, int n, int h, int w, int c, const float *wt /* [o][c][k][k] */, const float *b,
                     int o, int k, int s, int p, int oh, int ow, double *y)
{
    for (int i = 0; i < n; i++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int oc = 0; oc < o; oc++) {
                    double acc = b[oc];
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int iy = oy * s - p + ky, ix = ox * s - p + kx;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                            for (int ci = 0; ci < c; ci++)
                                acc += (double)x[(((size_t)i * h + iy) * w + ix) * c + ci] *
                                       wt[(((size_t)oc * c + ci) * k + ky) * k + kx];
                        }
                    y[(((size_t)i * oh + oy) * ow + ox) * o + oc] = acc;
                }
}

/* A loader over an in-memory weight file, to drive nn_conv_load the way architectures do. */
static nn_wfile *fake_file(int nt, const char **names, const int *ndims, const int64_t (*shapes)[4], float **data)
{
    nn_wfile *wf = mc_calloc(1, sizeof *wf);
    wf->path = mc_strdup("fake.bin");
    wf->n = nt;
    wf->t = mc_calloc((size_t)nt, sizeof(nn_wtensor));
    for (int i = 0; i < nt; i++) {
        wf->t[i].name = mc_strdup(names[i]);
        wf->t[i].ndim = ndims[i];
        wf->t[i].numel = 1;
        for (int d = 0; d < ndims[i]; d++) {
            wf->t[i].shape[d] = shapes[i][d];
            wf->t[i].numel *= shapes[i][d];
        }
        wf->t[i].data = data[i];
    }
    return wf;
}

/* wino: an fp32 plan that takes Winograd for 3x3 stride-1 layers (F(4x4) for 128-256 channels in and out,
 * F(2x2) otherwise), tested with a residual and ReLU as ResNet's and the detector's layers use them */
/* wino: Winograd on, with a residual and ReLU; pg: nn/gemm_packed.c's product (whatever this build's default),
 * with a residual and ReLU */
static void test_conv(int n, int h, int w, int c, int o, int k, int s, int p, int depthwise, int wino, int pg)
{
    const int fused = wino || pg;
    int oh = nn_conv_out(h, k, s, p), ow = nn_conv_out(w, k, s, p);
    int cin_w = depthwise ? 1 : c;
    float *wt = mc_malloc(sizeof(float) * (size_t)o * cin_w * k * k), *b = mc_malloc(sizeof(float) * (size_t)o);
    for (size_t i = 0; i < (size_t)o * cin_w * k * k; i++) wt[i] = frand();
    for (int i = 0; i < o; i++) b[i] = frand();
    const char *names[2] = {"c.weight", "c.bias"};
    int nd[2] = {4, 1};
    int64_t shapes[2][4] = {{o, cin_w, k, k}, {o, 0, 0, 0}};
    float *data[2] = {wt, b};
    nn_wfile *wf = fake_file(2, names, nd, shapes, data);
    char err[MC_ERR_LEN] = "";
    nn_loader L = {.wf = wf, .prefix = "", .arch = "test", .err = err};
    nn_conv cv;
    int rc = nn_conv_load(&L, &cv, "c.weight", "c.bias", NULL, 0, c, o, k, s, p, depthwise,
                          fused ? NN_ACT_RELU : NN_ACT_NONE);
    MC_ASSERT(rc == 0 && nn_loader_finish(&L) == 0);
    nn_ctx ctx0 = {.pgemm = pg};
    MC_ASSERT(!pg || nn_matmul_panels(&ctx0, cv.pk, o, k * k * c, k * k * c)); /* one the packed product takes */

    nn_ctx ctx = {.measure = 1, .winograd = wino, .pgemm = pg};
    nn_tensor x = nn_tensor_new(&ctx, n, h, w, c), r = nn_tensor_new(&ctx, n, oh, ow, o);
    nn_tensor y = nn_conv_forward(&ctx, &cv, x, fused ? &r : NULL);
    ctx.measure = 0;
    ctx.base = mc_malloc_aligned(ctx.size);
    ctx.next = 0;
    x = nn_tensor_new(&ctx, n, h, w, c);
    r = nn_tensor_new(&ctx, n, oh, ow, o);
    for (size_t i = 0; i < (size_t)n * h * w * c; i++) x.d[i] = frand();
    for (size_t i = 0; i < (size_t)n * oh * ow * o; i++) r.d[i] = frand();
    y = nn_conv_forward(&ctx, &cv, x, fused ? &r : NULL);
    MC_ASSERT(ctx.next == ctx.n && y.h == oh && y.w == ow);
    MC_ASSERT(!pg || cv.pk->fp32_panels == 1);

    size_t ny = (size_t)n * oh * ow * o;
    double *ref = mc_malloc(sizeof(double) * ny), maxref = 0, maxerr = 0;
    if (depthwise) {
        /* expand the depthwise kernel to a dense one with zeros off the diagonal */
        float *dense = mc_calloc((size_t)o * c * k * k, sizeof(float));
        for (int oc = 0; oc < o; oc++)
            for (int t = 0; t < k * k; t++) dense[((size_t)oc * c + oc) * k * k + t] = wt[(size_t)oc * k * k + t];
        conv_ref(x.d, n, h, w, c, dense, b, o, k, s, p, oh, ow, ref);
        free(dense);
    } else {
        conv_ref(x.d, n, h, w, c, wt, b, o, k, s, p, oh, ow, ref);
    }
    if (fused)
        for (size_t i = 0; i < ny; i++) ref[i] = fmax(0.0, ref[i] + r.d[i]);
    for (size_t i = 0; i < ny; i++) {
        maxref = fmax(maxref, fabs(ref[i]));
        maxerr = fmax(maxerr, fabs(y.d[i] - ref[i]));
    }
    char what[160];
    snprintf(what, sizeof what, "%s conv n%d %dx%dx%d -> %d k%d s%d p%d",
             depthwise ? "depthwise" : wino ? "winograd" : pg ? "packed" : "dense",
             n, h, w, c, o, k, s, p);
    check(maxerr / maxref < 1e-5, what, maxerr / maxref, 1e-5);
    if (pg) { /* a plan without the panels on the same layer afterwards (Winograd's where the layer is 3x3
               * stride 1, else sgemm): its weights switched back, same result */
        nn_ctx c2 = {.measure = 1, .winograd = 1};
        nn_tensor x2 = nn_tensor_new(&c2, n, h, w, c), r2 = nn_tensor_new(&c2, n, oh, ow, o);
        nn_conv_forward(&c2, &cv, x2, &r2);
        c2.measure = 0;
        c2.base = mc_malloc_aligned(c2.size);
        c2.next = 0;
        x2 = nn_tensor_new(&c2, n, h, w, c);
        r2 = nn_tensor_new(&c2, n, oh, ow, o);
        memcpy(x2.d, x.d, sizeof(float) * (size_t)n * h * w * c);
        memcpy(r2.d, r.d, sizeof(float) * ny);
        nn_tensor y2 = nn_conv_forward(&c2, &cv, x2, &r2);
        double e2 = 0;
        for (size_t i = 0; i < ny; i++) e2 = fmax(e2, fabs(y2.d[i] - ref[i]));
        snprintf(what, sizeof what, "  then %s on the same layer (weights unpacked: %s)",
                 k == 3 && s == 1 ? "Winograd" : "sgemm", cv.pk->fp32_panels ? "no" : "yes");
        check(e2 / maxref < 1e-5 && !cv.pk->fp32_panels, what, e2 / maxref, 1e-5);
        free(c2.base), free(c2.off), free(c2.len), free(c2.live_off), free(c2.live_len);
    }
    free(ref);
    free(ctx.base);
    free(ctx.off);
    free(ctx.len);
    free(ctx.live_off);
    free(ctx.live_len);
    nn_conv_free(&cv);
    for (int i = 0; i < 2; i++) {
        free(wf->t[i].name);
        free(wf->t[i].data);
    }
    free(wf->t);
    free(wf->path);
    free(wf);
}

/* nn_pgemm with what the conv path does not reach: a width that is not a multiple of the panel (partial
 * last panel), strided A, C and residual, the activations applied after the kernel; and pack/unpack */
static void test_pgemm_direct(void)
{
    enum { M = 37, N = 40, K = 19, LDA = 23, LDC = 45, LDR = 41 };
    const int np = nn_pgemm_padded(N);
    float *a = mc_malloc(sizeof(float) * M * LDA), *w = mc_malloc(sizeof(float) * N * K), *r = mc_malloc(sizeof(float) * M * LDR);
    float *wp = mc_malloc_aligned(sizeof(float) * nn_pgemm_floats(N, K)), *w2 = mc_malloc(sizeof(float) * N * K);
    float *b = mc_calloc((size_t)np, sizeof(float)), *c = mc_malloc(sizeof(float) * M * LDC);
    for (int i = 0; i < M * LDA; i++) a[i] = frand();
    for (int i = 0; i < N * K; i++) w[i] = frand();
    for (int i = 0; i < M * LDR; i++) r[i] = frand();
    for (int i = 0; i < N; i++) b[i] = frand();
    nn_pgemm_pack(w, N, K, wp);
    nn_pgemm_unpack(wp, N, K, w2);
    int same = !memcmp(w, w2, sizeof(float) * N * K);
    check(same, "packed weights unpack to the original", same ? 0.0 : 1.0, 0.0);
    const nn_act acts[4] = {NN_ACT_NONE, NN_ACT_RELU, NN_ACT_SILU, NN_ACT_GELU};
    const char *names[4] = {"none", "relu", "silu", "gelu"};
    for (int t = 0; t < 4; t++) {
        for (int i = 0; i < M * LDC; i++) c[i] = 7.0f; /* the columns past N must stay as they are */
        nn_pgemm(M, N, K, a, LDA, wp, b, r, LDR, acts[t], c, LDC);
        double maxerr = 0, maxref = 0;
        int kept = 1;
        for (int i = 0; i < M; i++) {
            for (int j = 0; j < N; j++) {
                double z = b[j] + r[(size_t)i * LDR + j];
                for (int k = 0; k < K; k++) z += (double)a[(size_t)i * LDA + k] * w[(size_t)j * K + k];
                double ref = acts[t] == NN_ACT_RELU ? fmax(z, 0.0)
                             : acts[t] == NN_ACT_SILU ? z / (1.0 + exp(-z))
                             : acts[t] == NN_ACT_GELU ? gelu_ref(z)
                                                      : z;
                maxref = fmax(maxref, fabs(ref));
                maxerr = fmax(maxerr, fabs(c[(size_t)i * LDC + j] - ref));
            }
            for (int j = N; j < LDC; j++) kept &= c[(size_t)i * LDC + j] == 7.0f;
        }
        char what[120];
        snprintf(what, sizeof what, "packed GEMM %dx%dx%d, partial panel, strides, %s", M, N, K, names[t]);
        check(maxerr / maxref < 1e-5 && kept, what, maxerr / maxref, 1e-5);
    }
    free(a), free(w), free(r), free(wp), free(w2), free(b), free(c);
}

/* in place (c a multiple of the vector width) and out of place (c = 83: a scalar tail), against double */
static void test_layernorm_c(int c, int inplace)
{
    const int rows = 37;
    float *x = mc_malloc(sizeof(float) * rows * c), *wt = mc_malloc(sizeof(float) * c), *bs = mc_malloc(sizeof(float) * c);
    float *y = inplace ? x : mc_malloc(sizeof(float) * rows * c);
    double *ref = mc_malloc(sizeof(double) * rows * c);
    for (int i = 0; i < rows * c; i++) x[i] = 3.0f * frand() + 5.0f;
    for (int i = 0; i < c; i++) {
        wt[i] = frand();
        bs[i] = frand();
    }
    for (int r = 0; r < rows; r++) {
        double m = 0, v = 0;
        for (int i = 0; i < c; i++) m += x[r * c + i];
        m /= c;
        for (int i = 0; i < c; i++) v += (x[r * c + i] - m) * (x[r * c + i] - m);
        v /= c;
        for (int i = 0; i < c; i++) ref[r * c + i] = (x[r * c + i] - m) / sqrt(v + 1e-6) * wt[i] + bs[i];
    }
    if (inplace)
        nn_layernorm(x, rows, c, 1e-6f, wt, bs);
    else
        nn_layernorm_to(x, y, rows, c, 1e-6f, wt, bs);
    double e = 0;
    for (int i = 0; i < rows * c; i++) e = fmax(e, fabs(y[i] - ref[i]));
    char what[96];
    snprintf(what, sizeof what, "layernorm %s, c %d (biased variance, eps 1e-6) max abs error",
             inplace ? "in place" : "out of place", c);
    check(e < 1e-5, what, e, 1e-5);
    if (!inplace) free(y);
    free(x);
    free(wt);
    free(bs);
    free(ref);
}

static void test_layernorm(void)
{
    test_layernorm_c(320, 1);
    test_layernorm_c(83, 0);
}

static void test_maxpool(void)
{
    const int h = 9, w = 7, c = 5, oh = nn_conv_out(h, 3, 2, 1), ow = nn_conv_out(w, 3, 2, 1);
    float x[9 * 7 * 5], y[5 * 4 * 5];
    for (int i = 0; i < h * w * c; i++) x[i] = frand() - 2.0f; /* all negative: padding must not win */
    nn_maxpool(x, h, w, c, 3, 2, 1, oh, ow, y);
    int ok = 1;
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
            for (int ci = 0; ci < c; ci++) {
                float m = -INFINITY;
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        int iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
                        if (iy >= 0 && iy < h && ix >= 0 && ix < w && x[(iy * w + ix) * c + ci] > m)
                            m = x[(iy * w + ix) * c + ci];
                    }
                ok &= y[(oy * ow + ox) * c + ci] == m;
            }
    check(ok, "maxpool 3/2/1 equals the direct maximum, padding ignored", 0, 0);
}

static void test_arena_replay(void)
{
    /* a release in the middle must let a later buffer reuse the space; replay hands out the same offsets */
    nn_ctx ctx = {.measure = 1};
    float *a = nn_ctx_alloc(&ctx, 1000), *b = nn_ctx_alloc(&ctx, 1000);
    nn_ctx_release(&ctx, a);
    float *c = nn_ctx_alloc(&ctx, 500);
    nn_ctx_release(&ctx, b);
    nn_ctx_release(&ctx, c);
    check(ctx.n == 3 && ctx.off[2] == ctx.off[0] && ctx.size == 2 * 4032, "arena reuses a released block (first fit)",
          (double)ctx.size, 8064);
    free(ctx.off);
    free(ctx.len);
    free(ctx.live_off);
    free(ctx.live_len);
}

int main(void)
{
    nn_init();
    test_activations();
    test_layernorm();
    test_maxpool();
    test_arena_replay();
    test_conv(2, 13, 11, 3, 16, 3, 2, 1, 0, 0, 0);  /* stem-like, odd sizes */
    test_conv(1, 9, 9, 24, 40, 1, 1, 0, 0, 0, 0);   /* pointwise: GEMM straight on the input */
    test_conv(2, 10, 10, 16, 32, 1, 2, 0, 0, 0, 0); /* strided 1x1 (ResNet downsample) */
    test_conv(1, 23, 23, 7, 9, 7, 2, 3, 0, 0, 0);   /* 7x7 stride 2 */
    test_conv(1, 16, 16, 12, 12, 4, 4, 0, 0, 0, 0); /* ConvNeXt stem patchify */
    test_conv(3, 20, 20, 64, 64, 3, 1, 1, 0, 0, 0); /* enough rows to span several GEMM tiles */
    test_conv(3, 20, 20, 64, 64, 3, 1, 1, 0, 1, 0); /* the same by Winograd F(2x2, 3x3), + residual, ReLU */
    test_conv(2, 13, 11, 128, 160, 3, 1, 1, 0, 1, 0); /* F(4x4, 3x3), tiles cut at the edges */
    test_conv(1, 10, 9, 256, 128, 3, 1, 0, 0, 1, 0);  /* F(4x4), no padding */
    test_conv(2, 13, 11, 32, 48, 3, 1, 1, 0, 1, 0); /* odd output sizes: tiles cut at the edges */
    test_conv(1, 9, 7, 16, 16, 3, 1, 0, 0, 1, 0);   /* no padding */
    test_conv(4, 40, 40, 16, 16, 3, 1, 1, 0, 1, 0); /* 1600 tiles: more than one block */
    test_conv(2, 7, 7, 272, 256, 3, 1, 1, 0, 1, 0); /* cin x cout past 256 x 256: F(2x2) again */
    test_conv(2, 12, 10, 24, 40, 3, 1, 1, 0, 1, 0); /* channels not a multiple of 16 (EfficientNetV2's 24) */
    test_conv(1, 14, 14, 40, 40, 7, 1, 3, 1, 0, 0); /* ConvNeXt depthwise 7x7 */
    test_conv(2, 15, 15, 24, 24, 5, 2, 2, 1, 0, 0); /* EfficientNet depthwise 5x5 stride 2 */
    test_conv(1, 8, 8, 17, 17, 3, 1, 1, 1, 0, 0);   /* odd channel count */
    test_conv(2, 9, 37, 40, 40, 3, 1, 1, 1, 0, 0);  /* wide rows: 4-pixel register blocks plus a channel tail */
    test_conv(1, 12, 29, 48, 48, 5, 2, 2, 1, 0, 0); /* strided 4-pixel blocks */
    test_conv(2, 7, 7, 72, 72, 7, 1, 3, 1, 0, 0);   /* ConvNeXt's last stage: every pixel a border one, 64 + 8 channels */
    test_conv(1, 14, 14, 136, 136, 7, 1, 3, 1, 0, 0); /* quads and borders, 128 + 8 channels */
    /* the packed product (nn/gemm_packed.c), + residual, ReLU: */
    test_conv(3, 20, 20, 64, 96, 1, 1, 0, 0, 0, 1);   /* 1x1 over several row blocks */
    test_conv(1, 9, 11, 300, 288, 1, 1, 0, 0, 0, 1);  /* K past two runs of 128, N past a column block */
    test_conv(2, 10, 10, 48, 64, 1, 2, 0, 0, 0, 1);   /* strided 1x1 (im2col rows) */
    test_conv(1, 23, 23, 3, 64, 7, 2, 3, 0, 0, 1);    /* ResNet's stem: K = 147 */
    test_conv(2, 13, 11, 40, 32, 3, 2, 1, 0, 0, 1);   /* 3x3 stride 2 */
    test_conv(1, 16, 16, 12, 32, 4, 4, 0, 0, 0, 1);   /* ConvNeXt stem patchify */
    test_conv(2, 11, 13, 64, 64, 3, 1, 1, 0, 0, 1);   /* 3x3 stride 1 by im2col (a plan without Winograd) */
    test_pgemm_direct();
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
