/* nn/arch_maxvit.c: timm 0.9.10 MaxViT (class MaxxVit) in its rw configurations (maxvit_tiny_rw_224 with a
 * learned relative-position table; maxvit_rmlp_* with the relative-position MLP and optional layer scales)
 * and its tf configurations (maxvit_*_tf_224: TF 'SAME' padding, BatchNorm eps 1e-3, tanh-GELU, key-minus-
 * query bias table, q/k/v in blocks, pool + LayerNorm + Linear + tanh head). Facts:
 * ../shared/notes/encoders2.md. Done once at load: batch norms (pre_norm too) folded into the MBConv
 * convolutions, layer scales into the projections, every relative-position bias (the MLP's included) expanded
 * to a [heads][tokens][tokens] matrix. Not here: the 'C'/'T' block types of CoAtNet and MaxxViT-V2, nor
 * partition sizes other than the one the weights were trained at. */
#include <math.h>

#include "nn/engine.h"
#include "nn/kernels_attn.h"
#include "nn/layers_same.h"

enum { MX_RW, MX_RMLP, MX_TF };

typedef struct mx_variant {
    const char *name;
    int kind;
    int dims[4], depths[4], stem[2];
    int hidden; /* head pre_logits width; 0: LayerNorm on the map, then average pool */
    int window; /* partition size p = img_size / 32 */
    int ls;     /* transformer layer scales ls1/ls2: MX_LS_NONE, _REQUIRED, or _IF_PRESENT */
} mx_variant;

enum { MX_LS_NONE, MX_LS_REQUIRED, MX_LS_IF_PRESENT };

/* timm maxxvit.py model_cfgs (stem widths, embed dims, depths, head_hidden_size, init_values). Layer scales:
 * rmlp_small sets init_values; for rmlp_base the scales are taken when the file has them (the notes do not
 * settle it), every other variant refuses them as unexpected keys. */
static const mx_variant mx_variants[] = {
    {"maxvit_tiny_rw_224", MX_RW, {64, 128, 256, 512}, {2, 2, 5, 2}, {32, 64}, 0, 7, MX_LS_NONE},
    {"maxvit_rmlp_tiny_rw_256", MX_RMLP, {64, 128, 256, 512}, {2, 2, 5, 2}, {32, 64}, 0, 8, MX_LS_NONE},
    {"maxvit_rmlp_small_rw_224", MX_RMLP, {96, 192, 384, 768}, {2, 2, 5, 2}, {32, 64}, 0, 7, MX_LS_REQUIRED},
    {"maxvit_rmlp_base_rw_224",
     MX_RMLP,
     {96, 192, 384, 768},
     {2, 6, 14, 2},
     {32, 64},
     768,
     7,
     MX_LS_IF_PRESENT},
    {"maxvit_tiny_tf_224", MX_TF, {64, 128, 256, 512}, {2, 2, 5, 2}, {64, 64}, 512, 7, MX_LS_NONE},
    {"maxvit_small_tf_224", MX_TF, {96, 192, 384, 768}, {2, 2, 5, 2}, {64, 64}, 768, 7, MX_LS_NONE},
    {"maxvit_base_tf_224", MX_TF, {96, 192, 384, 768}, {2, 6, 14, 2}, {64, 64}, 768, 7, MX_LS_NONE},
    {"maxvit_large_tf_224", MX_TF, {128, 256, 512, 1024}, {2, 6, 14, 2}, {128, 128}, 1024, 7, MX_LS_NONE},
};
#define MX_NVARIANTS ((int)(sizeof mx_variants / sizeof mx_variants[0]))
#define MX_DIM_HEAD 32
#define MX_RMLP_HIDDEN 512

typedef struct mx_mbconv {
    int cin, cout, mid, rd, stride, has_expand;
    nn_conv expand; /* shortcut 1x1 after the 2x2 average pool, when channels change */
    nn_conv c1;     /* conv1_1x1 with pre_norm (before) and norm1 (after) folded */
    nn_conv dw;     /* conv2_kxk with norm2 folded */
    nn_conv c3;     /* conv3_1x1 */
    float *se_w1, *se_b1, *se_w2, *se_b2;
} mx_mbconv;

typedef struct mx_attn { /* PartitionAttentionCl */
    int c, heads, hid;
    float *ln1w, *ln1b, *ln2w, *ln2b;
    float *qkv_w, *qkv_b;   /* [3c][c] */
    float *proj_w, *proj_b; /* [c][c], ls1 folded */
    float *fc1_w, *fc1_b;   /* [hid][c] */
    float *fc2_w, *fc2_b;   /* [c][hid], ls2 folded */
    float *bias;            /* [heads][p*p][p*p]: query row, key column */
    nn_wpack *pk_qkv, *pk_proj, *pk_fc1, *pk_fc2; /* bf16 packs of the four linears (first bf16 plan) */
} mx_attn;

typedef struct mx_block {
    mx_mbconv conv;
    mx_attn blk, grid;
} mx_block;

typedef struct maxvit {
    const mx_variant *v;
    int tf;
    float ln_eps;
    nn_conv stem1, stem2;
    mx_block *blocks[4];
    float *norm_w, *norm_b; /* norm.* (no hidden) or head.norm.* */
    float *pre_w, *pre_b;   /* head.pre_logits.fc */
} maxvit;

static const mx_variant *mx_find(const char *arch)
{
    for (int i = 0; i < MX_NVARIANTS; i++)
        if (!strcmp(mx_variants[i].name, arch)) return &mx_variants[i];
    return NULL;
}

int nn_maxvit_knows(const char *arch)
{
    return mx_find(arch) != NULL;
}

/* ---- loading ---------------------------------------------------------------------------------------- */

static float *mx_vec(nn_loader *L, int n, const char *fmt, const char *pre)
{
    const float *p = nn_load(L, 1, &n, fmt, pre);
    return p ? nn_copy_floats(p, (size_t)n) : NULL;
}

static float *mx_mat(nn_loader *L, int rows, int cols, int conv1x1, const char *fmt, const char *pre)
{
    int d[4] = {rows, cols, 1, 1};
    const float *p = nn_load(L, conv1x1 ? 4 : 2, d, fmt, pre);
    return p ? nn_copy_floats(p, (size_t)rows * cols) : NULL;
}

/* conv1_1x1 reads pre_norm(x) = s*x + t: fold it into the (already norm1-folded) 1x1 weights. */
static int mx_fold_prenorm(nn_loader *L, nn_conv *cv, const char *pre, float eps)
{
    const int cin = cv->cin;
    int d[1] = {cin};
    const float *g = nn_load(L, 1, d, "%s.pre_norm.weight", pre);
    const float *b = nn_load(L, 1, d, "%s.pre_norm.bias", pre);
    const float *mu = nn_load(L, 1, d, "%s.pre_norm.running_mean", pre);
    const float *var = nn_load(L, 1, d, "%s.pre_norm.running_var", pre);
    if (L->failed) return -1;
    double *s = mc_malloc(sizeof(double) * (size_t)cin), *t = mc_malloc(sizeof(double) * (size_t)cin);
    for (int i = 0; i < cin; i++) {
        if (!(var[i] + eps > 0.0f)) {
            free(s);
            free(t);
            L->failed = 1;
            return mc_fail(L->err, "%s: key '%s%s.pre_norm.running_var' is negative at channel %d",
                           L->wf->path, L->prefix, pre, i);
        }
        s[i] = (double)g[i] / sqrt((double)var[i] + (double)eps);
        t[i] = (double)b[i] - (double)mu[i] * s[i];
    }
    for (int o = 0; o < cv->cout; o++) {
        float *w = cv->w + (size_t)o * cin;
        double acc = cv->b[o];
        for (int i = 0; i < cin; i++) {
            acc += (double)w[i] * t[i];
            w[i] = (float)(w[i] * s[i]);
        }
        cv->b[o] = (float)acc;
    }
    free(s);
    free(t);
    return 0;
}

static int mx_mbconv_load(nn_loader *L, const maxvit *m, mx_mbconv *b, const char *pre, int cin, int cout,
                          int stride)
{
    const float bn_eps = m->tf ? 1e-3f : 1e-5f;
    const nn_act act = m->tf ? NN_ACT_NONE : NN_ACT_SILU; /* tf: tanh-GELU applied after the conv */
    char k1[160], k2[160], k3[160];
    b->cin = cin;
    b->cout = cout;
    b->stride = stride;
    /* rw: mid from the input channels, SE rd = mid/16; tf: mid from the output, rd = out/4 */
    b->mid = m->tf ? 4 * cout : 4 * cin;
    b->rd = m->tf ? cout / 4 : b->mid / 16;
    b->has_expand = stride == 2 && cin != cout;
    if (b->has_expand) {
        snprintf(k1, sizeof k1, "%s.shortcut.expand.weight", pre);
        snprintf(k2, sizeof k2, "%s.shortcut.expand.bias", pre);
        nn_conv_load(L, &b->expand, k1, m->tf ? k2 : NULL, NULL, 0.0f, cin, cout, 1, 1, 0, 0, NN_ACT_NONE);
    }
    snprintf(k1, sizeof k1, "%s.conv1_1x1.weight", pre);
    snprintf(k3, sizeof k3, "%s.norm1", pre);
    if (nn_conv_load(L, &b->c1, k1, NULL, k3, bn_eps, cin, b->mid, 1, 1, 0, 0, act)) return -1;
    if (mx_fold_prenorm(L, &b->c1, pre, bn_eps)) return -1;
    snprintf(k1, sizeof k1, "%s.conv2_kxk.weight", pre);
    snprintf(k3, sizeof k3, "%s.norm2", pre);
    nn_conv_load(L, &b->dw, k1, NULL, k3, bn_eps, b->mid, b->mid, 3, stride, 1, 1, act);
    b->se_w1 = mx_mat(L, b->rd, b->mid, 1, "%s.se.fc1.weight", pre);
    b->se_b1 = mx_vec(L, b->rd, "%s.se.fc1.bias", pre);
    b->se_w2 = mx_mat(L, b->mid, b->rd, 1, "%s.se.fc2.weight", pre);
    b->se_b2 = mx_vec(L, b->mid, "%s.se.fc2.bias", pre);
    snprintf(k1, sizeof k1, "%s.conv3_1x1.weight", pre);
    snprintf(k2, sizeof k2, "%s.conv3_1x1.bias", pre);
    return nn_conv_load(L, &b->c3, k1, m->tf ? k2 : NULL, NULL, 0.0f, b->mid, cout, 1, 1, 0, 0, NN_ACT_NONE);
}

/* The relative-position bias of one attention layer as a [heads][n][n] matrix, n = p*p. */
static float *mx_bias_load(nn_loader *L, const maxvit *m, const char *pre, int heads)
{
    const int p = m->v->window, n = p * p, v = 2 * p - 1;
    float *bias = mc_malloc(sizeof(float) * (size_t)heads * n * n);
    double *tab = NULL; /* rw and rmlp: [(2p-1)^2][heads], indexed by query minus key */
    if (m->v->kind == MX_TF) {
        int d[3] = {heads, v, v};
        const float *t = nn_load(L, 3, d, "%s.attn.rel_pos.relative_position_bias_table", pre);
        if (!t) goto fail;
        /* RelPosBiasTf: bias[h][(y,x)][(y',x')] = table[h][y'-y+p-1][x'-x+p-1] (key minus query) */
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) {
                    int dy = j / p - i / p + p - 1, dx = j % p - i % p + p - 1;
                    bias[((size_t)h * n + i) * n + j] = t[((size_t)h * v + dy) * v + dx];
                }
        return bias;
    }
    tab = mc_malloc(sizeof(double) * (size_t)v * v * heads);
    if (m->v->kind == MX_RW) {
        int d[2] = {v * v, heads};
        const float *t = nn_load(L, 2, d, "%s.attn.rel_pos.relative_position_bias_table", pre);
        if (!t) goto fail;
        for (size_t i = 0; i < (size_t)v * v * heads; i++) tab[i] = t[i];
    } else {
        /* RelPosMlp, mode 'cr': Linear(2, 512) + ReLU + Linear(512, heads) on sign(d) ln(1 + |d|), evaluated
         * here once for every offset (it does not depend on the image) */
        const int hid = MX_RMLP_HIDDEN;
        int d1[2] = {hid, 2}, d1b[1] = {hid}, d2[2] = {heads, hid}, d2b[1] = {heads};
        const float *w1 = nn_load(L, 2, d1, "%s.attn.rel_pos.mlp.fc1.weight", pre);
        const float *b1 = nn_load(L, 1, d1b, "%s.attn.rel_pos.mlp.fc1.bias", pre);
        const float *w2 = nn_load(L, 2, d2, "%s.attn.rel_pos.mlp.fc2.weight", pre);
        const float *b2 = nn_load(L, 1, d2b, "%s.attn.rel_pos.mlp.fc2.bias", pre);
        if (L->failed) goto fail;
        double *hv = mc_malloc(sizeof(double) * (size_t)hid);
        for (int a = 0; a < v; a++)
            for (int c = 0; c < v; c++) {
                double dy = a - (p - 1), dx = c - (p - 1);
                /* as torch: float32 log of 1 + |d| */
                double fy = (dy > 0) - (dy < 0), fx = (dx > 0) - (dx < 0);
                fy *= (double)logf(1.0f + (float)fabs(dy));
                fx *= (double)logf(1.0f + (float)fabs(dx));
                for (int k = 0; k < hid; k++) {
                    double z = (double)b1[k] + (double)w1[2 * k] * fy + (double)w1[2 * k + 1] * fx;
                    hv[k] = z > 0.0 ? z : 0.0;
                }
                for (int h = 0; h < heads; h++) {
                    double z = b2[h];
                    for (int k = 0; k < hid; k++) z += (double)w2[(size_t)h * hid + k] * hv[k];
                    tab[((size_t)a * v + c) * heads + h] = z;
                }
            }
        free(hv);
    }
    /* gen_relative_position_index: (dy + p - 1) * (2p - 1) + (dx + p - 1), d = query - key */
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                int dy = i / p - j / p + p - 1, dx = i % p - j % p + p - 1;
                bias[((size_t)h * n + i) * n + j] = (float)tab[((size_t)dy * v + dx) * heads + h];
            }
    free(tab);
    return bias;
fail:
    free(tab);
    free(bias);
    return NULL;
}

/* Fold a layer scale into the Linear that feeds it: rows of w and entries of b times gamma. */
static void mx_fold_gamma(float *w, float *b, int rows, int cols, const float *gamma)
{
    for (int o = 0; o < rows; o++) {
        for (int i = 0; i < cols; i++) w[(size_t)o * cols + i] *= gamma[o];
        b[o] *= gamma[o];
    }
}

static int mx_attn_load(nn_loader *L, const maxvit *m, mx_attn *a, const char *pre, int c)
{
    a->c = c;
    a->heads = c / MX_DIM_HEAD;
    a->hid = 4 * c;
    /* bf16 policy (docs/engine.md): the four linears take the split-weight product; LayerNorm, the attention
     * scores, softmax and the weighted sum of values stay fp32 */
    a->pk_qkv = nn_wpack_new(NN_SPLIT_W);
    a->pk_proj = nn_wpack_new(NN_SPLIT_W);
    a->pk_fc1 = nn_wpack_new(NN_SPLIT_W);
    a->pk_fc2 = nn_wpack_new(NN_SPLIT_W);
    a->ln1w = mx_vec(L, c, "%s.norm1.weight", pre);
    a->ln1b = mx_vec(L, c, "%s.norm1.bias", pre);
    a->qkv_w = mx_mat(L, 3 * c, c, 0, "%s.attn.qkv.weight", pre);
    a->qkv_b = mx_vec(L, 3 * c, "%s.attn.qkv.bias", pre);
    if (L->failed) return -1;
    a->bias = mx_bias_load(L, m, pre, a->heads);
    a->proj_w = mx_mat(L, c, c, 0, "%s.attn.proj.weight", pre);
    a->proj_b = mx_vec(L, c, "%s.attn.proj.bias", pre);
    a->ln2w = mx_vec(L, c, "%s.norm2.weight", pre);
    a->ln2b = mx_vec(L, c, "%s.norm2.bias", pre);
    a->fc1_w = mx_mat(L, a->hid, c, 0, "%s.mlp.fc1.weight", pre);
    a->fc1_b = mx_vec(L, a->hid, "%s.mlp.fc1.bias", pre);
    a->fc2_w = mx_mat(L, c, a->hid, 0, "%s.mlp.fc2.weight", pre);
    a->fc2_b = mx_vec(L, c, "%s.mlp.fc2.bias", pre);
    if (L->failed) return -1;
    /* layer scales (LayerScale gamma) exist when the config sets init_values; fold them */
    int d[1] = {c}, ls = m->v->ls;
    if (ls == MX_LS_REQUIRED || (ls == MX_LS_IF_PRESENT && nn_peek(L, NULL, "%s.ls1.gamma", pre) >= 0)) {
        const float *g = nn_load(L, 1, d, "%s.ls1.gamma", pre);
        if (g) mx_fold_gamma(a->proj_w, a->proj_b, c, c, g);
    }
    if (ls == MX_LS_REQUIRED || (ls == MX_LS_IF_PRESENT && nn_peek(L, NULL, "%s.ls2.gamma", pre) >= 0)) {
        const float *g = nn_load(L, 1, d, "%s.ls2.gamma", pre);
        if (g) mx_fold_gamma(a->fc2_w, a->fc2_b, c, a->hid, g);
    }
    return L->failed ? -1 : 0;
}

static void mx_attn_free(mx_attn *a)
{
    float *p[] = {a->ln1w,   a->ln1b,  a->ln2w,  a->ln2b,  a->qkv_w, a->qkv_b, a->proj_w,
                  a->proj_b, a->fc1_w, a->fc1_b, a->fc2_w, a->fc2_b, a->bias};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
    nn_wpack *k[] = {a->pk_qkv, a->pk_proj, a->pk_fc1, a->pk_fc2};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) nn_wpack_delete(k[i]);
}

static void mx_destroy(void *net)
{
    maxvit *m = net;
    if (!m) return;
    nn_conv_free(&m->stem1);
    nn_conv_free(&m->stem2);
    for (int s = 0; s < 4; s++) {
        if (!m->blocks[s]) continue;
        for (int i = 0; i < m->v->depths[s]; i++) {
            mx_block *b = &m->blocks[s][i];
            nn_conv_free(&b->conv.expand);
            nn_conv_free(&b->conv.c1);
            nn_conv_free(&b->conv.dw);
            nn_conv_free(&b->conv.c3);
            free(b->conv.se_w1);
            free(b->conv.se_b1);
            free(b->conv.se_w2);
            free(b->conv.se_b2);
            mx_attn_free(&b->blk);
            mx_attn_free(&b->grid);
        }
        free(m->blocks[s]);
    }
    free(m->norm_w);
    free(m->norm_b);
    free(m->pre_w);
    free(m->pre_b);
    free(m);
}

static void *mx_build(nn_loader *L, const char *arch, int in_chans)
{
    const mx_variant *v = mx_find(arch);
    MC_ASSERT(v);
    maxvit *m = mc_calloc(1, sizeof *m);
    m->v = v;
    m->tf = v->kind == MX_TF;
    m->ln_eps = m->tf ? 1e-5f : 1e-6f;
    const float bn_eps = m->tf ? 1e-3f : 1e-5f;
    nn_conv_load(L, &m->stem1, "stem.conv1.weight", m->tf ? "stem.conv1.bias" : NULL, "stem.norm1", bn_eps,
                 in_chans, v->stem[0], 3, 2, 1, 0, m->tf ? NN_ACT_NONE : NN_ACT_SILU);
    nn_conv_keep_fp32(&m->stem1); /* 3x3 on 1-3 channels: fp32 (precision policy, docs/engine.md) */
    nn_conv_load(L, &m->stem2, "stem.conv2.weight", m->tf ? "stem.conv2.bias" : NULL, NULL, 0.0f, v->stem[0],
                 v->stem[1], 3, 1, 1, 0, NN_ACT_NONE);
    int cin = v->stem[1];
    char pre[96];
    for (int s = 0; s < 4 && !L->failed; s++) {
        m->blocks[s] = mc_calloc((size_t)v->depths[s], sizeof(mx_block));
        for (int i = 0; i < v->depths[s] && !L->failed; i++) {
            mx_block *b = &m->blocks[s][i];
            snprintf(pre, sizeof pre, "stages.%d.blocks.%d.conv", s, i);
            if (mx_mbconv_load(L, m, &b->conv, pre, cin, v->dims[s], i == 0 ? 2 : 1)) break;
            snprintf(pre, sizeof pre, "stages.%d.blocks.%d.attn_block", s, i);
            if (mx_attn_load(L, m, &b->blk, pre, v->dims[s])) break;
            snprintf(pre, sizeof pre, "stages.%d.blocks.%d.attn_grid", s, i);
            if (mx_attn_load(L, m, &b->grid, pre, v->dims[s])) break;
            cin = v->dims[s];
        }
    }
    const int c = v->dims[3];
    if (!L->failed && v->hidden) {
        m->norm_w = mx_vec(L, c, "%s.norm.weight", "head");
        m->norm_b = mx_vec(L, c, "%s.norm.bias", "head");
        m->pre_w = mx_mat(L, v->hidden, c, 0, "%s.pre_logits.fc.weight", "head");
        m->pre_b = mx_vec(L, v->hidden, "%s.pre_logits.fc.bias", "head");
    } else if (!L->failed) {
        m->norm_w = mx_vec(L, c, "%s.weight", "norm");
        m->norm_b = mx_vec(L, c, "%s.bias", "norm");
    }
    if (L->failed) {
        mx_destroy(m);
        return NULL;
    }
    return m;
}

/* ---- forward ---------------------------------------------------------------------------------------- */

static void mx_act(const nn_ctx *ctx, const maxvit *m, nn_tensor t)
{
    if (m->tf && !ctx->measure) nn_gelu_tanh_apply(t.d, (size_t)nn_tensor_pixels(t) * t.c);
}

static nn_tensor mx_conv(nn_ctx *ctx, const maxvit *m, const nn_conv *cv, nn_tensor x, const nn_tensor *res)
{
    return m->tf && cv->stride > 1 ? nn_conv_forward_same(ctx, cv, x, res) : nn_conv_forward(ctx, cv, x, res);
}

static nn_tensor mx_mbconv_forward(nn_ctx *ctx, const maxvit *m, const mx_mbconv *b, nn_tensor x)
{
    /* shortcut: 2x2 average pool (+ 1x1 expansion) on the stage's first block */
    nn_tensor sc = x, pooled = {0};
    if (b->stride == 2) {
        pooled = nn_tensor_new(ctx, x.n, x.h / 2, x.w / 2, x.c);
        if (!ctx->measure)
            for (int i = 0; i < x.n; i++)
                nn_avgpool2(x.d + (size_t)i * x.h * x.w * x.c, x.h, x.w, x.c,
                            pooled.d + (size_t)i * pooled.h * pooled.w * x.c);
        sc = pooled;
        if (b->has_expand) {
            sc = nn_conv_forward(ctx, &b->expand, pooled, NULL);
            nn_tensor_release(ctx, pooled);
        }
    }
    nn_tensor h = nn_conv_forward(ctx, &b->c1, x, NULL);
    mx_act(ctx, m, h);
    const nn_conv *dw = &b->dw;
    int pad = dw->pad;
    nn_tensor hp = m->tf ? nn_same_input(ctx, h, 3, dw->stride, &pad) : h;
    nn_tensor d = nn_tensor_new(ctx, h.n, nn_conv_out(hp.h, 3, dw->stride, pad),
                                nn_conv_out(hp.w, 3, dw->stride, pad), b->mid);
    float *se_in = nn_ctx_alloc(ctx, (size_t)h.n * b->mid);
    float *se_mid = nn_ctx_alloc(ctx, (size_t)h.n * b->rd);
    float *gate = nn_ctx_alloc(ctx, (size_t)h.n * b->mid);
    if (ctx->measure) ctx->macs += (double)nn_tensor_pixels(d) * b->mid * 9 + 2.0 * h.n * b->mid * b->rd;
    if (!ctx->measure) {
        const long hw = (long)d.h * d.w;
        for (int i = 0; i < h.n; i++) {
            float *di = d.d + (size_t)i * hw * b->mid;
            nn_dwconv(hp.d + (size_t)i * hp.h * hp.w * hp.c, hp.h, hp.w, hp.c, dw->w, dw->b, 3, 3, dw->stride,
                      pad, d.h, d.w, dw->act, di, NULL);
            if (m->tf) nn_gelu_tanh_apply(di, (size_t)hw * b->mid);
            nn_mean_pixels(di, hw, b->mid, se_in + (size_t)i * b->mid);
        }
        /* SEModule: fc1 + SiLU (attn_act_layer, both configurations), fc2 + sigmoid */
        nn_gemm_fused(h.n, b->rd, b->mid, se_in, b->mid, b->se_w1, b->mid, b->se_b1, NULL, 0, 0, NN_ACT_SILU,
                      se_mid, b->rd);
        nn_gemm_fused(h.n, b->mid, b->rd, se_mid, b->rd, b->se_w2, b->rd, b->se_b2, NULL, 0, 0,
                      NN_ACT_SIGMOID, gate, b->mid);
        for (int i = 0; i < h.n; i++)
            nn_scale_channels(d.d + (size_t)i * hw * b->mid, hw, b->mid, gate + (size_t)i * b->mid);
    }
    nn_ctx_release(ctx, gate);
    nn_ctx_release(ctx, se_mid);
    nn_ctx_release(ctx, se_in);
    if (m->tf) nn_same_input_release(ctx, hp, h);
    nn_tensor_release(ctx, h);
    nn_tensor y = nn_conv_forward(ctx, &b->c3, d, &sc);
    nn_tensor_release(ctx, d);
    if (sc.d != x.d) nn_tensor_release(ctx, sc);
    return y;
}

/* x + attn(LN(x)) over the partitions, then x + mlp(LN(x)), in place on x. Linears run on groups of whole
 * images (at least ~1024 rows per GEMM); attention runs per image on its token sets. */
static void mx_attn_forward(nn_ctx *ctx, const maxvit *m, const mx_attn *a, nn_tensor x, int grid)
{
    const int p = m->v->window, ntok = p * p, c = a->c, hid = a->hid;
    const long P = (long)x.h * x.w;
    const int nsets = (int)(P / ntok);
    int per = (int)((1024 + P - 1) / P);
    if (per > x.n) per = x.n;
    const long R = per * P;
    float *pix = nn_ctx_alloc(ctx, (size_t)P); /* int indices in float-sized slots */
    float *t = nn_ctx_alloc(ctx, (size_t)R * c);
    float *qkv = nn_ctx_alloc(ctx, (size_t)R * 3 * c);
    float *h = nn_ctx_alloc(ctx, (size_t)R * hid);
    float *scr = nn_ctx_alloc(ctx, nn_attn_scratch(ntok, a->heads, MX_DIM_HEAD));
    float *s_qkv = nn_matmul_prepare(ctx, a->pk_qkv, (int)R, 3 * c, c, a->qkv_w, c);
    float *s_proj = nn_matmul_prepare(ctx, a->pk_proj, (int)R, c, c, a->proj_w, c);
    float *s_fc1 = nn_matmul_prepare(ctx, a->pk_fc1, (int)R, hid, c, a->fc1_w, c);
    float *s_fc2 = nn_matmul_prepare(ctx, a->pk_fc2, (int)R, c, hid, a->fc2_w, hid);
    if (ctx->measure) ctx->macs += (double)x.n * P * (6.0 * c * c + 2.0 * c * ntok + 2.0 * c * hid);
    if (!ctx->measure) {
        int *ip = (int *)(void *)pix;
        if (grid)
            nn_partition_grid(x.h, x.w, p, ip);
        else
            nn_partition_window(x.h, x.w, p, ip);
        for (int i0 = 0; i0 < x.n; i0 += per) {
            const int k = x.n - i0 < per ? x.n - i0 : per;
            const int rows = (int)(k * P);
            float *xr = x.d + (size_t)i0 * P * c;
            nn_layernorm_to(xr, t, rows, c, m->ln_eps, a->ln1w, a->ln1b);
            nn_matmul(a->pk_qkv, s_qkv, rows, 3 * c, c, t, c, a->qkv_w, c, a->qkv_b, NULL, 0, 0, NN_ACT_NONE, qkv, 3 * c);
            for (int i = 0; i < k; i++)
                nn_attn_sets(qkv + (size_t)i * P * 3 * c, nsets, ntok, ip, a->heads, MX_DIM_HEAD, !m->tf,
                             a->bias, scr, t + (size_t)i * P * c);
            nn_matmul(a->pk_proj, s_proj, rows, c, c, t, c, a->proj_w, c, a->proj_b, NULL, 0, 1, NN_ACT_NONE, xr, c);
            nn_layernorm_to(xr, t, rows, c, m->ln_eps, a->ln2w, a->ln2b);
            nn_matmul(a->pk_fc1, s_fc1, rows, hid, c, t, c, a->fc1_w, c, a->fc1_b, NULL, 0, 0,
                      m->tf ? NN_ACT_NONE : NN_ACT_GELU, h, hid);
            if (m->tf) nn_gelu_tanh_apply(h, (size_t)rows * hid);
            nn_matmul(a->pk_fc2, s_fc2, rows, c, hid, h, hid, a->fc2_w, hid, a->fc2_b, NULL, 0, 1, NN_ACT_NONE, xr, c);
        }
    }
    nn_ctx_release(ctx, s_fc2);
    nn_ctx_release(ctx, s_fc1);
    nn_ctx_release(ctx, s_proj);
    nn_ctx_release(ctx, s_qkv);
    nn_ctx_release(ctx, scr);
    nn_ctx_release(ctx, h);
    nn_ctx_release(ctx, qkv);
    nn_ctx_release(ctx, t);
    nn_ctx_release(ctx, pix);
}

static nn_tensor mx_forward(nn_ctx *ctx, const void *net, nn_tensor in)
{
    const maxvit *m = net;
    const mx_variant *v = m->v;
    nn_tensor s1 = mx_conv(ctx, m, &m->stem1, in, NULL);
    mx_act(ctx, m, s1);
    nn_tensor x = nn_conv_forward(ctx, &m->stem2, s1, NULL);
    nn_tensor_release(ctx, s1);
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < v->depths[s]; i++) {
            const mx_block *b = &m->blocks[s][i];
            nn_tensor y = mx_mbconv_forward(ctx, m, &b->conv, x);
            nn_tensor_release(ctx, x);
            x = y;
            if (x.h % v->window ||
                x.w % v->window) { /* refused earlier by check_size; a size bug otherwise */
                MC_ASSERT(ctx->measure);
                ctx->too_small = 1;
                continue;
            }
            mx_attn_forward(ctx, m, &b->blk, x, 0);
            mx_attn_forward(ctx, m, &b->grid, x, 1);
        }
    const int c = v->dims[3], D = v->hidden ? v->hidden : c;
    nn_tensor e = nn_tensor_new(ctx, x.n, 1, 1, D);
    float *pooled = nn_ctx_alloc(ctx, (size_t)x.n * c);
    if (ctx->measure) ctx->macs += (double)x.n * c * D * (v->hidden ? 1 : 0);
    if (!ctx->measure) {
        const long P = (long)x.h * x.w;
        if (!v->hidden) nn_layernorm(x.d, x.n * P, c, m->ln_eps, m->norm_w, m->norm_b); /* LN2d, then pool */
        for (int i = 0; i < x.n; i++)
            nn_mean_pixels(x.d + (size_t)i * P * c, P, c,
                           v->hidden ? pooled + (size_t)i * c : e.d + (size_t)i * c);
        if (v->hidden) { /* NormMlpClassifierHead: pool, LN, Linear, tanh */
            nn_layernorm(pooled, x.n, c, m->ln_eps, m->norm_w, m->norm_b);
            nn_gemm_fused(x.n, D, c, pooled, c, m->pre_w, c, m->pre_b, NULL, 0, 0, NN_ACT_NONE, e.d, D);
            for (size_t j = 0; j < (size_t)x.n * D; j++) e.d[j] = tanhf(e.d[j]);
        }
    }
    nn_ctx_release(ctx, pooled);
    nn_tensor_release(ctx, x);
    return e;
}

static int mx_embed_dim(const void *net)
{
    const maxvit *m = net;
    return m->v->hidden ? m->v->hidden : m->v->dims[3];
}

static int mx_check_size(const void *net, const char *arch, int height, int width, char *err)
{
    const maxvit *m = net;
    const int side = 32 * m->v->window;
    if (height == side && width == side) return 0;
    return mc_fail(
        err,
        "%s takes %dx%d inputs only (its %dx%d attention windows and grids must tile the 1/32-scale "
        "feature map, as timm builds it for these weights); got %dx%d",
        arch, side, side, m->v->window, m->v->window, height, width);
}

/* From the tensors: which relative-position kind, stem, dims, depths, head. */
static int mx_detect(const nn_loader *L, char *name, size_t len, char *err)
{
    int64_t sh[NN_WMAXDIM];
    if (nn_peek(L, sh, "stem.conv1.weight") != 4 ||
        nn_peek(L, NULL, "stages.0.blocks.0.attn_block.attn.qkv.weight") != 2)
        return -1;
    int stem0 = (int)sh[0], kind, window = 0;
    int nd = nn_peek(L, sh, "stages.0.blocks.0.attn_block.attn.rel_pos.relative_position_bias_table");
    if (nd == 2) {
        kind = MX_RW;
        window = ((int)lround(sqrt((double)sh[0])) + 1) / 2;
    } else if (nd == 3) {
        kind = MX_TF;
        window = ((int)sh[1] + 1) / 2;
    } else {
        kind = MX_RMLP;
    }
    int dims[4] = {0}, depths[4] = {0};
    for (int s = 0; s < 4; s++) {
        if (nn_peek(L, sh, "stages.%d.blocks.0.conv.conv3_1x1.weight", s) == 4) dims[s] = (int)sh[0];
        while (nn_peek(L, NULL, "stages.%d.blocks.%d.conv.conv3_1x1.weight", s, depths[s]) >= 0) depths[s]++;
    }
    int hidden = nn_peek(L, sh, "head.pre_logits.fc.weight") == 2 ? (int)sh[0] : 0;
    const char *hint = L->wf->arch_hint;
    const mx_variant *found = NULL;
    for (int i = 0; i < MX_NVARIANTS; i++) {
        const mx_variant *v = &mx_variants[i];
        if (v->kind != kind || v->stem[0] != stem0 || v->hidden != hidden ||
            memcmp(v->dims, dims, sizeof dims) || memcmp(v->depths, depths, sizeof depths) ||
            (window && v->window != window))
            continue;
        if (!found || (hint && !strcmp(hint, v->name))) found = v;
    }
    if (found) {
        snprintf(name, len, "%s", found->name);
        return 0;
    }
    mc_fail(
        err,
        "%s: MaxViT with dims (%d, %d, %d, %d) and depths (%d, %d, %d, %d) is not a timm variant morphcat "
        "knows",
        L->wf->path, dims[0], dims[1], dims[2], dims[3], depths[0], depths[1], depths[2], depths[3]);
    return -2;
}

const nn_arch_ops nn_maxvit_ops = {
    .family = "maxvit",
    .build = mx_build,
    .forward = mx_forward,
    .destroy = mx_destroy,
    .embed_dim = mx_embed_dim,
    .detect = mx_detect,
    .min_size = 224,
    .classifier = "head.fc",
    .check_size = mx_check_size,
};
