/* nn/engine.c: the planned activation arena (measure once, replay forever) and strict weight loading by
 * name and shape. Does not compute anything; kernels and layers do. */
#include "nn/engine.h"

#include <math.h>
#include <sys/stat.h>

int nn_path_is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

#define NN_ALIGN 64

static size_t align_up(size_t n)
{
    return (n + NN_ALIGN - 1) / NN_ALIGN * NN_ALIGN;
}

/* Fake addresses handed out during measure: never dereferenced (no kernel runs), unique while live. */
#define NN_FAKE_BASE ((uintptr_t)1 << 40)

float *nn_ctx_alloc(nn_ctx *ctx, size_t nfloat)
{
    size_t len = align_up(nfloat * sizeof(float));
    if (!ctx->measure) {
        MC_ASSERT(ctx->next < ctx->n);
        int i = ctx->next++;
        MC_ASSERT(len <= ctx->len[i]); /* same call sequence as the plan, never larger */
        return (float *)(ctx->base + ctx->off[i]);
    }
    /* first fit among the gaps between live blocks (kept sorted by offset) */
    size_t pos = 0;
    int at = 0;
    for (; at < ctx->n_live; at++) {
        if (ctx->live_off[at] >= pos + len) break;
        size_t end = ctx->live_off[at] + ctx->live_len[at];
        if (end > pos) pos = end;
    }
    if (ctx->n_live == ctx->cap_live) {
        ctx->cap_live = ctx->cap_live ? 2 * ctx->cap_live : 32;
        ctx->live_off = mc_realloc(ctx->live_off, sizeof(size_t) * (size_t)ctx->cap_live);
        ctx->live_len = mc_realloc(ctx->live_len, sizeof(size_t) * (size_t)ctx->cap_live);
    }
    memmove(ctx->live_off + at + 1, ctx->live_off + at, sizeof(size_t) * (size_t)(ctx->n_live - at));
    memmove(ctx->live_len + at + 1, ctx->live_len + at, sizeof(size_t) * (size_t)(ctx->n_live - at));
    ctx->live_off[at] = pos;
    ctx->live_len[at] = len;
    ctx->n_live++;
    if (ctx->n == ctx->cap) {
        ctx->cap = ctx->cap ? 2 * ctx->cap : 256;
        ctx->off = mc_realloc(ctx->off, sizeof(size_t) * (size_t)ctx->cap);
        ctx->len = mc_realloc(ctx->len, sizeof(size_t) * (size_t)ctx->cap);
    }
    ctx->off[ctx->n] = pos;
    ctx->len[ctx->n] = len;
    ctx->n++;
    if (pos + len > ctx->size) ctx->size = pos + len;
    return (float *)(NN_FAKE_BASE + pos);
}

void nn_ctx_free(nn_ctx *ctx)
{
    free(ctx->base);
    free(ctx->off);
    free(ctx->len);
    free(ctx->live_off);
    free(ctx->live_len);
    memset(ctx, 0, sizeof *ctx);
}

void nn_ctx_release(nn_ctx *ctx, const float *p)
{
    if (!ctx->measure || !p) return; /* replay: the plan already placed every buffer */
    size_t off = (size_t)((uintptr_t)p - NN_FAKE_BASE);
    for (int i = 0; i < ctx->n_live; i++) {
        if (ctx->live_off[i] == off) {
            memmove(ctx->live_off + i, ctx->live_off + i + 1, sizeof(size_t) * (size_t)(ctx->n_live - i - 1));
            memmove(ctx->live_len + i, ctx->live_len + i + 1, sizeof(size_t) * (size_t)(ctx->n_live - i - 1));
            ctx->n_live--;
            return;
        }
    }
    MC_ASSERT(!"release of a buffer that is not live");
}

nn_tensor nn_tensor_new(nn_ctx *ctx, int n, int h, int w, int c)
{
    nn_tensor t = {NULL, n, h, w, c};
    if (h <= 0 || w <= 0) {
        MC_ASSERT(ctx->measure);
        ctx->too_small = 1;
        t.h = h > 0 ? h : 1;
        t.w = w > 0 ? w : 1;
    }
    t.d = nn_ctx_alloc(ctx, (size_t)n * t.h * t.w * c);
    return t;
}

void nn_tensor_release(nn_ctx *ctx, nn_tensor t)
{
    nn_ctx_release(ctx, t.d);
}

/* ---- loading ------------------------------------------------------------------------------------------ */

static void shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "(");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < len) snprintf(buf + o, len - o, ")");
}

static nn_wtensor *lookup(const nn_loader *L, const char *fmt, va_list ap, char *key, size_t keylen)
{
    size_t pl = strlen(L->prefix);
    MC_ASSERT(pl < keylen);
    memcpy(key, L->prefix, pl);
    vsnprintf(key + pl, keylen - pl, fmt, ap);
    return nn_wfile_find(L->wf, key);
}

const float *nn_load(nn_loader *L, int ndim, const int *dims, const char *fmt, ...)
{
    if (L->failed) return NULL;
    char key[512], want[256], got[256];
    int64_t wshape[NN_WMAXDIM] = {0};
    for (int i = 0; i < ndim; i++) wshape[i] = dims[i];
    va_list ap;
    va_start(ap, fmt);
    nn_wtensor *t = lookup(L, fmt, ap, key, sizeof key);
    va_end(ap);
    shape_str(want, sizeof want, ndim, wshape);
    if (!t) {
        L->failed = 1;
        mc_fail(L->err, "%s: missing key '%s' (%s expects shape %s)", L->wf->path, key, L->arch, want);
        return NULL;
    }
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == wshape[i];
    if (!same) {
        shape_str(got, sizeof got, t->ndim, t->shape);
        L->failed = 1;
        mc_fail(L->err, "%s: key '%s' has shape %s but %s expects %s", L->wf->path, key, got, L->arch, want);
        return NULL;
    }
    if (!t->data) {
        L->failed = 1;
        mc_fail(L->err, "%s: key '%s' is %s, not floating point", L->wf->path, key, nn_dtype_name(t->dtype));
        return NULL;
    }
    for (int64_t i = 0; i < t->numel; i++) {
        if (!isfinite(t->data[i])) {
            L->failed = 1;
            mc_fail(L->err, "%s: key '%s' holds NaN or Inf (element %lld)", L->wf->path, key, (long long)i);
            return NULL;
        }
    }
    if (!t->used) {
        t->used = 1;
        size_t kl = strlen(key);
        int is_stat = (kl > 12 && !strcmp(key + kl - 12, "running_mean")) ||
                      (kl > 11 && !strcmp(key + kl - 11, "running_var"));
        if (!is_stat) L->n_params += t->numel;
    }
    return t->data;
}

int nn_peek(const nn_loader *L, int64_t *shape, const char *fmt, ...)
{
    char key[512];
    va_list ap;
    va_start(ap, fmt);
    nn_wtensor *t = lookup(L, fmt, ap, key, sizeof key);
    va_end(ap);
    if (!t) return -1;
    if (shape) memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
    return t->ndim;
}

/* A batch norm's num_batches_tracked is not needed at inference; it is accepted when that batch norm's
 * running_mean was consumed, so a stray counter of a layer the network lacks is still reported. */
static int bn_counter_of_used_bn(const nn_wfile *wf, const char *name)
{
    static const char suffix[] = "num_batches_tracked";
    size_t kl = strlen(name), sl = sizeof suffix - 1;
    if (kl < sl || strcmp(name + kl - sl, suffix)) return 0;
    char key[512];
    if (kl - sl + 13 > sizeof key) return 0;
    memcpy(key, name, kl - sl);
    strcpy(key + kl - sl, "running_mean");
    const nn_wtensor *m = nn_wfile_find(wf, key);
    return m && m->used;
}

int nn_loader_finish(nn_loader *L)
{
    if (L->failed) return -1;
    for (int i = 0; i < L->wf->n; i++) {
        const nn_wtensor *t = &L->wf->t[i];
        if (t->used || bn_counter_of_used_bn(L->wf, t->name)) continue;
        L->failed = 1;
        return mc_fail(L->err, "%s: unexpected key '%s' (not part of %s)", L->wf->path, t->name, L->arch);
    }
    return 0;
}

float *nn_copy_floats(const float *src, size_t n)
{
    float *p = mc_malloc_aligned(n * sizeof(float));
    memcpy(p, src, n * sizeof(float));
    return p;
}
