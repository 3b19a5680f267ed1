/* nn/layers.c: convolution as a layer: weights re-laid out for NHWC at load time with batch norm folded
 * in, and a forward pass that tiles rows so the im2col block and the GEMM output stay in cache while the
 * fused epilogue (bias, residual, activation) runs. Does not know which network it is part of. */
#include <sys/mman.h>
#include <unistd.h>

#include "nn/engine.h"

#include <math.h>

int nn_winograd_default(void)
{
    const char *e = getenv("MORPHCAT_WINOGRAD");
    return !(e && !strcmp(e, "0"));
}

int nn_pgemm_default(void)
{
    const char *e = getenv("MORPHCAT_PGEMM"); /* 0 or 1 override the CPU's default, for comparisons */
    if (e && !strcmp(e, "0")) return 0;
    return nn_pgemm_native(e && !strcmp(e, "1"));
}

int nn_conv_out(int in, int k, int stride, int pad)
{
    if (in + 2 * pad < k) return 0; /* the window does not fit: an empty output (C division truncates) */
    return (in + 2 * pad - k) / stride + 1;
}

int nn_conv_load(nn_loader *L, nn_conv *cv, const char *wname, const char *bname, const char *bnprefix, float bn_eps,
                 int cin, int cout, int k, int stride, int pad, int depthwise, nn_act act)
{
    memset(cv, 0, sizeof *cv);
    cv->cin = cin;
    cv->cout = cout;
    cv->k = k;
    cv->stride = stride;
    cv->pad = pad;
    cv->depthwise = depthwise;
    cv->act = act;
    MC_ASSERT(!depthwise || cin == cout);
    int wd[4] = {cout, depthwise ? 1 : cin, k, k};
    const float *w = nn_load(L, 4, wd, "%s", wname);
    const float *b = NULL, *g = NULL, *beta = NULL, *mean = NULL, *var = NULL;
    int cd[1] = {cout};
    if (bname) b = nn_load(L, 1, cd, "%s", bname);
    if (bnprefix) {
        g = nn_load(L, 1, cd, "%s.weight", bnprefix);
        beta = nn_load(L, 1, cd, "%s.bias", bnprefix);
        mean = nn_load(L, 1, cd, "%s.running_mean", bnprefix);
        var = nn_load(L, 1, cd, "%s.running_var", bnprefix);
    }
    if (L->failed) return -1;
    if (bnprefix) {
        for (int o = 0; o < cout; o++) {
            if (!(var[o] + bn_eps > 0.0f)) {
                L->failed = 1;
                return mc_fail(L->err, "%s: key '%s%s.running_var' is negative at channel %d", L->wf->path,
                               L->prefix, bnprefix, o);
            }
        }
    }
    size_t kk = (size_t)k * k;
    cv->w = mc_malloc_aligned(sizeof(float) * (size_t)cout * kk * (depthwise ? 1 : (size_t)cin));
    cv->b = mc_malloc_aligned(sizeof(float) * (size_t)cout);
    cv->pk = depthwise ? NULL : nn_wpack_new(1);
    for (int o = 0; o < cout; o++) {
        /* fold in double: scale = gamma / sqrt(var + eps), bias = (b - mean) * scale + beta */
        double scale = 1.0, shift = b ? b[o] : 0.0;
        if (bnprefix) {
            scale = (double)g[o] / sqrt((double)var[o] + (double)bn_eps);
            shift = (shift - (double)mean[o]) * scale + (double)beta[o];
        }
        cv->b[o] = (float)shift;
        if (depthwise) {
            for (size_t t = 0; t < kk; t++) cv->w[t * cout + o] = (float)(w[(size_t)o * kk + t] * scale);
        } else {
            for (int i = 0; i < cin; i++)
                for (size_t t = 0; t < kk; t++)
                    cv->w[((size_t)o * kk + t) * cin + i] = (float)(w[((size_t)o * cin + i) * kk + t] * scale);
        }
    }
    return 0;
}

void nn_conv_free(nn_conv *cv)
{
    free(cv->w);
    free(cv->b);
    nn_wpack_delete(cv->pk);
    cv->w = cv->b = NULL;
    cv->pk = NULL;
}

void nn_conv_keep_fp32(nn_conv *cv)
{
    if (cv->pk) cv->pk->fp32_only = 1;
}

nn_wpack *nn_wpack_new(int split)
{
    nn_wpack *p = mc_calloc(1, sizeof(nn_wpack));
    p->split = split;
    return p;
}

void nn_wpack_delete(nn_wpack *pk)
{
    if (!pk) return;
    nn_wpack_free(pk);
    free(pk);
}

/* The whole pages inside w[0..n) back to the system: they read as zeros if touched again (nothing does: the
 * pack replaces them, and nn_matmul refuses an fp32 product on a released layer). The memory stays allocated
 * to its owner, which frees it as usual. */
static void release_pages(const float *w, size_t n)
{
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)w + pg - 1) & ~(pg - 1), b = ((uintptr_t)(w + n)) & ~(pg - 1);
    if (b > a && madvise((void *)a, b - a, MADV_DONTNEED) != 0) MC_ASSERT(!"madvise(MADV_DONTNEED) failed");
}

/* Whether a product's W may lie in nn/gemm_packed.c's panels: a whole number of them wide (then the panels are
 * the same floats, switched in place), rows contiguous, K at most 8192. The detector's fc6 (K = 12544, 51 MB)
 * stays on sgemm: 0.95x there, where the kernel's row blocks stream W from memory once each and sgemm, with
 * 1000 rows in one call, packs it once. */
static int panels_fit(int N, int K, int ldw)
{
    return ldw == K && N % nn_pgemm_padded(1) == 0 && K <= 8192;
}

int nn_matmul_panels(const nn_ctx *ctx, const nn_wpack *pk, int N, int K, int ldw)
{
    return pk && ctx->pgemm && !(ctx->bf16 && !pk->fp32_only) && panels_fit(N, K, ldw);
}

/* W ([N][K]) into the layout wanted: 1, the panels (panel j's floats are rows j.. j + NR - 1, so a block of NR
 * rows at a time through a small copy), or 0, [N][K] (sgemm, and the source of a bf16 pack) */
static void fp32_layout(nn_wpack *pk, float *W, int N, int K, int want)
{
    if (pk->fp32_panels == want) return;
    const int nr = nn_pgemm_padded(1);
    MC_ASSERT(N % nr == 0 && !pk->fp32_released);
    float *t = mc_malloc_aligned(sizeof(float) * (size_t)nr * K);
    for (int j = 0; j < N; j += nr) {
        float *blk = W + (size_t)j * K;
        memcpy(t, blk, sizeof(float) * (size_t)nr * K);
        if (want)
            nn_pgemm_pack(t, nr, K, blk);
        else
            nn_pgemm_unpack(t, nr, K, blk);
    }
    free(t);
    pk->fp32_panels = want;
}

/* The pack and W's layout are the things a plan writes into its model: the pack once, in the first bf16
 * plan's measure pass; the layout whenever a plan needs the other one (plans are made and run from one
 * thread). W is the model's own (non-const) array. */
float *nn_matmul_prepare(nn_ctx *ctx, nn_wpack *pk, int maxM, int N, int K, const float *W, int ldw)
{
    const int amx = ctx->bf16 && pk && !pk->fp32_only;
    if (pk && panels_fit(N, K, ldw) && (!amx || (ctx->measure && !pk->d)))
        fp32_layout(pk, (float *)W, N, K, nn_matmul_panels(ctx, pk, N, K, ldw));
    if (!amx) return NULL;
    if (ctx->measure && !pk->d) {
        nn_wpack_init(pk, W, N, K, ldw, pk->split);
        if (ctx->release_fp32) {
            release_pages(W, (size_t)N * ldw);
            pk->fp32_released = 1;
        }
    }
    MC_ASSERT(ctx->measure || (pk->d && pk->n == N && pk->k == K));
    return nn_ctx_alloc(ctx, nn_gemm_bf16_scratch(maxM, K, pk->split));
}

void nn_matmul(const nn_wpack *pk, float *scratch, int M, int N, int K, const float *A, int lda, const float *W,
               int ldw, const float *bias, const float *res, int ldr, int accumulate, nn_act act, float *C, int ldc)
{
    if (scratch) {
        nn_gemm_bf16(M, A, lda, pk, bias, res, ldr, accumulate, act, C, ldc, scratch);
        return;
    }
    MC_ASSERT(!pk || !pk->fp32_released); /* an fp32 product after nn_model_bf16_only */
    if (pk && pk->fp32_panels) {
        MC_ASSERT(!(accumulate && res) && ldw == K);
        nn_pgemm(M, N, K, A, lda, W, bias, accumulate ? C : res, accumulate ? ldc : ldr, act, C, ldc);
    } else {
        nn_gemm_fused(M, N, K, A, lda, W, ldw, bias, res, ldr, accumulate, act, C, ldc);
    }
}

/* Rows per GEMM call. OpenBLAS repacks the weights on every call and runs short calls poorly (measured
 * here for ResNet/EfficientNet shapes: 128-row calls reach 75-85% of the GFLOP/s of 1024-row ones), so
 * calls take at least 1024 rows; beyond that the im2col block (K wide) and, in fp32, the output block (N wide)
 * are capped near 1 MB, so that the bias fill before OpenBLAS and the activation after it find the block in
 * L2 (EfficientNet-B0 +5-12%, ConvNeXt +4-6%, ResNet-50 unchanged, alternating in one run; bf16 plans keep
 * the K rule they were measured with on AMX). */
static long conv_tile_rows(long K, long N, long P, int bf16)
{
    long t = (1L << 18) / (K > N || bf16 ? K : N);
    if (t < 1024) t = 1024;
    return t > P ? P : t;
}

nn_tensor nn_conv_forward(nn_ctx *ctx, const nn_conv *cv, nn_tensor x, const nn_tensor *res)
{
    MC_ASSERT(x.c == cv->cin);
    int oh = nn_conv_out(x.h, cv->k, cv->stride, cv->pad);
    int ow = nn_conv_out(x.w, cv->k, cv->stride, cv->pad);
    nn_tensor y = nn_tensor_new(ctx, x.n, oh, ow, cv->cout);
    if (res) MC_ASSERT(ctx->measure || (res->n == y.n && res->h == y.h && res->w == y.w && res->c == y.c));
    if (ctx->measure) ctx->macs += (double)nn_tensor_pixels(y) * cv->cout * cv->k * cv->k * (cv->depthwise ? 1 : cv->cin);
    if (cv->depthwise) {
        MC_ASSERT(!res);
        if (!ctx->measure)
            for (int i = 0; i < x.n; i++)
                nn_dwconv(x.d + (size_t)i * x.h * x.w * x.c, x.h, x.w, x.c, cv->w, cv->b, cv->k, cv->k, cv->stride,
                          cv->pad, y.h, y.w, cv->act, y.d + (size_t)i * y.h * y.w * y.c, NULL);
        return y;
    }
    const int wm = ctx->winograd && !ctx->bf16 && cv->k == 3 && cv->stride == 1 ? nn_wino_pick(cv->cin, cv->cout) : 0;
    if (wm) {
        /* the transform reads [cout][3][3][cin]: back from the panels an im2col plan (no Winograd) left */
        if (cv->pk && cv->pk->fp32_panels) fp32_layout(cv->pk, cv->w, cv->cout, 9 * cv->cin, 0);
        /* the weights are transformed per pass (a^2 cin cout floats of scratch; 2% of the detector's time at
         * one image a pass), so the model holds no second copy */
        nn_wino_size z;
        nn_wino_sizes(wm, cv->cin, cv->cout, nn_wino_tiles(wm, x.n, oh, ow), &z);
        float *u = nn_ctx_alloc(ctx, z.u);
        float *v = nn_ctx_alloc(ctx, z.v), *m = nn_ctx_alloc(ctx, z.mm);
        float *scr = nn_ctx_alloc(ctx, z.scr);
        if (!ctx->measure) {
            nn_wino_weights(wm, cv->w, cv->cout, cv->cin, u);
            nn_wino_conv(wm, x.d, x.n, x.h, x.w, x.c, u, cv->cout, cv->pad, oh, ow, cv->b, res ? res->d : NULL,
                         cv->act, y.d, z.T, v, m, scr);
        }
        nn_ctx_release(ctx, scr);
        nn_ctx_release(ctx, m);
        nn_ctx_release(ctx, v);
        nn_ctx_release(ctx, u);
        return y;
    }
    const long P = nn_tensor_pixels(y);
    const int K = cv->k * cv->k * cv->cin, N = cv->cout;
    const int direct = cv->k == 1 && cv->stride == 1 && cv->pad == 0;
    /* the packed product blocks rows itself: one call for a 1x1 layer, im2col blocks as for sgemm */
    const long T = direct && nn_matmul_panels(ctx, cv->pk, N, K, K) ? P : conv_tile_rows(K, N, P, ctx->bf16);
    float *col = direct ? NULL : nn_ctx_alloc(ctx, (size_t)T * K);
    float *sc = nn_matmul_prepare(ctx, cv->pk, (int)T, N, K, cv->w, K);
    if (!ctx->measure) {
        for (long p0 = 0; p0 < P; p0 += T) {
            long rows = P - p0 < T ? P - p0 : T;
            const float *A = x.d + (size_t)p0 * K;
            if (!direct) {
                nn_im2col(x.d, x.h, x.w, x.c, cv->k, cv->k, cv->stride, cv->pad, y.h, y.w, p0, p0 + rows, col);
                A = col;
            }
            float *C = y.d + (size_t)p0 * N;
            nn_matmul(cv->pk, sc, (int)rows, N, K, A, K, cv->w, K, cv->b, res ? res->d + (size_t)p0 * N : NULL, N, 0,
                      cv->act, C, N);
        }
    }
    nn_ctx_release(ctx, sc);
    nn_ctx_release(ctx, col);
    return y;
}
