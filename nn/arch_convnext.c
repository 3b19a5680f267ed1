/* nn/arch_convnext.c: timm 0.9.10 ConvNeXt (atto ... xlarge), both block layouts: conv_mlp (LayerNorm2d +
 * 1x1 convs, atto/femto/pico/nano) and Linear-MLP (LayerNorm + nn.Linear, tiny and larger); the two are
 * the same arithmetic and share one forward pass. Facts: ../shared/notes/zoobot.md section 1.4.
 * Load-time folding: the block LayerNorm's affine goes into fc1, the layer scale gamma into fc2, so the
 * pass is dwconv -> plain normalisation -> GEMM+GELU -> GEMM accumulated into the residual stream. */
#include "nn/engine.h"

#define CNX_EPS 1e-6f

typedef struct cnx_variant {
    const char *name;
    int depths[4], dims[4];
} cnx_variant;

static const cnx_variant cnx_variants[] = {
    {"convnext_atto", {2, 2, 6, 2}, {40, 80, 160, 320}},
    {"convnext_femto", {2, 2, 6, 2}, {48, 96, 192, 384}},
    {"convnext_pico", {2, 2, 6, 2}, {64, 128, 256, 512}},
    {"convnext_nano", {2, 2, 8, 2}, {80, 160, 320, 640}},
    {"convnext_tiny", {3, 3, 9, 3}, {96, 192, 384, 768}},
    {"convnext_small", {3, 3, 27, 3}, {96, 192, 384, 768}},
    {"convnext_base", {3, 3, 27, 3}, {128, 256, 512, 1024}},
    {"convnext_large", {3, 3, 27, 3}, {192, 384, 768, 1536}},
    {"convnext_xlarge", {3, 3, 27, 3}, {256, 512, 1024, 2048}},
};
#define CNX_NVARIANTS ((int)(sizeof cnx_variants / sizeof cnx_variants[0]))

typedef struct cnx_block {
    nn_conv dw;
    int c, hid;
    float *w1, *b1; /* [hid][c], LayerNorm affine folded in */
    float *w2, *b2; /* [c][hid], gamma folded in */
    nn_wpack *pk1, *pk2;
} cnx_block;

typedef struct convnext {
    const cnx_variant *v;
    nn_conv stem;
    float *stem_lnw, *stem_lnb;
    float *ds_lnw[4], *ds_lnb[4];
    nn_conv ds[4];
    cnx_block *blocks[4];
    float *head_lnw, *head_lnb;
} convnext;

static const cnx_variant *cnx_find(const char *arch)
{
    for (int i = 0; i < CNX_NVARIANTS; i++)
        if (!strcmp(cnx_variants[i].name, arch)) return &cnx_variants[i];
    return NULL;
}

int nn_convnext_knows(const char *arch)
{
    return cnx_find(arch) != NULL;
}

static float *load_vec(nn_loader *L, int n, const char *name)
{
    const float *p = nn_load(L, 1, &n, "%s", name);
    return p ? nn_copy_floats(p, (size_t)n) : NULL;
}

static int cnx_block_load(nn_loader *L, cnx_block *blk, const char *pre, int c)
{
    char k1[256], k2[256];
    blk->c = c;
    blk->hid = 4 * c;
    const int hid = blk->hid;
    snprintf(k1, sizeof k1, "%s.conv_dw.weight", pre);
    snprintf(k2, sizeof k2, "%s.conv_dw.bias", pre);
    if (nn_conv_load(L, &blk->dw, k1, k2, NULL, 0.0f, c, c, 7, 1, 3, 1, NN_ACT_NONE)) return -1;
    int dc[1] = {c}, dh[1] = {hid};
    const float *gamma = nn_load(L, 1, dc, "%s.gamma", pre);
    const float *lnw = nn_load(L, 1, dc, "%s.norm.weight", pre);
    const float *lnb = nn_load(L, 1, dc, "%s.norm.bias", pre);
    /* conv_mlp stores fc weights as (out,in,1,1) 1x1 convs, the Linear path as (out,in): take what the
     * file has (same numbers) and check it fully. */
    int conv_mlp = nn_peek(L, NULL, "%s.mlp.fc1.weight", pre) == 4;
    int d1[4] = {hid, c, 1, 1}, d2[4] = {c, hid, 1, 1};
    const float *w1 = nn_load(L, conv_mlp ? 4 : 2, d1, "%s.mlp.fc1.weight", pre);
    const float *b1 = nn_load(L, 1, dh, "%s.mlp.fc1.bias", pre);
    const float *w2 = nn_load(L, conv_mlp ? 4 : 2, d2, "%s.mlp.fc2.weight", pre);
    const float *b2 = nn_load(L, 1, dc, "%s.mlp.fc2.bias", pre);
    if (L->failed) return -1;
    blk->w1 = mc_malloc_aligned(sizeof(float) * (size_t)hid * c);
    blk->b1 = mc_malloc_aligned(sizeof(float) * (size_t)hid);
    blk->w2 = mc_malloc_aligned(sizeof(float) * (size_t)hid * c);
    blk->b2 = mc_malloc_aligned(sizeof(float) * (size_t)c);
    blk->pk1 = nn_wpack_new(1);
    blk->pk2 = nn_wpack_new(1);
    for (int o = 0; o < hid; o++) {
        double acc = b1[o];
        for (int i = 0; i < c; i++) {
            blk->w1[(size_t)o * c + i] = w1[(size_t)o * c + i] * lnw[i];
            acc += (double)w1[(size_t)o * c + i] * lnb[i];
        }
        blk->b1[o] = (float)acc;
    }
    for (int o = 0; o < c; o++) {
        for (int j = 0; j < hid; j++) blk->w2[(size_t)o * hid + j] = w2[(size_t)o * hid + j] * gamma[o];
        blk->b2[o] = b2[o] * gamma[o];
    }
    return 0;
}

static void cnx_destroy(void *p)
{
    convnext *m = p;
    if (!m) return;
    nn_conv_free(&m->stem);
    free(m->stem_lnw);
    free(m->stem_lnb);
    free(m->head_lnw);
    free(m->head_lnb);
    for (int s = 0; s < 4; s++) {
        free(m->ds_lnw[s]);
        free(m->ds_lnb[s]);
        nn_conv_free(&m->ds[s]);
        if (!m->blocks[s]) continue;
        for (int b = 0; b < m->v->depths[s]; b++) {
            cnx_block *blk = &m->blocks[s][b];
            nn_conv_free(&blk->dw);
            free(blk->w1);
            free(blk->b1);
            free(blk->w2);
            free(blk->b2);
            nn_wpack_delete(blk->pk1);
            nn_wpack_delete(blk->pk2);
        }
        free(m->blocks[s]);
    }
    free(m);
}

static void *cnx_build(nn_loader *L, const char *arch, int in_chans)
{
    const cnx_variant *v = cnx_find(arch);
    MC_ASSERT(v);
    convnext *m = mc_calloc(1, sizeof *m);
    m->v = v;
    char k1[256], k2[256];
    nn_conv_load(L, &m->stem, "stem.0.weight", "stem.0.bias", NULL, 0.0f, in_chans, v->dims[0], 4, 4, 0, 0,
                 NN_ACT_NONE);
    nn_conv_keep_fp32(&m->stem); /* the 4x4 patchify stem on 1-3 channels: fp32 (policy, docs/engine.md) */
    m->stem_lnw = load_vec(L, v->dims[0], "stem.1.weight");
    m->stem_lnb = load_vec(L, v->dims[0], "stem.1.bias");
    for (int s = 0; s < 4 && !L->failed; s++) {
        if (s > 0) {
            snprintf(k1, sizeof k1, "stages.%d.downsample.0.weight", s);
            m->ds_lnw[s] = load_vec(L, v->dims[s - 1], k1);
            snprintf(k1, sizeof k1, "stages.%d.downsample.0.bias", s);
            m->ds_lnb[s] = load_vec(L, v->dims[s - 1], k1);
            snprintf(k1, sizeof k1, "stages.%d.downsample.1.weight", s);
            snprintf(k2, sizeof k2, "stages.%d.downsample.1.bias", s);
            nn_conv_load(L, &m->ds[s], k1, k2, NULL, 0.0f, v->dims[s - 1], v->dims[s], 2, 2, 0, 0, NN_ACT_NONE);
        }
        m->blocks[s] = mc_calloc((size_t)v->depths[s], sizeof(cnx_block));
        for (int b = 0; b < v->depths[s] && !L->failed; b++) {
            snprintf(k1, sizeof k1, "stages.%d.blocks.%d", s, b);
            cnx_block_load(L, &m->blocks[s][b], k1, v->dims[s]);
        }
    }
    m->head_lnw = load_vec(L, v->dims[3], "head.norm.weight");
    m->head_lnb = load_vec(L, v->dims[3], "head.norm.bias");
    if (L->failed) {
        cnx_destroy(m);
        return NULL;
    }
    return m;
}

/* Rows of the residual stream processed together through the MLP: at least 1024 (short sgemm calls
 * lose 10-25%, see nn/layers.c), otherwise enough that the hidden block (rows x 4C) is about 1 MB. */
static long cnx_tile_rows(int hid, long P)
{
    long t = (1L << 18) / hid;
    if (t < 1024) t = 1024;
    return t > P ? P : t;
}

static void cnx_block_forward(nn_ctx *ctx, const cnx_block *blk, nn_tensor x)
{
    nn_tensor t = nn_conv_forward(ctx, &blk->dw, x, NULL);
    const long P = nn_tensor_pixels(x);
    const int c = blk->c, hid = blk->hid;
    const long T = cnx_tile_rows(hid, P);
    float *h = nn_ctx_alloc(ctx, (size_t)T * hid);
    float *s1 = nn_matmul_prepare(ctx, blk->pk1, (int)T, hid, c, blk->w1, c);
    float *s2 = nn_matmul_prepare(ctx, blk->pk2, (int)T, c, hid, blk->w2, hid);
    if (ctx->measure) ctx->macs += 2.0 * P * c * hid;
    if (!ctx->measure) {
        for (long p0 = 0; p0 < P; p0 += T) {
            int rows = (int)(P - p0 < T ? P - p0 : T);
            float *tr = t.d + (size_t)p0 * c, *xr = x.d + (size_t)p0 * c;
            nn_layernorm(tr, rows, c, CNX_EPS, NULL, NULL);
            nn_matmul(blk->pk1, s1, rows, hid, c, tr, c, blk->w1, c, blk->b1, NULL, 0, 0, NN_ACT_GELU, h, hid);
            nn_matmul(blk->pk2, s2, rows, c, hid, h, hid, blk->w2, hid, blk->b2, NULL, 0, 1, NN_ACT_NONE, xr, c);
        }
    }
    nn_ctx_release(ctx, s2);
    nn_ctx_release(ctx, s1);
    nn_ctx_release(ctx, h);
    nn_tensor_release(ctx, t);
}

static nn_tensor cnx_forward(nn_ctx *ctx, const void *net, nn_tensor in)
{
    const convnext *m = net;
    nn_tensor x = nn_conv_forward(ctx, &m->stem, in, NULL);
    if (!ctx->measure) nn_layernorm(x.d, nn_tensor_pixels(x), x.c, CNX_EPS, m->stem_lnw, m->stem_lnb);
    for (int s = 0; s < 4; s++) {
        if (s > 0) {
            if (!ctx->measure) nn_layernorm(x.d, nn_tensor_pixels(x), x.c, CNX_EPS, m->ds_lnw[s], m->ds_lnb[s]);
            nn_tensor y = nn_conv_forward(ctx, &m->ds[s], x, NULL);
            nn_tensor_release(ctx, x);
            x = y;
        }
        for (int b = 0; b < m->v->depths[s]; b++) cnx_block_forward(ctx, &m->blocks[s][b], x);
    }
    /* head: global average pool, then LayerNorm (timm NormMlpClassifierHead: pool first) */
    nn_tensor e = nn_tensor_new(ctx, x.n, 1, 1, x.c);
    if (!ctx->measure) {
        for (int i = 0; i < x.n; i++)
            nn_mean_pixels(x.d + (size_t)i * x.h * x.w * x.c, (long)x.h * x.w, x.c, e.d + (size_t)i * x.c);
        nn_layernorm(e.d, x.n, x.c, CNX_EPS, m->head_lnw, m->head_lnb);
    }
    nn_tensor_release(ctx, x);
    return e;
}

static int cnx_embed_dim(const void *net)
{
    return ((const convnext *)net)->v->dims[3];
}

static int cnx_detect(const nn_loader *L, char *name, size_t len, char *err)
{
    int64_t sh[NN_WMAXDIM];
    if (nn_peek(L, sh, "stem.0.weight") != 4 || nn_peek(L, NULL, "stages.0.blocks.0.conv_dw.weight") < 0) return -1;
    int dims[4], depths[4];
    dims[0] = (int)sh[0];
    for (int s = 1; s < 4; s++) dims[s] = nn_peek(L, sh, "stages.%d.downsample.1.weight", s) == 4 ? (int)sh[0] : -1;
    for (int s = 0; s < 4; s++) {
        depths[s] = 0;
        while (nn_peek(L, NULL, "stages.%d.blocks.%d.conv_dw.weight", s, depths[s]) >= 0) depths[s]++;
    }
    for (int i = 0; i < CNX_NVARIANTS; i++) {
        if (!memcmp(cnx_variants[i].dims, dims, sizeof dims) && !memcmp(cnx_variants[i].depths, depths, sizeof depths)) {
            snprintf(name, len, "%s", cnx_variants[i].name);
            return 0;
        }
    }
    mc_fail(err, "%s: ConvNeXt with dims (%d, %d, %d, %d) and depths (%d, %d, %d, %d) is not a timm variant "
                   "morphcat knows", L->wf->path, dims[0], dims[1], dims[2], dims[3], depths[0], depths[1], depths[2],
                   depths[3]);
    return -2;
}

const nn_arch_ops nn_convnext_ops = {
    .family = "convnext",
    .build = cnx_build,
    .forward = cnx_forward,
    .destroy = cnx_destroy,
    .embed_dim = cnx_embed_dim,
    .detect = cnx_detect,
    .min_size = 32,
};
