/* nn/arch_efficientnetv2.c: timm 0.9.10 EfficientNetV2 S, M and L, in both ports: tf_efficientnetv2_* (TF
 * 'SAME' padding, BatchNorm eps 1e-3) and efficientnetv2_* (symmetric padding, eps 1e-5). Blocks: ConvBnAct
 * ('cn', residual after the activation), FusedMBConv ('er': k x k expansion, 1x1 projection) and MBConv
 * ('ir' with squeeze-excite, rd = round(block input * 0.25), SiLU, sigmoid gate). Facts:
 * ../shared/notes/encoders2.md. Batch norm folded at load. Not here: the rw variants (efficientnetv2_rw_*).
 */
#include <math.h>

#include "nn/engine.h"
#include "nn/layers_same.h"

enum { V2_CN, V2_ER, V2_IR };

typedef struct v2_stage {
    int type, repeats, k, stride, expand, cout;
} v2_stage;

typedef struct v2_variant {
    const char *name; /* without the tf_ prefix */
    int stem, head, nstages;
    v2_stage st[7];
} v2_variant;

/* timm efficientnet.py _gen_efficientnetv2_s/m/l arch_def (all k3; ir stages se0.25; cn stages skip) */
static const v2_variant v2_variants[] = {
    {"efficientnetv2_s",
     24,
     1280,
     6,
     {{V2_CN, 2, 3, 1, 1, 24},
      {V2_ER, 4, 3, 2, 4, 48},
      {V2_ER, 4, 3, 2, 4, 64},
      {V2_IR, 6, 3, 2, 4, 128},
      {V2_IR, 9, 3, 1, 6, 160},
      {V2_IR, 15, 3, 2, 6, 256}}},
    {"efficientnetv2_m",
     24,
     1280,
     7,
     {{V2_CN, 3, 3, 1, 1, 24},
      {V2_ER, 5, 3, 2, 4, 48},
      {V2_ER, 5, 3, 2, 4, 80},
      {V2_IR, 7, 3, 2, 4, 160},
      {V2_IR, 14, 3, 1, 6, 176},
      {V2_IR, 18, 3, 2, 6, 304},
      {V2_IR, 5, 3, 1, 6, 512}}},
    {"efficientnetv2_l",
     32,
     1280,
     7,
     {{V2_CN, 4, 3, 1, 1, 32},
      {V2_ER, 7, 3, 2, 4, 64},
      {V2_ER, 7, 3, 2, 4, 96},
      {V2_IR, 10, 3, 2, 4, 192},
      {V2_IR, 19, 3, 1, 6, 224},
      {V2_IR, 25, 3, 2, 6, 384},
      {V2_IR, 7, 3, 1, 6, 640}}},
};
#define V2_NVARIANTS ((int)(sizeof v2_variants / sizeof v2_variants[0]))

typedef struct v2_block {
    int type, cin, mid, cout, rd, skip;
    nn_conv a;   /* cn: the conv; er: conv_exp; ir: conv_pw */
    nn_conv dw;  /* ir only */
    nn_conv pwl; /* er, ir */
    float *se_rw, *se_rb, *se_ew, *se_eb;
} v2_block;

typedef struct effnetv2 {
    const v2_variant *v;
    int tf; /* TF 'SAME' padding */
    nn_conv stem, head;
    int nblocks;
    v2_block *blocks;
} effnetv2;

static const v2_variant *v2_find(const char *arch, int *tf)
{
    int t = !strncmp(arch, "tf_", 3);
    if (tf) *tf = t;
    for (int i = 0; i < V2_NVARIANTS; i++)
        if (!strcmp(v2_variants[i].name, arch + (t ? 3 : 0))) return &v2_variants[i];
    return NULL;
}

int nn_efficientnetv2_knows(const char *arch)
{
    return v2_find(arch, NULL) != NULL;
}

static void v2_destroy(void *p)
{
    effnetv2 *m = p;
    if (!m) return;
    nn_conv_free(&m->stem);
    nn_conv_free(&m->head);
    for (int i = 0; i < m->nblocks; i++) {
        v2_block *b = &m->blocks[i];
        nn_conv_free(&b->a);
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

static float *v2_copy(nn_loader *L, int ndim, const int *dims, const char *pre, const char *suffix)
{
    const float *p = nn_load(L, ndim, dims, "%s.%s", pre, suffix);
    if (!p) return NULL;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)dims[i];
    return nn_copy_floats(p, n);
}

static void *v2_build(nn_loader *L, const char *arch, int in_chans)
{
    int tf = 0;
    const v2_variant *v = v2_find(arch, &tf);
    MC_ASSERT(v);
    const float eps = tf ? 1e-3f : 1e-5f;
    effnetv2 *m = mc_calloc(1, sizeof *m);
    m->v = v;
    m->tf = tf;
    for (int s = 0; s < v->nstages; s++) m->nblocks += v->st[s].repeats;
    m->blocks = mc_calloc((size_t)m->nblocks, sizeof(v2_block));
    /* pads: symmetric k/2 for the PyTorch port; the TF port decides per input size at run time */
    nn_conv_load(L, &m->stem, "conv_stem.weight", NULL, "bn1", eps, in_chans, v->stem, 3, 2, 1, 0,
                 NN_ACT_SILU);
    nn_conv_keep_fp32(&m->stem); /* 3x3 on 1-3 channels: fp32 (precision policy, docs/engine.md) */
    int cin = v->stem, bi = 0;
    char pre[64], w[128], bn[128];
    for (int s = 0; s < v->nstages && !L->failed; s++) {
        const v2_stage *st = &v->st[s];
        for (int r = 0; r < st->repeats && !L->failed; r++, bi++) {
            v2_block *b = &m->blocks[bi];
            int stride = r == 0 ? st->stride : 1;
            b->type = st->type;
            b->cin = cin;
            b->cout = st->cout;
            b->mid = cin * st->expand;
            b->skip = stride == 1 && cin == st->cout;
            snprintf(pre, sizeof pre, "blocks.%d.%d", s, r);
            snprintf(bn, sizeof bn, "%s.bn1", pre);
            if (b->type == V2_CN) {
                snprintf(w, sizeof w, "%s.conv.weight", pre);
                nn_conv_load(L, &b->a, w, NULL, bn, eps, cin, st->cout, st->k, stride, st->k / 2, 0,
                             NN_ACT_SILU);
            } else if (b->type == V2_ER) {
                snprintf(w, sizeof w, "%s.conv_exp.weight", pre);
                nn_conv_load(L, &b->a, w, NULL, bn, eps, cin, b->mid, st->k, stride, st->k / 2, 0,
                             NN_ACT_SILU);
                snprintf(w, sizeof w, "%s.conv_pwl.weight", pre);
                snprintf(bn, sizeof bn, "%s.bn2", pre);
                nn_conv_load(L, &b->pwl, w, NULL, bn, eps, b->mid, st->cout, 1, 1, 0, 0, NN_ACT_NONE);
            } else {
                /* se_ratio 0.25 is divided by the expansion (se_from_exp False): round(mid * 0.25 / e) */
                b->rd = (int)lround(b->mid * (0.25 / st->expand));
                if (b->rd < 1) b->rd = 1;
                snprintf(w, sizeof w, "%s.conv_pw.weight", pre);
                nn_conv_load(L, &b->a, w, NULL, bn, eps, cin, b->mid, 1, 1, 0, 0, NN_ACT_SILU);
                snprintf(w, sizeof w, "%s.conv_dw.weight", pre);
                snprintf(bn, sizeof bn, "%s.bn2", pre);
                nn_conv_load(L, &b->dw, w, NULL, bn, eps, b->mid, b->mid, st->k, stride, st->k / 2, 1,
                             NN_ACT_SILU);
                int drw[4] = {b->rd, b->mid, 1, 1}, drb[1] = {b->rd}, dew[4] = {b->mid, b->rd, 1, 1},
                    deb[1] = {b->mid};
                b->se_rw = v2_copy(L, 4, drw, pre, "se.conv_reduce.weight");
                b->se_rb = v2_copy(L, 1, drb, pre, "se.conv_reduce.bias");
                b->se_ew = v2_copy(L, 4, dew, pre, "se.conv_expand.weight");
                b->se_eb = v2_copy(L, 1, deb, pre, "se.conv_expand.bias");
                snprintf(w, sizeof w, "%s.conv_pwl.weight", pre);
                snprintf(bn, sizeof bn, "%s.bn3", pre);
                nn_conv_load(L, &b->pwl, w, NULL, bn, eps, b->mid, st->cout, 1, 1, 0, 0, NN_ACT_NONE);
            }
            cin = st->cout;
        }
    }
    nn_conv_load(L, &m->head, "conv_head.weight", NULL, "bn2", eps, cin, v->head, 1, 1, 0, 0, NN_ACT_SILU);
    if (L->failed) {
        v2_destroy(m);
        return NULL;
    }
    return m;
}

static nn_tensor v2_conv(nn_ctx *ctx, const effnetv2 *m, const nn_conv *cv, nn_tensor x, const nn_tensor *res)
{
    return m->tf ? nn_conv_forward_same(ctx, cv, x, res) : nn_conv_forward(ctx, cv, x, res);
}

/* MBConv's depthwise step with the squeeze-excite gate applied (as nn/arch_efficientnet.c). */
static nn_tensor v2_dw_se(nn_ctx *ctx, const effnetv2 *m, const v2_block *b, nn_tensor h)
{
    const nn_conv *dw = &b->dw;
    int pad = dw->pad;
    nn_tensor hp = m->tf ? nn_same_input(ctx, h, dw->k, dw->stride, &pad) : h;
    nn_tensor d = nn_tensor_new(ctx, h.n, nn_conv_out(hp.h, dw->k, dw->stride, pad),
                                nn_conv_out(hp.w, dw->k, dw->stride, pad), b->mid);
    float *se_in = nn_ctx_alloc(ctx, (size_t)h.n * b->mid);
    float *se_mid = nn_ctx_alloc(ctx, (size_t)h.n * b->rd);
    float *gate = nn_ctx_alloc(ctx, (size_t)h.n * b->mid);
    if (ctx->measure)
        ctx->macs += (double)nn_tensor_pixels(d) * b->mid * dw->k * dw->k + 2.0 * h.n * b->mid * b->rd;
    if (!ctx->measure) {
        const long hw = (long)d.h * d.w;
        for (int i = 0; i < h.n; i++) {
            float *csum = se_in + (size_t)i * b->mid;
            nn_dwconv(hp.d + (size_t)i * hp.h * hp.w * hp.c, hp.h, hp.w, hp.c, dw->w, dw->b, dw->k, dw->k,
                      dw->stride, pad, d.h, d.w, NN_ACT_SILU, d.d + (size_t)i * hw * b->mid, csum);
            for (int c = 0; c < b->mid; c++) csum[c] /= (float)hw;
        }
        nn_gemm_fused(h.n, b->rd, b->mid, se_in, b->mid, b->se_rw, b->mid, b->se_rb, NULL, 0, 0, NN_ACT_SILU,
                      se_mid, b->rd);
        nn_gemm_fused(h.n, b->mid, b->rd, se_mid, b->rd, b->se_ew, b->rd, b->se_eb, NULL, 0, 0,
                      NN_ACT_SIGMOID, gate, b->mid);
        for (int i = 0; i < h.n; i++)
            nn_scale_channels(d.d + (size_t)i * hw * b->mid, hw, b->mid, gate + (size_t)i * b->mid);
    }
    nn_ctx_release(ctx, gate);
    nn_ctx_release(ctx, se_mid);
    nn_ctx_release(ctx, se_in);
    if (m->tf) nn_same_input_release(ctx, hp, h);
    return d;
}

static nn_tensor v2_block_forward(nn_ctx *ctx, const effnetv2 *m, const v2_block *b, nn_tensor x)
{
    if (b->type == V2_CN) {
        /* ConvBnAct: the activation comes before the residual sum */
        nn_tensor y = v2_conv(ctx, m, &b->a, x, NULL);
        if (b->skip && !ctx->measure) {
            const size_t n = (size_t)nn_tensor_pixels(y) * y.c;
            for (size_t i = 0; i < n; i++) y.d[i] += x.d[i];
        }
        return y;
    }
    nn_tensor h = v2_conv(ctx, m, &b->a, x, NULL);
    nn_tensor d = h;
    if (b->type == V2_IR) {
        d = v2_dw_se(ctx, m, b, h);
        nn_tensor_release(ctx, h);
    }
    nn_tensor y = nn_conv_forward(ctx, &b->pwl, d, b->skip ? &x : NULL);
    nn_tensor_release(ctx, d);
    return y;
}

static nn_tensor v2_forward(nn_ctx *ctx, const void *net, nn_tensor in)
{
    const effnetv2 *m = net;
    nn_tensor x = v2_conv(ctx, m, &m->stem, in, NULL);
    for (int i = 0; i < m->nblocks; i++) {
        nn_tensor y = v2_block_forward(ctx, m, &m->blocks[i], x);
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

static int v2_embed_dim(const void *net)
{
    return ((const effnetv2 *)net)->v->head;
}

/* From the tensors (Lightning checkpoints, bare files): the stage depths give S, M or L. Padding and eps are
 * not in the tensors: the checkpoint's hyper_parameters architecture_name decides when it names a port,
 * else the TF port (the one Zoobot releases, tf_efficientnetv2_s). */
static int v2_detect(const nn_loader *L, char *name, size_t len, char *err)
{
    if (nn_peek(L, NULL, "conv_stem.weight") != 4 || nn_peek(L, NULL, "blocks.0.0.conv.weight") != 4 ||
        nn_peek(L, NULL, "blocks.1.0.conv_exp.weight") != 4)
        return -1;
    int counts[16] = {0}, ns = 0;
    while (ns < 16 && nn_peek(L, NULL, "blocks.%d.0.bn1.weight", ns) >= 0) {
        while (nn_peek(L, NULL, "blocks.%d.%d.bn1.weight", ns, counts[ns]) >= 0) counts[ns]++;
        ns++;
    }
    for (int i = 0; i < V2_NVARIANTS; i++) {
        const v2_variant *v = &v2_variants[i];
        int same = v->nstages == ns;
        for (int s = 0; same && s < ns; s++) same = v->st[s].repeats == counts[s];
        if (!same) continue;
        const char *hint = L->wf->arch_hint;
        int tf = 1;
        if (hint && v2_find(hint, &tf) == v) {
            snprintf(name, len, "%s", hint);
        } else {
            snprintf(name, len, "tf_%s", v->name);
        }
        return 0;
    }
    mc_fail(err,
            "%s: EfficientNetV2 with %d stages is not a variant morphcat knows (it knows "
            "[tf_]efficientnetv2_s, _m, _l)",
            L->wf->path, ns);
    return -2;
}

const nn_arch_ops nn_efficientnetv2_ops = {
    .family = "efficientnetv2",
    .build = v2_build,
    .forward = v2_forward,
    .destroy = v2_destroy,
    .embed_dim = v2_embed_dim,
    .detect = v2_detect,
    .min_size = 1,
};
