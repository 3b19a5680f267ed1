/* nn/model.c: from a path a user gives to a runnable model: find the weight file and config.json, pick
 * the architecture (from config.json, or from the tensors themselves for checkpoints), build it with strict
 * key checks, attach the head, and plan/run forward passes. Not here: file formats (nn/weights*.c) and the
 * networks' arithmetic (nn/arch_*.c). */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <strings.h>
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif
#include <openssl/evp.h>
#include <sys/stat.h>

#include "nn/engine.h"

struct nn_model {
    nn_model_info info;
    const nn_arch_ops *ops;
    void *net;
    float *head_w, *head_b; /* [head_dim][embed_dim], [head_dim] */
    int bf16_only;          /* nn_model_bf16_only: plans release the packed weights' fp32 copies */
};

struct nn_plan {
    const nn_model *m;
    nn_ctx ctx;
    int batch, h, w;
    nn_precision prec;
};

static const nn_arch_ops *const families[] = {&nn_convnext_ops, &nn_efficientnet_ops, &nn_resnet_ops,
                                              &nn_maxvit_ops, &nn_efficientnetv2_ops};
#define N_FAMILIES ((int)(sizeof families / sizeof families[0]))

const char *nn_arch_names(void)
{
    return "convnext_atto, convnext_femto, convnext_pico, convnext_nano, convnext_tiny, convnext_small, "
           "convnext_base, convnext_large, convnext_xlarge, efficientnet_b0, resnet18, resnet34, resnet50, "
           "resnet101, resnet152, maxvit_tiny_rw_224, maxvit_rmlp_tiny_rw_256, maxvit_rmlp_small_rw_224, "
           "maxvit_rmlp_base_rw_224, maxvit_tiny_tf_224, maxvit_small_tf_224, maxvit_base_tf_224, "
           "maxvit_large_tf_224, efficientnetv2_s, efficientnetv2_m, efficientnetv2_l, tf_efficientnetv2_s, "
           "tf_efficientnetv2_m, tf_efficientnetv2_l";
}

const char *nn_head_kind_name(nn_head_kind k)
{
    switch (k) {
    case NN_HEAD_NONE: return "none";
    case NN_HEAD_DIRICHLET: return "dirichlet";
    case NN_HEAD_SOFTMAX: return "softmax";
    case NN_HEAD_LOGITS: return "logits";
    }
    return "?";
}

static const nn_arch_ops *family_of(const char *arch)
{
    if (nn_convnext_knows(arch)) return &nn_convnext_ops;
    if (nn_efficientnet_knows(arch)) return &nn_efficientnet_ops;
    if (nn_resnet_knows(arch)) return &nn_resnet_ops;
    if (nn_maxvit_knows(arch)) return &nn_maxvit_ops;
    if (nn_efficientnetv2_knows(arch)) return &nn_efficientnetv2_ops;
    return NULL;
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* config.json as timm's Hub folders carry it: architecture (maybe with a ".tag"), num_classes. */
typedef struct hub_config {
    int present;
    char arch[64];
    int num_classes;
} hub_config;

static int config_read(const char *path, hub_config *cfg, char *err)
{
    memset(cfg, 0, sizeof *cfg);
    FILE *f = fopen(path, "rb");
    if (!f) return mc_fail(err, "%s: cannot open (%s)", path, strerror(errno));
    char *buf = mc_malloc(1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    int too_big = !feof(f);
    fclose(f);
    buf[n] = 0;
    if (too_big) {
        free(buf);
        return mc_fail(err, "%s: larger than 1 MiB, not a model config", path);
    }
    cJSON *j = cJSON_Parse(buf);
    if (!j) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= buf && at <= buf + n ? (long)(at - buf) : -1;
        free(buf);
        return mc_fail(err, "%s: not valid JSON (near byte %ld)", path, off);
    }
    free(buf);
    int rc = 0;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "architecture");
    const cJSON *nc = cJSON_GetObjectItemCaseSensitive(j, "num_classes");
    if (!cJSON_IsString(a) || !a->valuestring[0]) {
        rc = mc_fail(err, "%s: no \"architecture\" string", path);
    } else if (nc && !cJSON_IsNumber(nc)) {
        rc = mc_fail(err, "%s: \"num_classes\" is not a number", path);
    } else if (nc && !(nc->valuedouble >= 0 && nc->valuedouble <= 1e6)) { /* (int) of 1e300 is undefined */
        rc = mc_fail(err, "%s: \"num_classes\" %g is out of range (0 to 1000000)", path, nc->valuedouble);
    } else {
        cfg->present = 1;
        snprintf(cfg->arch, sizeof cfg->arch, "%s", a->valuestring);
        char *dot = strchr(cfg->arch, '.'); /* timm's "name.pretrained_tag" */
        if (dot) *dot = 0;
        cfg->num_classes = nc ? (int)nc->valuedouble : 0;
        if (cfg->num_classes < 0) rc = mc_fail(err, "%s: negative num_classes", path);
    }
    cJSON_Delete(j);
    return rc;
}

/* Resolve the user's path to a weight file and an optional config.json beside it. */
static int resolve_paths(const char *path, char *wpath, size_t wlen, char *cpath, size_t clen, char *err)
{
    cpath[0] = 0;
    if (nn_path_is_dir(path)) {
        static const char *const names[] = {"model.safetensors", "pytorch_model.bin", "model.ckpt"};
        wpath[0] = 0;
        for (size_t i = 0; i < sizeof names / sizeof names[0] && !wpath[0]; i++) {
            snprintf(wpath, wlen, "%s/%s", path, names[i]);
            if (!is_file(wpath)) wpath[0] = 0;
        }
        if (!wpath[0])
            return mc_fail(err, "%s: folder holds no model.safetensors, pytorch_model.bin or model.ckpt", path);
        snprintf(cpath, clen, "%s/config.json", path);
    } else if (is_file(path)) {
        snprintf(wpath, wlen, "%s", path);
        const char *slash = strrchr(path, '/');
        int dl = slash ? (int)(slash - path) : 1;
        snprintf(cpath, clen, "%.*s/config.json", dl, slash ? path : ".");
    } else {
        return mc_fail(err, "%s: no such file or folder", path);
    }
    if (!is_file(cpath)) cpath[0] = 0;
    return 0;
}

/* All keys start with `prefix` (DataParallel's "module.")? */
static int all_prefixed(const nn_wfile *wf, const char *prefix)
{
    size_t pl = strlen(prefix);
    for (int i = 0; i < wf->n; i++)
        if (strncmp(wf->t[i].name, prefix, pl)) return 0;
    return wf->n > 0;
}

/* Head weights: Zoobot tree (head.1.0.*), Zoobot classifier (head.linear.*) or a timm classifier. */
static int head_load(nn_loader *L, nn_model *m, const char *wkey, const char *bkey, nn_head_kind kind)
{
    int64_t sh[NN_WMAXDIM];
    const char *saved = L->prefix;
    L->prefix = "";
    int nd = nn_peek(L, sh, "%s", wkey);
    int dims[2] = {nd == 2 ? (int)sh[0] : 0, m->info.embed_dim};
    if (nd != 2 || sh[0] < 1) {
        L->prefix = saved;
        L->failed = 1;
        return mc_fail(L->err, "%s: head key '%s' must be a 2-D (outputs, %d) matrix", L->wf->path, wkey,
                       m->info.embed_dim);
    }
    const float *w = nn_load(L, 2, dims, "%s", wkey);
    const float *b = nn_load(L, 1, dims, "%s", bkey);
    L->prefix = saved;
    if (!w || !b) return -1;
    m->head_w = nn_copy_floats(w, (size_t)dims[0] * dims[1]);
    m->head_b = nn_copy_floats(b, (size_t)dims[0]);
    m->info.head_kind = kind;
    m->info.head_dim = dims[0];
    return 0;
}

void nn_model_free(nn_model *m)
{
    if (!m) return;
    if (m->net) m->ops->destroy(m->net);
    free(m->head_w);
    free(m->head_b);
    free(m);
}

int nn_model_load(const char *path, nn_model **out, char *err)
{
    *out = NULL;
    char wpath[4096], cpath[4096];
    if (resolve_paths(path, wpath, sizeof wpath, cpath, sizeof cpath, err)) return -1;
    hub_config cfg = {0};
    if (cpath[0] && config_read(cpath, &cfg, err)) return -1;
    nn_wfile *wf = NULL;
    if (nn_wfile_open(wpath, &wf, err)) return -1;

    nn_model *m = mc_calloc(1, sizeof *m);
    snprintf(m->info.weight_path, sizeof m->info.weight_path, "%s", wpath);
    m->info.file_kind = nn_wkind_name(wf->kind);
    nn_loader L = {.wf = wf, .prefix = "", .err = err};
    if (wf->kind == NN_WKIND_LIGHTNING) L.prefix = "encoder.";
    else if (all_prefixed(wf, "module.")) L.prefix = "module.";

    /* architecture: config.json decides for Hub folders; otherwise the tensors do */
    char arch[64] = "";
    int rc = -1;
    if (cfg.present && wf->kind != NN_WKIND_LIGHTNING) {
        if (!family_of(cfg.arch)) {
            mc_fail(err, "%s: unknown architecture '%s' (morphcat knows %s)", cpath, cfg.arch, nn_arch_names());
            goto done;
        }
        snprintf(arch, sizeof arch, "%s", cfg.arch);
    } else {
        for (int i = 0; i < N_FAMILIES && !arch[0]; i++) {
            int d = families[i]->detect(&L, arch, sizeof arch, err);
            if (d == -2) goto done;
            if (d != 0) arch[0] = 0;
        }
        if (!arch[0]) {
            mc_fail(err, "%s: the tensors match no architecture morphcat knows (no stem keys of ConvNeXt, "
                         "EfficientNet, ResNet, MaxViT or EfficientNetV2%s)", wpath, L.prefix[0] ? ", after the prefix" : "");
            goto done;
        }
    }
    m->ops = family_of(arch);
    snprintf(m->info.arch, sizeof m->info.arch, "%s", arch);
    m->info.family = m->ops->family;
    L.arch = m->info.arch;

    /* input channels from the stem weights (greyscale repos have a true 1-channel stem) */
    static const char *const stems[] = {"stem.0.weight", "conv_stem.weight", "conv1.weight", "stem.conv1.weight"};
    int64_t sh[NN_WMAXDIM];
    int in_chans = -1;
    for (size_t i = 0; i < sizeof stems / sizeof stems[0] && in_chans < 0; i++)
        if (nn_peek(&L, sh, "%s", stems[i]) == 4) in_chans = (int)sh[1];
    if (in_chans != 1 && in_chans != 3) {
        if (in_chans < 0)
            mc_fail(err, "%s: missing the stem convolution weights of %s", wpath, arch);
        else
            mc_fail(err, "%s: stem takes %d input channels; morphcat runs 1 (greyscale) or 3 (colour)", wpath,
                    in_chans);
        goto done;
    }
    m->info.in_chans = in_chans;
    m->net = m->ops->build(&L, arch, in_chans);
    if (!m->net) goto done;
    m->info.embed_dim = m->ops->embed_dim(m->net);
    m->info.min_size = m->ops->min_size;

    if (wf->kind == NN_WKIND_LIGHTNING) {
        if (nn_wfile_find(wf, "head.1.0.weight")) {
            if (head_load(&L, m, "head.1.0.weight", "head.1.0.bias", NN_HEAD_DIRICHLET)) goto done;
        } else if (nn_wfile_find(wf, "head.linear.weight")) {
            if (head_load(&L, m, "head.linear.weight", "head.linear.bias", NN_HEAD_SOFTMAX)) goto done;
        }
    } else {
        const char *fc = m->ops->classifier                       ? m->ops->classifier
                         : !strcmp(m->info.family, "convnext")     ? "head.fc"
                         : !strcmp(m->info.family, "efficientnet") ? "classifier" : "fc";
        char wk[64], bk[64];
        snprintf(wk, sizeof wk, "%s%s.weight", L.prefix, fc);
        snprintf(bk, sizeof bk, "%s%s.bias", L.prefix, fc);
        int has_fc = nn_wfile_find(wf, wk) != NULL;
        if (cfg.present && cfg.num_classes == 0 && has_fc) {
            mc_fail(err, "%s: unexpected key '%s' (config.json says num_classes 0)", wpath, wk);
            goto done;
        }
        if (cfg.present && cfg.num_classes > 0 && !has_fc) {
            mc_fail(err, "%s: missing key '%s' (config.json says num_classes %d)", wpath, wk, cfg.num_classes);
            goto done;
        }
        if (has_fc && head_load(&L, m, wk, bk, NN_HEAD_LOGITS)) goto done;
        if (cfg.present && cfg.num_classes > 0 && m->info.head_dim != cfg.num_classes) {
            mc_fail(err, "%s: key '%s' has %d outputs but config.json says num_classes %d", wpath, wk,
                    m->info.head_dim, cfg.num_classes);
            goto done;
        }
    }
    if (nn_loader_finish(&L)) goto done;
    m->info.n_params = L.n_params;
    rc = 0;
done:
    nn_wfile_close(wf);
    if (rc) {
        nn_model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void nn_model_bf16_only(nn_model *m)
{
    m->bf16_only = 1;
}

const nn_model_info *nn_model_info_of(const nn_model *m)
{
    return &m->info;
}

/* ---- forward ------------------------------------------------------------------------------------------ */

/* The whole pass; in measure mode only allocation happens. x may be NULL in measure mode. */
static void run(nn_ctx *ctx, const nn_model *m, const float *x, int n, int H, int W, float *embed, float *head)
{
    const int C = m->info.in_chans, D = m->info.embed_dim, K = m->info.head_dim;
    nn_tensor in = nn_tensor_new(ctx, n, H, W, C);
    if (!ctx->measure) { /* NCHW (PyTorch) to NHWC */
        for (int i = 0; i < n; i++) { /* pixel by pixel: C reads in step, one contiguous write */
            const float *src = x + (size_t)i * C * H * W;
            float *dst = in.d + (size_t)i * H * W * C;
            for (long p = 0; p < (long)H * W; p++)
                for (int c = 0; c < C; c++) dst[(size_t)p * C + c] = src[(size_t)c * H * W + p];
        }
    }
    nn_tensor e = m->ops->forward(ctx, m->net, in);
    float *logits = m->info.head_kind != NN_HEAD_NONE ? nn_ctx_alloc(ctx, (size_t)n * K) : NULL;
    if (!ctx->measure) {
        MC_ASSERT(e.n == n && e.c == D);
        if (embed) memcpy(embed, e.d, sizeof(float) * (size_t)n * D);
        if (logits) {
            nn_gemm_fused(n, K, D, e.d, D, m->head_w, D, m->head_b, NULL, 0, 0, NN_ACT_NONE, logits, K);
            for (int i = 0; i < n; i++) {
                float *r = logits + (size_t)i * K;
                if (m->info.head_kind == NN_HEAD_DIRICHLET) {
                    /* Zoobot ScaledSigmoid: 1 + 100 * sigmoid(z), with the exact libm exp */
                    for (int k = 0; k < K; k++) r[k] = 1.0f + 100.0f / (1.0f + expf(-r[k]));
                } else if (m->info.head_kind == NN_HEAD_SOFTMAX) {
                    float mx = r[0], s = 0.0f;
                    for (int k = 1; k < K; k++) mx = r[k] > mx ? r[k] : mx;
                    for (int k = 0; k < K; k++) s += (r[k] = expf(r[k] - mx));
                    for (int k = 0; k < K; k++) r[k] /= s;
                }
            }
            if (head) memcpy(head, logits, sizeof(float) * (size_t)n * K);
        }
    }
    nn_ctx_release(ctx, logits);
    nn_tensor_release(ctx, e);
    nn_tensor_release(ctx, in);
}

int nn_plan_init(const nn_model *m, int batch, int height, int width, nn_precision prec, nn_plan **out,
                 char *err)
{
    *out = NULL;
    MC_ASSERT(batch > 0);
    if (height < 1 || width < 1 || height > 16384 || width > 16384)
        return mc_fail(err, "input size %dx%d is out of range", height, width);
    if (nn_precision_check(prec, err)) return -1;
    if (m->ops->check_size && m->ops->check_size(m->net, m->info.arch, height, width, err)) return -1;
    nn_plan *p = mc_calloc(1, sizeof *p);
    p->m = m;
    p->batch = batch;
    p->h = height;
    p->w = width;
    p->prec = prec;
    p->ctx.bf16 = prec == NN_PREC_BF16;
    MC_ASSERT(!m->bf16_only || p->ctx.bf16); /* the fp32 weights may be gone */
    p->ctx.release_fp32 = m->bf16_only;
    p->ctx.winograd = nn_winograd_default();
    p->ctx.pgemm = nn_pgemm_default();
    p->ctx.measure = 1;
    run(&p->ctx, m, NULL, batch, height, width, NULL, NULL);
    if (p->ctx.too_small) {
        nn_plan_free(p);
        return mc_fail(err, "input %dx%d is too small for %s (it needs at least %dx%d pixels)", height, width,
                       m->info.arch, m->info.min_size, m->info.min_size);
    }
    p->ctx.measure = 0;
    p->ctx.base = mc_malloc_aligned(p->ctx.size);
    *out = p;
    return 0;
}

void nn_plan_free(nn_plan *p)
{
    if (!p) return;
    nn_ctx_free(&p->ctx);
    free(p);
}

size_t nn_plan_bytes(const nn_plan *p)
{
    return p->ctx.size;
}

double nn_plan_macs(const nn_plan *p)
{
    return p->ctx.macs;
}

void nn_forward(nn_plan *p, const float *x, int n, float *embed, float *head)
{
    MC_ASSERT(n >= 1 && n <= p->batch);
    p->ctx.next = 0;
    run(&p->ctx, p->m, x, n, p->h, p->w, embed, head);
    MC_ASSERT(p->ctx.next == p->ctx.n);
}

/* ---- odds and ends ------------------------------------------------------------------------------------ */

const char *nn_precision_name(nn_precision p)
{
    return p == NN_PREC_BF16 ? "bf16" : "fp32";
}

int nn_precision_parse(const char *s, nn_precision *p, char *err)
{
    if (!strcmp(s, "fp32")) {
        *p = NN_PREC_FP32;
        return 0;
    }
    if (!strcmp(s, "bf16")) {
        *p = NN_PREC_BF16;
        return 0;
    }
    return mc_fail(err, "unknown precision '%s' (fp32 or bf16)", s);
}

int nn_precision_check(nn_precision p, char *err)
{
    const char *why = NULL;
    if (p == NN_PREC_BF16 && !nn_amx_usable(&why))
        return mc_fail(err, "--precision bf16 needs AMX, which this process cannot use: %s; use --precision fp32",
                       why);
    static int noted;
    if (p == NN_PREC_BF16 && nn_build_note() && !noted++) fprintf(stderr, "morphcat: note: %s\n", nn_build_note());
    return 0;
}

void nn_cpu_request(void)
{
    nn_amx_request();
}

void nn_init(void)
{
    openblas_set_num_threads(1);
#if defined(__SSE2__)
    _mm_setcsr(_mm_getcsr() | 0x8040); /* FTZ (bit 15) and DAZ (bit 6) */
#endif
}

const char *nn_blas_describe(void)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s, core %s, %d thread(s)", openblas_get_config(), openblas_get_corename(),
             openblas_get_num_threads());
    return buf;
}

const char *nn_blas_advice(void)
{
    const char *core = openblas_get_corename();
    if (!__builtin_cpu_supports("avx512f") || !core) return NULL;
    if (strcasecmp(core, "haswell") && strcasecmp(core, "zen") && strcasecmp(core, "sandybridge")) return NULL;
    return "this CPU has AVX-512 but OpenBLAS runs its AVX2 kernels; OPENBLAS_CORETYPE=SkylakeX about doubles "
           "sgemm speed (check results once: kernels round differently)";
}

int nn_file_sha256(const char *path, char hex[65], char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return mc_fail(err, "%s: cannot open (%s)", path, strerror(errno));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    MC_ASSERT(md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1);
    unsigned char buf[1 << 16]; /* on the stack: the catalogue job hashes every cutout, no malloc each */
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) EVP_DigestUpdate(md, buf, n);
    int bad = ferror(f);
    fclose(f);
    unsigned char dig[32];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(md, dig, &dl);
    EVP_MD_CTX_free(md);
    if (bad) return mc_fail(err, "%s: read error while hashing", path);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", dig[i]);
    return 0;
}
