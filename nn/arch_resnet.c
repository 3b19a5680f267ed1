/* nn/arch_resnet.c: timm / torchvision ResNet-18, 34, 50, 101, 152 (same state_dict keys in both): 7x7
 * stem, max pool, BasicBlock or Bottleneck stages with the stride on the 3x3 conv (v1.5), average pool.
 * Batch norm (eps 1e-5) is folded into each conv; the residual add and ReLU run in the last GEMM's
 * epilogue. Not here: the deep-stem / avg-down variants (resnet50d etc.). */
#include "nn/engine.h"

#define RES_EPS 1e-5f

typedef struct res_variant {
    const char *name;
    int bottleneck;
    int layers[4];
} res_variant;

static const res_variant res_variants[] = {
    {"resnet18", 0, {2, 2, 2, 2}},  {"resnet34", 0, {3, 4, 6, 3}},   {"resnet50", 1, {3, 4, 6, 3}},
    {"resnet101", 1, {3, 4, 23, 3}}, {"resnet152", 1, {3, 8, 36, 3}},
};
#define RES_NVARIANTS ((int)(sizeof res_variants / sizeof res_variants[0]))

typedef struct res_block {
    nn_conv c1, c2, c3; /* c3 only in bottlenecks */
    nn_conv down;
    int has_down;
} res_block;

typedef struct resnet {
    const res_variant *v;
    nn_conv stem;
    int nblocks;
    res_block *blocks;
    int embed;
} resnet;

static const res_variant *res_find(const char *arch)
{
    for (int i = 0; i < RES_NVARIANTS; i++)
        if (!strcmp(res_variants[i].name, arch)) return &res_variants[i];
    return NULL;
}

int nn_resnet_knows(const char *arch)
{
    return res_find(arch) != NULL;
}

static void res_destroy(void *p)
{
    resnet *m = p;
    if (!m) return;
    nn_conv_free(&m->stem);
    for (int i = 0; i < m->nblocks; i++) {
        nn_conv_free(&m->blocks[i].c1);
        nn_conv_free(&m->blocks[i].c2);
        nn_conv_free(&m->blocks[i].c3);
        nn_conv_free(&m->blocks[i].down);
    }
    free(m->blocks);
    free(m);
}

/* eps: 1e-5 for timm, torchvision and detectors trained from pretrained backbones; 0 for torchvision's
 * COCO detection weights (their FrozenBatchNorm2d eps is overwritten to 0). */
static void *res_build_eps(nn_loader *L, const char *arch, int in_chans, float eps)
{
    const res_variant *v = res_find(arch);
    MC_ASSERT(v);
    resnet *m = mc_calloc(1, sizeof *m);
    m->v = v;
    for (int s = 0; s < 4; s++) m->nblocks += v->layers[s];
    m->blocks = mc_calloc((size_t)m->nblocks, sizeof(res_block));
    nn_conv_load(L, &m->stem, "conv1.weight", NULL, "bn1", eps, in_chans, 64, 7, 2, 3, 0, NN_ACT_RELU);
    nn_conv_keep_fp32(&m->stem); /* 7x7 on 1-3 channels: fp32 (policy, docs/engine.md) */
    const int exp = v->bottleneck ? 4 : 1;
    int cin = 64, bi = 0;
    char w[128], bn[128];
    for (int s = 0; s < 4 && !L->failed; s++) {
        int planes = 64 << s;
        for (int r = 0; r < v->layers[s] && !L->failed; r++, bi++) {
            res_block *b = &m->blocks[bi];
            int stride = (r == 0 && s > 0) ? 2 : 1;
#define RES_CONV(cv, idx, ci, co, k, st, pd, act)                                                                \
    do {                                                                                                       \
        snprintf(w, sizeof w, "layer%d.%d.conv%d.weight", s + 1, r, idx);                                      \
        snprintf(bn, sizeof bn, "layer%d.%d.bn%d", s + 1, r, idx);                                             \
        nn_conv_load(L, cv, w, NULL, bn, eps, ci, co, k, st, pd, 0, act);                                    \
    } while (0)
            if (v->bottleneck) {
                RES_CONV(&b->c1, 1, cin, planes, 1, 1, 0, NN_ACT_RELU);
                RES_CONV(&b->c2, 2, planes, planes, 3, stride, 1, NN_ACT_RELU);
                RES_CONV(&b->c3, 3, planes, planes * exp, 1, 1, 0, NN_ACT_RELU);
            } else {
                RES_CONV(&b->c1, 1, cin, planes, 3, stride, 1, NN_ACT_RELU);
                RES_CONV(&b->c2, 2, planes, planes, 3, 1, 1, NN_ACT_RELU);
            }
#undef RES_CONV
            b->has_down = stride != 1 || cin != planes * exp;
            if (b->has_down) {
                snprintf(w, sizeof w, "layer%d.%d.downsample.0.weight", s + 1, r);
                snprintf(bn, sizeof bn, "layer%d.%d.downsample.1", s + 1, r);
                nn_conv_load(L, &b->down, w, NULL, bn, eps, cin, planes * exp, 1, stride, 0, 0, NN_ACT_NONE);
            }
            cin = planes * exp;
        }
    }
    m->embed = cin;
    if (L->failed) {
        res_destroy(m);
        return NULL;
    }
    return m;
}

static void *res_build(nn_loader *L, const char *arch, int in_chans)
{
    return res_build_eps(L, arch, in_chans, RES_EPS);
}

static void res_split(nn_conv *cv, int split)
{
    if (cv->pk) cv->pk->split = split;
}

/* The detector's body: its bf16 products take three terms (NN_SPLIT_W_AND_A). Clump scores and boxes at 800 px
 * move by up to 0.07 with the encoders' two-term products (measured on the seeded reference detector), past the
 * accuracy rule (scores within 0.02, docs/engine.md). */
void *nn_resnet_body_build(nn_loader *L, const char *arch, int in_chans, float bn_eps)
{
    resnet *m = res_build_eps(L, arch, in_chans, bn_eps);
    if (!m) return NULL;
    res_split(&m->stem, NN_SPLIT_W_AND_A);
    for (int i = 0; i < m->nblocks; i++) {
        res_split(&m->blocks[i].c1, NN_SPLIT_W_AND_A);
        res_split(&m->blocks[i].c2, NN_SPLIT_W_AND_A);
        res_split(&m->blocks[i].c3, NN_SPLIT_W_AND_A);
        res_split(&m->blocks[i].down, NN_SPLIT_W_AND_A);
    }
    return m;
}

void nn_resnet_body_free(void *net)
{
    res_destroy(net);
}

/* Stem and the four stages. With stages != NULL the output of each stage is kept there (the caller
 * releases them) and the last is returned too; otherwise only the last stage's output survives. */
static nn_tensor res_body(nn_ctx *ctx, const resnet *m, nn_tensor in, nn_tensor *stages)
{
    nn_tensor s = nn_conv_forward(ctx, &m->stem, in, NULL);
    nn_tensor x = nn_tensor_new(ctx, s.n, nn_conv_out(s.h, 3, 2, 1), nn_conv_out(s.w, 3, 2, 1), s.c);
    if (!ctx->measure)
        for (int i = 0; i < s.n; i++)
            nn_maxpool(s.d + (size_t)i * s.h * s.w * s.c, s.h, s.w, s.c, 3, 2, 1, x.h, x.w,
                       x.d + (size_t)i * x.h * x.w * x.c);
    nn_tensor_release(ctx, s);
    int stage = 0, left = m->v->layers[0];
    for (int i = 0; i < m->nblocks; i++) {
        const res_block *b = &m->blocks[i];
        nn_tensor id = b->has_down ? nn_conv_forward(ctx, &b->down, x, NULL) : x;
        nn_tensor a = nn_conv_forward(ctx, &b->c1, x, NULL), y;
        if (m->v->bottleneck) {
            nn_tensor c = nn_conv_forward(ctx, &b->c2, a, NULL);
            nn_tensor_release(ctx, a);
            y = nn_conv_forward(ctx, &b->c3, c, &id);
            nn_tensor_release(ctx, c);
        } else {
            y = nn_conv_forward(ctx, &b->c2, a, &id);
            nn_tensor_release(ctx, a);
        }
        if (b->has_down) nn_tensor_release(ctx, id);
        if (!stages || i == 0 || left != m->v->layers[stage]) nn_tensor_release(ctx, x); /* kept stage outputs stay */
        x = y;
        if (--left == 0) {
            if (stages) stages[stage] = y;
            if (++stage < 4) left = m->v->layers[stage];
        }
    }
    return x;
}

void nn_resnet_body_forward(nn_ctx *ctx, const void *net, nn_tensor in, nn_tensor stages[4])
{
    res_body(ctx, net, in, stages);
}

static nn_tensor res_forward(nn_ctx *ctx, const void *net, nn_tensor in)
{
    nn_tensor x = res_body(ctx, net, in, NULL);
    nn_tensor e = nn_tensor_new(ctx, x.n, 1, 1, x.c);
    if (!ctx->measure)
        for (int i = 0; i < x.n; i++)
            nn_mean_pixels(x.d + (size_t)i * x.h * x.w * x.c, (long)x.h * x.w, x.c, e.d + (size_t)i * x.c);
    nn_tensor_release(ctx, x);
    return e;
}

static int res_embed_dim(const void *net)
{
    return ((const resnet *)net)->embed;
}

static int res_detect(const nn_loader *L, char *name, size_t len, char *err)
{
    if (nn_peek(L, NULL, "conv1.weight") != 4 || nn_peek(L, NULL, "layer1.0.conv1.weight") < 0) return -1;
    int bottleneck = nn_peek(L, NULL, "layer1.0.conv3.weight") >= 0, layers[4];
    for (int s = 0; s < 4; s++) {
        layers[s] = 0;
        while (nn_peek(L, NULL, "layer%d.%d.conv1.weight", s + 1, layers[s]) >= 0) layers[s]++;
    }
    for (int i = 0; i < RES_NVARIANTS; i++) {
        const res_variant *v = &res_variants[i];
        if (v->bottleneck == bottleneck && !memcmp(v->layers, layers, sizeof layers)) {
            snprintf(name, len, "%s", v->name);
            return 0;
        }
    }
    mc_fail(err, "%s: ResNet with %s blocks (%d, %d, %d, %d) is not a variant morphcat knows", L->wf->path,
            bottleneck ? "bottleneck" : "basic", layers[0], layers[1], layers[2], layers[3]);
    return -2;
}

const nn_arch_ops nn_resnet_ops = {
    .family = "resnet",
    .build = res_build,
    .forward = res_forward,
    .destroy = res_destroy,
    .embed_dim = res_embed_dim,
    .detect = res_detect,
    .min_size = 1,
};
