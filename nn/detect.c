/* nn/detect.c: torchvision 0.14's fasterrcnn_resnet50_fpn (v1) inference, eval mode, batch 1, as Galaxy
 * Zoo: Clump Scout trained it: transform (normalise, resize, pad to 32), ResNet body with frozen batch
 * norm folded into the convolutions, FPN with the extra max-pool level, anchors, RPN head and proposal
 * selection, MultiScaleRoIAlign, TwoMLPHead, FastRCNNPredictor, per-class NMS, rescaling to the input.
 * Facts: ../shared/notes/frcnn.md section 2. The convolutions run on the engine's planned arena (one plan
 * per padded input size, a few cached); the box-level steps use nn/detect_ops.c. Not here: reading images
 * (io/), Clump Scout's post-processing and the catalogue (pipeline/). */
#include <math.h>
#include <sys/stat.h>

#include "nn/detect_ops.h"
#include "nn/engine.h"

#define DET_PLANS 4
#define DET_POOL 7     /* RoIAlign output side */
#define DET_SR 2       /* RoIAlign sampling ratio */
/* RoIs per box-head GEMM. fp32 multiplies all of them at once: OpenBLAS packs fc6's 51 MB of weights on
 * every call, so tiles of 256 packed them four times an image (fc6 79.0 GF/s in tiles, 103.5 in one call).
 * The 50 MB of pooled features fit in the arena the backbone has already freed (arena unchanged at 192.9 MB
 * for an 800 px image). bf16 packs fc6 once at load and keeps tiles of 256 (its bf16 copy of the tile). */
#define DET_TILE_FP32 1000
#define DET_TILE_BF16 256
#define DET_LEVELS 5   /* P2..P5 and the pool level */
#define DET_MAXA 16

static const float det_mean[3] = {0.485f, 0.456f, 0.406f}, det_std[3] = {0.229f, 0.224f, 0.225f};
static const float det_ratios[3] = {0.5f, 1.0f, 2.0f};
static const float det_sizes[DET_LEVELS] = {32, 64, 128, 256, 512};
static const float rpn_wt[4] = {1, 1, 1, 1}, roi_wt[4] = {10, 10, 5, 5};
#define DET_CLIP 4.135166556742356f /* log(1000 / 16) */

typedef struct det_plan {
    int ph, pw;
    unsigned long used;
    nn_ctx ctx;
} det_plan;

struct nn_detector {
    nn_detector_info info;
    nn_det_config cfg;
    void *body;
    int body_ch[4];
    int F;                        /* FPN channels (256) */
    nn_conv inner[4], layer[4];   /* FPN lateral 1x1 and output 3x3 */
    nn_conv rpn_conv, rpn_out;    /* RPN 3x3 + ReLU; fused 1x1: A logits then 4A deltas */
    int A;
    float cell[DET_LEVELS][DET_MAXA * 4];
    int rep;                      /* TwoMLPHead width (1024) */
    float *fc6_w, *fc6_b, *fc7_w, *fc7_b; /* fc6 columns reordered to [py][px][c] */
    float *pred_w, *pred_b;       /* [C + 4C][rep]: cls_score rows, then bbox_pred rows */
    nn_wpack *fc6_pk, *fc7_pk;    /* bf16 plans: fc6, fc7 on AMX; the predictor stays fp32 (box decoding) */
    det_plan plans[DET_PLANS];
    int n_plans;
    unsigned long tick;
};

void nn_det_config_default(nn_det_config *c)
{
    *c = (nn_det_config){
        .min_size = 800,
        .max_size = 1333,
        .rpn_pre_nms_top_n = 1000,
        .rpn_post_nms_top_n = 1000,
        .rpn_nms_thresh = 0.7,
        .box_score_thresh = 0.05,
        .box_nms_thresh = 0.5,
        .detections_per_img = 100,
        .bn_eps = 1e-5f,
    };
}

const nn_detector_info *nn_detector_info_of(const nn_detector *d)
{
    return &d->info;
}

static void plan_free(det_plan *p)
{
    nn_ctx_free(&p->ctx);
    memset(p, 0, sizeof *p);
}

void nn_detector_free(nn_detector *d)
{
    if (!d) return;
    if (d->body) nn_resnet_body_free(d->body);
    for (int i = 0; i < 4; i++) {
        nn_conv_free(&d->inner[i]);
        nn_conv_free(&d->layer[i]);
    }
    nn_conv_free(&d->rpn_conv);
    nn_conv_free(&d->rpn_out);
    free(d->fc6_w);
    free(d->fc6_b);
    free(d->fc7_w);
    free(d->fc7_b);
    free(d->pred_w);
    free(d->pred_b);
    nn_wpack_delete(d->fc6_pk);
    nn_wpack_delete(d->fc7_pk);
    for (int i = 0; i < d->n_plans; i++) plan_free(&d->plans[i]);
    free(d);
}

/* ---- loading ------------------------------------------------------------------------------------------ */

/* The key prefix in front of "backbone.body.conv1.weight": "" for a plain state dict, "module." as
 * DataParallel saves, "model." in Lightning checkpoints, ... -1 when the file has no such key. */
static int find_prefix(const nn_wfile *wf, char *prefix, size_t len)
{
    static const char tail[] = "backbone.body.conv1.weight";
    const size_t tl = sizeof tail - 1;
    for (int i = 0; i < wf->n; i++) {
        size_t kl = strlen(wf->t[i].name);
        if (kl >= tl && !strcmp(wf->t[i].name + kl - tl, tail) && kl - tl < len) {
            memcpy(prefix, wf->t[i].name, kl - tl);
            prefix[kl - tl] = 0;
            return 0;
        }
    }
    return -1;
}

/* Conv with bias whose key is either the current "<name>.0.weight" or the pre-0.13 "<name>.weight". */
static int load_conv_either(nn_loader *L, nn_conv *cv, const char *name, int cin, int cout, int k, int pad, nn_act act)
{
    char w[256], b[256];
    const char *form = nn_peek(L, NULL, "%s.0.weight", name) >= 0 ? "%s.0.%s" : "%s.%s";
    snprintf(w, sizeof w, form, name, "weight");
    snprintf(b, sizeof b, form, name, "bias");
    return nn_conv_load(L, cv, w, b, NULL, 0.0f, cin, cout, k, 1, pad, 0, act);
}

/* Two linear maps over the same input as one: rows of the first (n1 x k), then of the second (n2 x k). */
static void stack_linear(float **w, float **b, const float *w1, const float *b1, int n1, const float *w2,
                         const float *b2, int n2, int k)
{
    *w = mc_malloc_aligned(sizeof(float) * (size_t)(n1 + n2) * k);
    *b = mc_malloc_aligned(sizeof(float) * (size_t)(n1 + n2));
    memcpy(*w, w1, sizeof(float) * (size_t)n1 * k);
    memcpy(*w + (size_t)n1 * k, w2, sizeof(float) * (size_t)n2 * k);
    memcpy(*b, b1, sizeof(float) * (size_t)n1);
    memcpy(*b + n1, b2, sizeof(float) * (size_t)n2);
}

static int det_build(nn_detector *d, nn_loader *L, const char *prefix)
{
    char body_prefix[128];
    snprintf(body_prefix, sizeof body_prefix, "%sbackbone.body.", prefix);
    L->prefix = body_prefix;
    char arch[64] = "";
    if (nn_resnet_ops.detect(L, arch, sizeof arch, L->err) != 0) {
        if (!L->err[0])
            mc_fail(L->err, "%s: '%sbackbone.body.*' is not a ResNet body morphcat knows", L->wf->path, prefix);
        return -1;
    }
    int64_t sh[NN_WMAXDIM];
    nn_peek(L, sh, "conv1.weight");
    if (sh[1] != 3)
        return mc_fail(L->err, "%s: the detector's stem takes %lld channels; torchvision's Faster R-CNN takes RGB (3)",
                       L->wf->path, (long long)sh[1]);
    d->body = nn_resnet_body_build(L, arch, 3, d->cfg.bn_eps);
    if (!d->body) return -1;
    int bottleneck = strcmp(arch, "resnet18") && strcmp(arch, "resnet34");
    for (int s = 0; s < 4; s++) d->body_ch[s] = (bottleneck ? 256 : 64) << s;
    snprintf(d->info.backbone, sizeof d->info.backbone, "%s", arch);

    L->prefix = prefix;
    int nd = nn_peek(L, sh, "backbone.fpn.inner_blocks.0.0.weight");
    if (nd < 0) nd = nn_peek(L, sh, "backbone.fpn.inner_blocks.0.weight");
    if (nd != 4)
        return mc_fail(L->err, "%s: missing key '%sbackbone.fpn.inner_blocks.0.0.weight' (Faster R-CNN FPN)",
                       L->wf->path, prefix);
    d->F = (int)sh[0];
    if (d->F < 1 || d->F > 4096)
        return mc_fail(L->err, "%s: FPN width %d is out of range", L->wf->path, d->F);
    char name[128];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "backbone.fpn.inner_blocks.%d", i);
        if (load_conv_either(L, &d->inner[i], name, d->body_ch[i], d->F, 1, 0, NN_ACT_NONE)) return -1;
        snprintf(name, sizeof name, "backbone.fpn.layer_blocks.%d", i);
        if (load_conv_either(L, &d->layer[i], name, d->F, d->F, 3, 1, NN_ACT_NONE)) return -1;
    }

    /* RPN conv: "rpn.head.conv.0.0" since torchvision 0.13, "rpn.head.conv" before */
    const char *rpn_conv = nn_peek(L, NULL, "rpn.head.conv.0.0.weight") >= 0 ? "rpn.head.conv.0" : "rpn.head.conv";
    if (load_conv_either(L, &d->rpn_conv, rpn_conv, d->F, d->F, 3, 1, NN_ACT_RELU)) return -1;
    if (nn_peek(L, sh, "rpn.head.cls_logits.weight") != 4)
        return mc_fail(L->err, "%s: missing key '%srpn.head.cls_logits.weight'", L->wf->path, prefix);
    d->A = (int)sh[0];
    if (d->A != 3)
        return mc_fail(L->err,
                       "%s: key '%srpn.head.cls_logits.weight' has %d anchors per location; the default anchor "
                       "generator of fasterrcnn_resnet50_fpn has 3 (ratios 0.5, 1, 2)",
                       L->wf->path, prefix, d->A);
    int A = d->A, F = d->F;
    int dl[4] = {A, F, 1, 1}, db[4] = {4 * A, F, 1, 1}, vA[1] = {A}, v4A[1] = {4 * A};
    const float *lw = nn_load(L, 4, dl, "rpn.head.cls_logits.weight"), *lb = nn_load(L, 1, vA, "rpn.head.cls_logits.bias");
    const float *bw = nn_load(L, 4, db, "rpn.head.bbox_pred.weight"), *bb = nn_load(L, 1, v4A, "rpn.head.bbox_pred.bias");
    if (L->failed) return -1;
    nn_conv *o = &d->rpn_out;
    *o = (nn_conv){.cin = F, .cout = 5 * A, .k = 1, .stride = 1, .pad = 0, .act = NN_ACT_NONE};
    stack_linear(&o->w, &o->b, lw, lb, A, bw, bb, 4 * A, F);
    for (int l = 0; l < DET_LEVELS; l++) nn_det_cell_anchors(det_sizes[l], det_ratios, A, d->cell[l]);

    if (nn_peek(L, sh, "roi_heads.box_head.fc6.weight") != 2)
        return mc_fail(L->err, "%s: missing key '%sroi_heads.box_head.fc6.weight' (TwoMLPHead)", L->wf->path, prefix);
    d->rep = (int)sh[0];
    const int K6 = F * DET_POOL * DET_POOL, R = d->rep;
    if (R < 1 || R > 65536) return mc_fail(L->err, "%s: box head width %d is out of range", L->wf->path, R);
    int d6[2] = {R, K6}, d7[2] = {R, R}, vR[1] = {R};
    const float *w6 = nn_load(L, 2, d6, "roi_heads.box_head.fc6.weight");
    const float *b6 = nn_load(L, 1, vR, "roi_heads.box_head.fc6.bias");
    const float *w7 = nn_load(L, 2, d7, "roi_heads.box_head.fc7.weight");
    const float *b7 = nn_load(L, 1, vR, "roi_heads.box_head.fc7.bias");
    if (L->failed) return -1;
    if (nn_peek(L, sh, "roi_heads.box_predictor.cls_score.weight") != 2)
        return mc_fail(L->err, "%s: missing key '%sroi_heads.box_predictor.cls_score.weight' (FastRCNNPredictor)",
                       L->wf->path, prefix);
    const int C = (int)sh[0];
    if (C < 2 || C > 1000)
        return mc_fail(L->err, "%s: key '%sroi_heads.box_predictor.cls_score.weight' gives %d classes (background "
                       "included); a detector needs 2 to 1000", L->wf->path, prefix, C);
    int dc[2] = {C, R}, dbp[2] = {4 * C, R}, vC[1] = {C}, v4C[1] = {4 * C};
    const float *cw = nn_load(L, 2, dc, "roi_heads.box_predictor.cls_score.weight");
    const float *cb = nn_load(L, 1, vC, "roi_heads.box_predictor.cls_score.bias");
    const float *pw = nn_load(L, 2, dbp, "roi_heads.box_predictor.bbox_pred.weight");
    const float *pb = nn_load(L, 1, v4C, "roi_heads.box_predictor.bbox_pred.bias");
    if (L->failed) return -1;
    d->info.n_classes = C;
    /* torch flattens the pooled (C, 7, 7) map channel-major; ours is (7, 7, C): reorder fc6's columns */
    d->fc6_w = mc_malloc_aligned(sizeof(float) * (size_t)R * K6);
    const int PP = DET_POOL * DET_POOL;
    for (int r = 0; r < R; r++) {
        const float *src = w6 + (size_t)r * K6;
        float *dst = d->fc6_w + (size_t)r * K6;
        for (int c = 0; c < F; c++)
            for (int p = 0; p < PP; p++) dst[(size_t)p * F + c] = src[(size_t)c * PP + p];
    }
    d->fc6_b = nn_copy_floats(b6, (size_t)R);
    d->fc7_w = nn_copy_floats(w7, (size_t)R * R);
    d->fc7_b = nn_copy_floats(b7, (size_t)R);
    /* every bf16 product of the detector takes three terms (see nn_resnet_body_build): with two, fc6/fc7 alone
     * moved clump scores by 0.026 on the seeded reference detector, the FPN and RPN a few detections more */
    d->fc6_pk = nn_wpack_new(NN_SPLIT_W_AND_A);
    d->fc7_pk = nn_wpack_new(NN_SPLIT_W_AND_A);
    for (int i = 0; i < 4; i++) {
        d->inner[i].pk->split = NN_SPLIT_W_AND_A;
        d->layer[i].pk->split = NN_SPLIT_W_AND_A;
    }
    d->rpn_conv.pk->split = NN_SPLIT_W_AND_A;
    stack_linear(&d->pred_w, &d->pred_b, cw, cb, C, pw, pb, 4 * C, R);
    return 0;
}

int nn_detector_load(const char *path, const nn_det_config *cfg, nn_detector **out, char *err)
{
    *out = NULL;
    if (nn_precision_check(cfg->precision, err)) return -1;
    char wpath[4096];
    snprintf(wpath, sizeof wpath, "%s", path);
    if (nn_path_is_dir(path)) {
        static const char *const names[] = {"model.pth", "pytorch_model.bin", "model.safetensors", "model.ckpt"};
        struct stat st;
        int found = 0;
        for (size_t i = 0; i < sizeof names / sizeof names[0] && !found; i++) {
            snprintf(wpath, sizeof wpath, "%s/%s", path, names[i]);
            found = stat(wpath, &st) == 0;
        }
        if (!found)
            return mc_fail(err, "%s: folder holds no model.pth, pytorch_model.bin, model.safetensors or model.ckpt",
                           path);
    }
    nn_wfile *wf = NULL;
    if (nn_wfile_open(wpath, &wf, err)) return -1;
    nn_detector *d = mc_calloc(1, sizeof *d);
    d->cfg = *cfg;
    snprintf(d->info.weight_path, sizeof d->info.weight_path, "%s", wpath);
    d->info.file_kind = nn_wkind_name(wf->kind);
    nn_loader L = {.wf = wf, .prefix = "", .arch = "fasterrcnn_resnet50_fpn", .err = err};
    int rc = -1;
    err[0] = 0;
    if (find_prefix(wf, d->info.prefix, sizeof d->info.prefix)) {
        mc_fail(err, "%s: not a torchvision Faster R-CNN state dict (no key ending in 'backbone.body.conv1.weight')",
                wpath);
        goto done;
    }
    if (det_build(d, &L, d->info.prefix)) {
        if (!err[0]) mc_fail(err, "%s: could not build the detector", wpath);
        goto done;
    }
    L.prefix = "";
    if (nn_loader_finish(&L)) goto done;
    if (strcmp(d->info.backbone, "resnet50"))
        snprintf(d->info.arch, sizeof d->info.arch, "fasterrcnn_%s_fpn", d->info.backbone);
    else
        snprintf(d->info.arch, sizeof d->info.arch, "fasterrcnn_resnet50_fpn");
    d->info.n_params = L.n_params;
    rc = 0;
done:
    nn_wfile_close(wf);
    if (rc) {
        nn_detector_free(d);
        return -1;
    }
    *out = d;
    return 0;
}

/* ---- forward ------------------------------------------------------------------------------------------ */

typedef struct det_io {
    const float *img; /* CHW, 3 x h x w, RGB in [0, 1] */
    int h, w, rh, rw; /* input and resized (unpadded) sizes */
    nn_detection *out;
    int cap, n_out;
    nn_det_trace_fn tr;
    void *user;
} det_io;

/* Trace an NHWC tensor as NCHW (torch's layout). */
static void trace_nhwc(const det_io *io, const char *name, nn_tensor t)
{
    if (!io->tr) return;
    size_t hw = (size_t)t.h * t.w;
    float *buf = mc_malloc(sizeof(float) * hw * t.c);
    for (size_t p = 0; p < hw; p++)
        for (int c = 0; c < t.c; c++) buf[(size_t)c * hw + p] = t.d[p * t.c + c];
    int64_t sh[4] = {1, t.c, t.h, t.w};
    io->tr(io->user, name, buf, 4, sh);
    free(buf);
}

static void trace_rows(const det_io *io, const char *name, const float *d, int64_t rows, int64_t cols)
{
    if (!io->tr) return;
    int64_t sh[2] = {rows, cols};
    io->tr(io->user, name, d, cols > 0 ? 2 : 1, sh);
}

static float *alloc_n(nn_ctx *ctx, size_t n)
{
    return nn_ctx_alloc(ctx, n ? n : 1);
}

/* The whole pass. In measure mode (io NULL) only the allocations happen, sized by the padded size alone. */
static void det_run(nn_ctx *ctx, const nn_detector *d, int ph, int pw, det_io *io)
{
    const int meas = ctx->measure, A = d->A, F = d->F, C = d->info.n_classes;
    const nn_det_config *cfg = &d->cfg;
    char name[64];

    nn_tensor x = nn_tensor_new(ctx, 1, ph, pw, 3);
    if (!meas) {
        nn_det_transform(io->img, io->h, io->w, det_mean, det_std, io->rh, io->rw, ph, pw, x.d);
        trace_nhwc(io, "image", x);
    }
    nn_tensor c[4];
    nn_resnet_body_forward(ctx, d->body, x, c);
    nn_tensor_release(ctx, x);
    for (int i = 0; i < 4 && !meas; i++) {
        snprintf(name, sizeof name, "body_%d", i);
        trace_nhwc(io, name, c[i]);
    }

    /* FPN: top-down with nearest 2x upsampling, then the extra level P6 = P5 subsampled by 2 */
    nn_tensor P[DET_LEVELS];
    nn_tensor last = nn_conv_forward(ctx, &d->inner[3], c[3], NULL);
    P[3] = nn_conv_forward(ctx, &d->layer[3], last, NULL);
    for (int i = 2; i >= 0; i--) {
        nn_tensor up = nn_tensor_new(ctx, 1, c[i].h, c[i].w, F);
        if (!meas) {
            float sy = (float)last.h / (float)up.h, sx = (float)last.w / (float)up.w;
            for (int y = 0; y < up.h; y++) {
                int yy = (int)floorf((float)y * sy);
                yy = yy < last.h - 1 ? yy : last.h - 1;
                for (int xo = 0; xo < up.w; xo++) {
                    int xx = (int)floorf((float)xo * sx);
                    xx = xx < last.w - 1 ? xx : last.w - 1;
                    memcpy(up.d + ((size_t)y * up.w + xo) * F, last.d + ((size_t)yy * last.w + xx) * F,
                           sizeof(float) * (size_t)F);
                }
            }
        }
        nn_tensor lat = nn_conv_forward(ctx, &d->inner[i], c[i], &up);
        nn_tensor_release(ctx, up);
        nn_tensor_release(ctx, last);
        last = lat;
        P[i] = nn_conv_forward(ctx, &d->layer[i], last, NULL);
    }
    nn_tensor_release(ctx, last);
    for (int i = 0; i < 4; i++) nn_tensor_release(ctx, c[i]);
    P[4] = nn_tensor_new(ctx, 1, (P[3].h - 1) / 2 + 1, (P[3].w - 1) / 2 + 1, F);
    if (!meas) {
        for (int y = 0; y < P[4].h; y++)
            for (int xo = 0; xo < P[4].w; xo++)
                memcpy(P[4].d + ((size_t)y * P[4].w + xo) * F, P[3].d + ((size_t)2 * y * P[3].w + 2 * xo) * F,
                       sizeof(float) * (size_t)F);
        for (int l = 0; l < DET_LEVELS; l++) {
            if (l < 4) snprintf(name, sizeof name, "fpn_%d", l);
            else snprintf(name, sizeof name, "fpn_pool");
            trace_nhwc(io, name, P[l]);
        }
    }

    /* RPN head on every level */
    nn_tensor o[DET_LEVELS];
    long n_anchor[DET_LEVELS], max_level = 0, n_cand = 0;
    for (int l = 0; l < DET_LEVELS; l++) {
        nn_tensor t = nn_conv_forward(ctx, &d->rpn_conv, P[l], NULL);
        o[l] = nn_conv_forward(ctx, &d->rpn_out, t, NULL);
        nn_tensor_release(ctx, t);
        n_anchor[l] = nn_tensor_pixels(o[l]) * A;
        max_level = n_anchor[l] > max_level ? n_anchor[l] : max_level;
        n_cand += n_anchor[l] < cfg->rpn_pre_nms_top_n ? n_anchor[l] : cfg->rpn_pre_nms_top_n;
    }
    nn_tensor_release(ctx, P[4]);
    const int R_max = cfg->rpn_post_nms_top_n, n_det_max = R_max * (C - 1);
    const int nms_n = (int)(n_cand > n_det_max ? n_cand : n_det_max);
    nn_scored *sc = (nn_scored *)alloc_n(ctx, 2 * (size_t)max_level);
    nn_box *cand = (nn_box *)alloc_n(ctx, 4 * (size_t)nms_n);
    float *cand_s = alloc_n(ctx, (size_t)nms_n);
    int *cand_g = (int *)alloc_n(ctx, (size_t)nms_n);
    int *keep = (int *)alloc_n(ctx, (size_t)nms_n);
    float *nms_mem = alloc_n(ctx, nn_nms_work_floats(nms_n));
    nn_box *prop = (nn_box *)alloc_n(ctx, 4 * (size_t)R_max);
    float *prop_s = alloc_n(ctx, (size_t)R_max);
    int R = 0;
    if (!meas) {
        nn_nms_work nw;
        nn_nms_work_init(&nw, nms_n, nms_mem);
        int nc = 0;
        for (int l = 0; l < DET_LEVELS; l++) {
            const float *od = o[l].d;
            const int stride_y = ph / o[l].h, stride_x = pw / o[l].w, fw = o[l].w, K = 5 * A;
            if (io->tr) { /* torch's per-level objectness (N, A, H, W) and deltas (N, 4A, H, W) */
                nn_tensor lg = {NULL, 1, o[l].h, o[l].w, A}, dl = {NULL, 1, o[l].h, o[l].w, 4 * A};
                lg.d = mc_malloc(sizeof(float) * (size_t)nn_tensor_pixels(lg) * A);
                dl.d = mc_malloc(sizeof(float) * (size_t)nn_tensor_pixels(dl) * 4 * A);
                for (long p = 0; p < nn_tensor_pixels(lg); p++) {
                    memcpy(lg.d + p * A, od + p * K, sizeof(float) * (size_t)A);
                    memcpy(dl.d + p * 4 * A, od + p * K + A, sizeof(float) * (size_t)4 * A);
                }
                snprintf(name, sizeof name, "rpn_logits_%d", l);
                trace_nhwc(io, name, lg);
                snprintf(name, sizeof name, "rpn_deltas_%d", l);
                trace_nhwc(io, name, dl);
                free(lg.d);
                free(dl.d);
            }
            for (long i = 0; i < n_anchor[l]; i++) sc[i] = (nn_scored){od[(i / A) * K + i % A], (int)i};
            int k = nn_scored_top(sc, (int)n_anchor[l], cfg->rpn_pre_nms_top_n);
            for (int j = 0; j < k; j++) {
                long i = sc[j].i, p = i / A;
                int a = (int)(i % A), y = (int)(p / fw), xo = (int)(p % fw);
                const float *cell = d->cell[l] + a * 4;
                nn_box anc = {(float)(xo * stride_x) + cell[0], (float)(y * stride_y) + cell[1],
                              (float)(xo * stride_x) + cell[2], (float)(y * stride_y) + cell[3]};
                nn_box b = nn_box_decode(od + p * K + A + 4 * a, anc, rpn_wt, DET_CLIP);
                b = nn_box_clip(b, (float)io->rw, (float)io->rh);
                float prob = 1.0f / (1.0f + expf(-sc[j].s));
                if (!(b.x2 - b.x1 >= 1e-3f && b.y2 - b.y1 >= 1e-3f) || !(prob >= 0.0f)) continue;
                cand[nc] = b;
                cand_s[nc] = prob;
                cand_g[nc] = l;
                nc++;
            }
        }
        int nk = nn_batched_nms(cand, cand_s, cand_g, nc, cfg->rpn_nms_thresh, &nw, keep);
        R = nk < R_max ? nk : R_max;
        for (int r = 0; r < R; r++) {
            prop[r] = cand[keep[r]];
            prop_s[r] = cand_s[keep[r]];
        }
        trace_rows(io, "proposals", &prop->x1, R, 4);
        trace_rows(io, "proposal_scores", prop_s, R, 0);
    }
    for (int l = 0; l < DET_LEVELS; l++) nn_tensor_release(ctx, o[l]);

    /* RoI heads: MultiScaleRoIAlign over P2..P5, TwoMLPHead, predictor; in tiles of DET_TILE_* RoIs */
    const int PP = DET_POOL * DET_POOL, K6 = F * PP, rep = d->rep, NP = 5 * C;
    const int tile = ctx->bf16 ? DET_TILE_BF16 : DET_TILE_FP32, T = R_max < tile ? R_max : tile;
    float *pooled = alloc_n(ctx, (size_t)T * K6);
    float *h6 = alloc_n(ctx, (size_t)T * rep), *h7 = alloc_n(ctx, (size_t)T * rep);
    float *pred = alloc_n(ctx, (size_t)R_max * NP);
    float *feat = io && io->tr ? mc_malloc(sizeof(float) * ((size_t)R_max * rep + 1)) : NULL;
    float *s6 = nn_matmul_prepare(ctx, d->fc6_pk, T, rep, K6, d->fc6_w, K6);
    float *s7 = nn_matmul_prepare(ctx, d->fc7_pk, T, rep, rep, d->fc7_w, rep);
    if (meas) ctx->macs += (double)R_max * ((double)K6 * rep + (double)rep * rep + (double)rep * NP);
    if (!meas) {
        float scale[4];
        for (int l = 0; l < 4; l++) scale[l] = exp2f(rintf(log2f((float)((double)P[l].h / (double)io->rh))));
        int k_min = (int)-log2f(scale[0]), k_max = (int)-log2f(scale[3]);
        for (int r0 = 0; r0 < R; r0 += T) {
            int n = R - r0 < T ? R - r0 : T;
            for (int r = 0; r < n; r++) {
                int l = nn_roi_level(prop[r0 + r], k_min, k_max);
                nn_roi_align(P[l].d, P[l].h, P[l].w, F, scale[l], prop[r0 + r], DET_POOL, DET_POOL, DET_SR,
                             pooled + (size_t)r * K6);
            }
            nn_matmul(d->fc6_pk, s6, n, rep, K6, pooled, K6, d->fc6_w, K6, d->fc6_b, NULL, 0, 0, NN_ACT_RELU, h6, rep);
            nn_matmul(d->fc7_pk, s7, n, rep, rep, h6, rep, d->fc7_w, rep, d->fc7_b, NULL, 0, 0, NN_ACT_RELU, h7, rep);
            nn_gemm_fused(n, NP, rep, h7, rep, d->pred_w, rep, d->pred_b, NULL, 0, 0, NN_ACT_NONE,
                          pred + (size_t)r0 * NP, NP);
            if (feat) memcpy(feat + (size_t)r0 * rep, h7, sizeof(float) * (size_t)n * rep);
        }
        if (io->tr) {
            trace_rows(io, "box_features", feat, R, rep);
            float *lg = mc_malloc(sizeof(float) * ((size_t)R * C + 1)), *rg = mc_malloc(sizeof(float) * ((size_t)R * 4 * C + 1));
            for (int r = 0; r < R; r++) {
                memcpy(lg + (size_t)r * C, pred + (size_t)r * NP, sizeof(float) * (size_t)C);
                memcpy(rg + (size_t)r * 4 * C, pred + (size_t)r * NP + C, sizeof(float) * (size_t)4 * C);
            }
            trace_rows(io, "class_logits", lg, R, C);
            trace_rows(io, "box_regression", rg, R, 4 * C);
            free(lg);
            free(rg);
        }
    }
    free(feat);
    nn_ctx_release(ctx, s7);
    nn_ctx_release(ctx, s6);

    /* postprocess_detections: softmax, per-class boxes, score and size filters, per-class NMS, top n */
    if (!meas) {
        nn_nms_work nw;
        nn_nms_work_init(&nw, nms_n, nms_mem);
        int nc = 0;
        float prob[1000];
        for (int r = 0; r < R; r++) {
            const float *z = pred + (size_t)r * NP;
            float mx = z[0], sum = 0.0f;
            for (int k = 1; k < C; k++) mx = z[k] > mx ? z[k] : mx;
            for (int k = 0; k < C; k++) sum += (prob[k] = expf(z[k] - mx));
            float inv = 1.0f / sum;
            for (int k = 1; k < C; k++) {
                float s = prob[k] * inv;
                if (!((double)s > cfg->box_score_thresh)) continue; /* torch decodes every box; same result */
                nn_box b = nn_box_decode(z + C + 4 * k, prop[r], roi_wt, DET_CLIP);
                b = nn_box_clip(b, (float)io->rw, (float)io->rh);
                if (!(b.x2 - b.x1 >= 1e-2f && b.y2 - b.y1 >= 1e-2f)) continue;
                cand[nc] = b;
                cand_s[nc] = s;
                cand_g[nc] = k;
                nc++;
            }
        }
        int nk = nn_batched_nms(cand, cand_s, cand_g, nc, cfg->box_nms_thresh, &nw, keep);
        if (nk > cfg->detections_per_img) nk = cfg->detections_per_img;
        float ratio_h = (float)io->h / (float)io->rh, ratio_w = (float)io->w / (float)io->rw;
        io->n_out = nk < io->cap ? nk : io->cap;
        for (int j = 0; j < io->n_out; j++) {
            nn_box b = cand[keep[j]];
            io->out[j] = (nn_detection){b.x1 * ratio_w, b.y1 * ratio_h, b.x2 * ratio_w, b.y2 * ratio_h,
                                        cand_s[keep[j]], cand_g[keep[j]]};
        }
        if (io->tr) {
            float *bx = mc_malloc(sizeof(float) * (4 * (size_t)nk + 1)), *s = mc_malloc(sizeof(float) * ((size_t)nk + 1));
            float *lb = mc_malloc(sizeof(float) * ((size_t)nk + 1));
            for (int j = 0; j < nk; j++) {
                memcpy(bx + 4 * j, &cand[keep[j]], sizeof(nn_box));
                s[j] = cand_s[keep[j]];
                lb[j] = (float)cand_g[keep[j]];
            }
            trace_rows(io, "det_boxes_resized", bx, nk, 4);
            trace_rows(io, "det_scores", s, nk, 0);
            trace_rows(io, "det_labels", lb, nk, 0);
            free(bx);
            free(s);
            free(lb);
        }
    }
    nn_ctx_release(ctx, pred);
    nn_ctx_release(ctx, h7);
    nn_ctx_release(ctx, h6);
    nn_ctx_release(ctx, pooled);
    nn_ctx_release(ctx, prop_s);
    nn_ctx_release(ctx, (float *)prop);
    nn_ctx_release(ctx, nms_mem);
    nn_ctx_release(ctx, (float *)keep);
    nn_ctx_release(ctx, (float *)cand_g);
    nn_ctx_release(ctx, cand_s);
    nn_ctx_release(ctx, (float *)cand);
    nn_ctx_release(ctx, (float *)sc);
    for (int l = 0; l < 4; l++) nn_tensor_release(ctx, P[l]);
}

static det_plan *plan_for(nn_detector *d, int ph, int pw)
{
    d->tick++;
    for (int i = 0; i < d->n_plans; i++) {
        if (d->plans[i].ph == ph && d->plans[i].pw == pw) {
            d->plans[i].used = d->tick;
            return &d->plans[i];
        }
    }
    det_plan *p;
    if (d->n_plans < DET_PLANS) {
        p = &d->plans[d->n_plans++];
    } else { /* evict the least recently used */
        p = &d->plans[0];
        for (int i = 1; i < DET_PLANS; i++)
            if (d->plans[i].used < p->used) p = &d->plans[i];
        plan_free(p);
    }
    p->ph = ph;
    p->pw = pw;
    p->used = d->tick;
    p->ctx.measure = 1;
    p->ctx.bf16 = d->cfg.precision == NN_PREC_BF16;
    p->ctx.release_fp32 = p->ctx.bf16; /* a detector's precision is fixed when it is made */
    p->ctx.winograd = nn_winograd_default();
    p->ctx.pgemm = nn_pgemm_default();
    det_run(&p->ctx, d, ph, pw, NULL);
    MC_ASSERT(!p->ctx.too_small);
    p->ctx.measure = 0;
    p->ctx.base = mc_malloc_aligned(p->ctx.size);
    return p;
}

int nn_detect_sizes(const nn_detector *d, int h, int w, int *rh, int *rw, int *ph, int *pw, char *err)
{
    if (h < NN_DET_MIN_SIDE || w < NN_DET_MIN_SIDE)
        return mc_fail(err, "image is %dx%d pixels; the detector needs at least %d a side", w, h, NN_DET_MIN_SIDE);
    nn_det_resize_size(h, w, d->cfg.min_size, d->cfg.max_size, rh, rw);
    if (*rh < 32 || *rw < 32)
        return mc_fail(err, "image is %dx%d pixels: too elongated for the transform (it would be resized to %dx%d; "
                       "the coarsest feature map needs 32 a side)", w, h, *rw, *rh);
    *ph = (*rh + 31) / 32 * 32;
    *pw = (*rw + 31) / 32 * 32;
    return 0;
}

int nn_detect(nn_detector *d, const float *chw, int h, int w, nn_detection *out, int cap, int *n_out,
              nn_det_trace_fn tr, void *user, char *err)
{
    *n_out = 0;
    int rh = 0, rw = 0, ph = 0, pw = 0;
    if (nn_detect_sizes(d, h, w, &rh, &rw, &ph, &pw, err)) return MC_ROW_BAD_SHAPE;
    size_t n = (size_t)3 * h * w;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(chw[i])) {
            mc_fail(err, "pixel %zu of plane %zu is %s", i % ((size_t)h * w), i / ((size_t)h * w),
                    isnan(chw[i]) ? "NaN" : "Inf");
            return MC_ROW_BAD_PIXELS;
        }
    det_plan *p = plan_for(d, ph, pw);
    det_io io = {.img = chw, .h = h, .w = w, .rh = rh, .rw = rw, .out = out, .cap = cap, .tr = tr, .user = user};
    p->ctx.next = 0;
    det_run(&p->ctx, d, ph, pw, &io);
    MC_ASSERT(p->ctx.next == p->ctx.n);
    *n_out = io.n_out;
    return MC_ROW_OK;
}

size_t nn_detector_plan_bytes(nn_detector *d, int h, int w)
{
    int rh = 0, rw = 0, ph = 0, pw = 0;
    char err[MC_ERR_LEN];
    if (nn_detect_sizes(d, h, w, &rh, &rw, &ph, &pw, err)) return 0;
    return plan_for(d, ph, pw)->ctx.size;
}

double nn_detector_macs(nn_detector *d, int h, int w)
{
    int rh = 0, rw = 0, ph = 0, pw = 0;
    char err[MC_ERR_LEN];
    if (nn_detect_sizes(d, h, w, &rh, &rw, &ph, &pw, err)) return 0;
    return plan_for(d, ph, pw)->ctx.macs;
}

int nn_detections_nms(nn_detection *d, int n, double iou)
{
    if (n <= 0) return 0;
    nn_box *b = mc_malloc(sizeof(nn_box) * (size_t)n);
    float *s = mc_malloc(sizeof(float) * (size_t)n);
    int *keep = mc_malloc(sizeof(int) * (size_t)n);
    float *mem = mc_malloc_aligned(sizeof(float) * nn_nms_work_floats(n));
    for (int i = 0; i < n; i++) {
        b[i] = (nn_box){d[i].x1, d[i].y1, d[i].x2, d[i].y2};
        s[i] = d[i].score;
    }
    nn_nms_work w;
    nn_nms_work_init(&w, n, mem);
    int k = nn_nms(b, s, n, iou, &w, keep);
    nn_detection *tmp = mc_malloc(sizeof(nn_detection) * (size_t)n);
    for (int i = 0; i < k; i++) tmp[i] = d[keep[i]];
    memcpy(d, tmp, sizeof(nn_detection) * (size_t)k);
    free(tmp);
    free(mem);
    free(keep);
    free(s);
    free(b);
    return k;
}
