/* nn/arch_efficientnet.c: timm 0.9.10 EfficientNet-B0 ('efficientnet_b0': PyTorch-style symmetric padding,
 * BatchNorm eps 1e-5, SiLU, squeeze-excite with biases). Facts: ../shared/notes/zoobot.md section 1.5.
 * Batch norm is folded into every convolution at load; the depthwise pass also sums each channel so the
 * squeeze-excite mean costs no extra read. Not here: the tf_ variants (TF 'same' padding, eps 1e-3). */
#include "nn/engine.h"

#define EFF_EPS 1e-5f

/* One stage of timm's arch_def string: block type, repeats, kernel, stride, expansion, out channels. */
typedef struct eff_stage {
    int ds; /* 1: depthwise-separable block (ds_...), 0: inverted residual (ir_...) */
    int repeats, k, stride, expand, cout;
} eff_stage;

typedef struct eff_variant {
    const char *name;
    int stem, head;
    int nstages;
    eff_stage st[7];
} eff_variant;

/* ds_r1_k3_s1_e1_c16_se0.25 | ir_r2_k3_s2_e6_c24 | ir_r2_k5_s2_e6_c40 | ir_r3_k3_s2_e6_c80 |
 * ir_r3_k5_s1_e6_c112 | ir_r4_k5_s2_e6_c192 | ir_r1_k3_s1_e6_c320, all se0.25 */
static const eff_variant eff_variants[] = {
    {"efficientnet_b0",
     32,
     1280,
     7,
     {{1, 1, 3, 1, 1, 16},
      {0, 2, 3, 2, 6, 24},
      {0, 2, 5, 2, 6, 40},
      {0, 3, 3, 2, 6, 80},
      {0, 3, 5, 1, 6, 112},
      {0, 4, 5, 2, 6, 192},
      {0, 1, 3, 1, 6, 320}}},
};
#define EFF_NVARIANTS ((int)(sizeof eff_variants / sizeof eff_variants[0]))

typedef struct eff_block {
    int ds, cin, mid, cout, rd, skip;
    nn_conv pw;  /* expansion 1x1 (ir only) */
    nn_conv dw;  /* depthwise k x k */
    nn_conv pwl; /* projection 1x1 */
    float *se_rw, *se_rb, *se_ew, *se_eb;
} eff_block;

typedef struct effnet {
    const eff_variant *v;
    nn_conv stem, head;
    int nblocks;
    eff_block *blocks;
} effnet;

static const eff_variant *eff_find(const char *arch)
{
    for (int i = 0; i < EFF_NVARIANTS; i++)
        if (!strcmp(eff_variants[i].name, arch)) return &eff_variants[i];
    return NULL;
}

int nn_efficientnet_knows(const char *arch)
{
    return eff_find(arch) != NULL;
}

static void eff_destroy(void *p)
{
    effnet *m = p;
    if (!m) return;
    nn_conv_free(&m->stem);
    nn_conv_free(&m->head);
    for (int i = 0; i < m->nblocks; i++) {
        eff_block *b = &m->blocks[i];
        nn_conv_free(&b->pw);
        nn_conv_free(&b->dw);
        nn_conv_free(&b->pwl);
        free(b->se_rw);
        free(b->se_rb);
        free(b->se_ew);
        free(b->se_eb);
    }
    free(m->blocks);
    free(m);
}

static float *copy_loaded(nn_loader *L, int ndim, const int *dims, const char *pre, const char *suffix)
{
    const float *p = nn_load(L, ndim, dims, "%s.%s", pre, suffix);
    if (!p) return NULL;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)dims[i];
    return nn_copy_floats(p, n);
}

static void *eff_build(nn_loader *L, const char *arch, int in_chans)
{
    const eff_variant *v = eff_find(arch);
    MC_ASSERT(v);
    effnet *m = mc_calloc(1, sizeof *m);
    m->v = v;
    for (int s = 0; s < v->nstages; s++) m->nblocks += v->st[s].repeats;
    m->blocks = mc_calloc((size_t)m->nblocks, sizeof(eff_block));
    nn_conv_load(L, &m->stem, "conv_stem.weight", NULL, "bn1", EFF_EPS, in_chans, v->stem, 3, 2, 1, 0, NN_ACT_SILU);
    nn_conv_keep_fp32(&m->stem); /* 3x3 on 1-3 channels: fp32 (policy, docs/engine.md) */
    int cin = v->stem, bi = 0;
    char pre[64], w[128], bn[128];
    for (int s = 0; s < v->nstages && !L->failed; s++) {
        const eff_stage *st = &v->st[s];
        for (int r = 0; r < st->repeats && !L->failed; r++, bi++) {
            eff_block *b = &m->blocks[bi];
            int stride = r == 0 ? st->stride : 1;
            b->ds = st->ds;
            b->cin = cin;
            b->mid = cin * st->expand;
            b->cout = st->cout;
            b->rd = cin / 4 > 0 ? cin / 4 : 1; /* se_ratio 0.25 of the block's input channels */
            b->skip = stride == 1 && cin == st->cout && !st->ds;
            snprintf(pre, sizeof pre, "blocks.%d.%d", s, r);
            if (!b->ds) {
                snprintf(w, sizeof w, "%s.conv_pw.weight", pre);
                snprintf(bn, sizeof bn, "%s.bn1", pre);
                nn_conv_load(L, &b->pw, w, NULL, bn, EFF_EPS, b->cin, b->mid, 1, 1, 0, 0, NN_ACT_SILU);
            }
            snprintf(w, sizeof w, "%s.conv_dw.weight", pre);
            snprintf(bn, sizeof bn, "%s.%s", pre, b->ds ? "bn1" : "bn2");
            nn_conv_load(L, &b->dw, w, NULL, bn, EFF_EPS, b->mid, b->mid, st->k, stride, st->k / 2, 1, NN_ACT_SILU);
            int drw[4] = {b->rd, b->mid, 1, 1}, drb[1] = {b->rd}, dew[4] = {b->mid, b->rd, 1, 1}, deb[1] = {b->mid};
            b->se_rw = copy_loaded(L, 4, drw, pre, "se.conv_reduce.weight");
            b->se_rb = copy_loaded(L, 1, drb, pre, "se.conv_reduce.bias");
            b->se_ew = copy_loaded(L, 4, dew, pre, "se.conv_expand.weight");
            b->se_eb = copy_loaded(L, 1, deb, pre, "se.conv_expand.bias");
            snprintf(w, sizeof w, "%s.%s.weight", pre, b->ds ? "conv_pw" : "conv_pwl");
            snprintf(bn, sizeof bn, "%s.%s", pre, b->ds ? "bn2" : "bn3");
            nn_conv_load(L, &b->pwl, w, NULL, bn, EFF_EPS, b->mid, b->cout, 1, 1, 0, 0, NN_ACT_NONE);
            cin = st->cout;
        }
    }
    nn_conv_load(L, &m->head, "conv_head.weight", NULL, "bn2", EFF_EPS, cin, v->head, 1, 1, 0, 0, NN_ACT_SILU);
    if (L->failed) {
        eff_destroy(m);
        return NULL;
    }
    return m;
}

static nn_tensor eff_block_forward(nn_ctx *ctx, const eff_block *b, nn_tensor x)
{
    nn_tensor h = x;
    if (!b->ds) h = nn_conv_forward(ctx, &b->pw, x, NULL);
    const nn_conv *dw = &b->dw;
    nn_tensor d = nn_tensor_new(ctx, h.n, nn_conv_out(h.h, dw->k, dw->stride, dw->pad),
                                nn_conv_out(h.w, dw->k, dw->stride, dw->pad), b->mid);
    float *se_in = nn_ctx_alloc(ctx, (size_t)h.n * b->mid);
    float *se_mid = nn_ctx_alloc(ctx, (size_t)h.n * b->rd);
    float *gate = nn_ctx_alloc(ctx, (size_t)h.n * b->mid);
    if (ctx->measure) ctx->macs += (double)nn_tensor_pixels(d) * b->mid * dw->k * dw->k + 2.0 * h.n * b->mid * b->rd;
    if (!ctx->measure) {
        const long hw = (long)d.h * d.w;
        for (int i = 0; i < h.n; i++) {
            float *csum = se_in + (size_t)i * b->mid;
            nn_dwconv(h.d + (size_t)i * h.h * h.w * h.c, h.h, h.w, h.c, dw->w, dw->b, dw->k, dw->k, dw->stride,
                      dw->pad, d.h, d.w, NN_ACT_SILU, d.d + (size_t)i * hw * b->mid, csum);
            for (int c = 0; c < b->mid; c++) csum[c] /= (float)hw;
        }
        /* squeeze-excite on the whole batch at once: two small GEMMs */
        nn_gemm_fused(h.n, b->rd, b->mid, se_in, b->mid, b->se_rw, b->mid, b->se_rb, NULL, 0, 0, NN_ACT_SILU, se_mid,
                      b->rd);
        nn_gemm_fused(h.n, b->mid, b->rd, se_mid, b->rd, b->se_ew, b->rd, b->se_eb, NULL, 0, 0, NN_ACT_SIGMOID, gate,
                      b->mid);
        for (int i = 0; i < h.n; i++)
            nn_scale_channels(d.d + (size_t)i * hw * b->mid, hw, b->mid, gate + (size_t)i * b->mid);
    }
    nn_ctx_release(ctx, gate);
    nn_ctx_release(ctx, se_mid);
    nn_ctx_release(ctx, se_in);
    if (!b->ds) nn_tensor_release(ctx, h);
    nn_tensor y = nn_conv_forward(ctx, &b->pwl, d, b->skip ? &x : NULL);
    nn_tensor_release(ctx, d);
    return y;
}

static nn_tensor eff_forward(nn_ctx *ctx, const void *net, nn_tensor in)
{
    const effnet *m = net;
    nn_tensor x = nn_conv_forward(ctx, &m->stem, in, NULL);
    for (int i = 0; i < m->nblocks; i++) {
        nn_tensor y = eff_block_forward(ctx, &m->blocks[i], x);
        nn_tensor_release(ctx, x);
        x = y;
    }
    nn_tensor f = nn_conv_forward(ctx, &m->head, x, NULL);
    nn_tensor_release(ctx, x);
    nn_tensor e = nn_tensor_new(ctx, f.n, 1, 1, f.c);
    if (!ctx->measure)
        for (int i = 0; i < f.n; i++)
            nn_mean_pixels(f.d + (size_t)i * f.h * f.w * f.c, (long)f.h * f.w, f.c, e.d + (size_t)i * f.c);
    nn_tensor_release(ctx, f);
    return e;
}

static int eff_embed_dim(const void *net)
{
    return ((const effnet *)net)->v->head;
}

static int eff_detect(const nn_loader *L, char *name, size_t len, char *err)
{
    if (nn_peek(L, NULL, "conv_stem.weight") != 4 || nn_peek(L, NULL, "blocks.0.0.conv_dw.weight") < 0) return -1;
    int counts[16] = {0}, ns = 0;
    while (ns < 16 && nn_peek(L, NULL, "blocks.%d.0.conv_dw.weight", ns) >= 0) {
        while (nn_peek(L, NULL, "blocks.%d.%d.conv_dw.weight", ns, counts[ns]) >= 0) counts[ns]++;
        ns++;
    }
    for (int i = 0; i < EFF_NVARIANTS; i++) {
        const eff_variant *v = &eff_variants[i];
        int same = v->nstages == ns;
        for (int s = 0; same && s < ns; s++) same = v->st[s].repeats == counts[s];
        if (same) {
            snprintf(name, len, "%s", v->name);
            return 0;
        }
    }
    mc_fail(err, "%s: EfficientNet with %d stages is not a variant morphcat knows (it knows efficientnet_b0)",
            L->wf->path, ns);
    return -2;
}

const nn_arch_ops nn_efficientnet_ops = {
    .family = "efficientnet",
    .build = eff_build,
    .forward = eff_forward,
    .destroy = eff_destroy,
    .embed_dim = eff_embed_dim,
    .detect = eff_detect,
    .min_size = 1,
};
