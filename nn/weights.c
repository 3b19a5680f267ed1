/* nn/weights.c: opens a weight file, decides its format from its first bytes (never its name) and hands it to
 * the torch-zip or safetensors reader; also the helpers the readers share (dtype sizes, fp16/bf16 to fp32,
 * strided gather, quoting untrusted names). It does not know which tensors a network needs. */
#include "nn/weights_impl.h"

#include <errno.h>
#include <sys/stat.h>

const char *nn_wkind_name(nn_wkind kind)
{
    switch (kind) {
    case NN_WKIND_TORCH_ZIP:
        return "torch-zip";
    case NN_WKIND_SAFETENSORS:
        return "safetensors";
    case NN_WKIND_LIGHTNING:
        return "lightning";
    }
    return "?";
}

/* safetensors' spelling, which is also the shortest unambiguous one. */
const char *nn_dtype_name(nn_dtype dt)
{
    switch (dt) {
    case NN_DT_F32:
        return "F32";
    case NN_DT_F64:
        return "F64";
    case NN_DT_F16:
        return "F16";
    case NN_DT_BF16:
        return "BF16";
    case NN_DT_I64:
        return "I64";
    case NN_DT_I32:
        return "I32";
    case NN_DT_I16:
        return "I16";
    case NN_DT_I8:
        return "I8";
    case NN_DT_U8:
        return "U8";
    case NN_DT_BOOL:
        return "BOOL";
    }
    return "?";
}

size_t wt_dtype_size(nn_dtype dt)
{
    switch (dt) {
    case NN_DT_F64:
    case NN_DT_I64:
        return 8;
    case NN_DT_F32:
    case NN_DT_I32:
        return 4;
    case NN_DT_F16:
    case NN_DT_BF16:
    case NN_DT_I16:
        return 2;
    case NN_DT_I8:
    case NN_DT_U8:
    case NN_DT_BOOL:
        return 1;
    }
    MC_ASSERT(0 && "unknown dtype");
}

int wt_dtype_is_float(nn_dtype dt)
{
    return dt == NN_DT_F32 || dt == NN_DT_F64 || dt == NN_DT_F16 || dt == NN_DT_BF16;
}

/* IEEE binary16 to binary32, exact for every input (subnormals, infinities, NaN payloads). */
float wt_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {
        /* subnormal half: value = man * 2^-24, normalise into a float */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* bfloat16 is the top half of a float32. */
float wt_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float wt_load_float(const uint8_t *p, nn_dtype dt)
{
    switch (dt) {
    case NN_DT_F32: {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    case NN_DT_F64: {
        double d;
        memcpy(&d, p, 8);
        return (float)d;
    }
    case NN_DT_F16: {
        uint16_t h;
        memcpy(&h, p, 2);
        return wt_f16_to_f32(h);
    }
    case NN_DT_BF16: {
        uint16_t h;
        memcpy(&h, p, 2);
        return wt_bf16_to_f32(h);
    }
    default:
        MC_ASSERT(0 && "wt_load_float on a non-float dtype");
    }
}

void wt_convert(const uint8_t *src, nn_dtype dt, int64_t n, float *dst)
{
    MC_ASSERT(wt_dtype_is_float(dt));
    if (dt == NN_DT_F32) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    size_t is = wt_dtype_size(dt);
    for (int64_t i = 0; i < n; i++) dst[i] = wt_load_float(src + (size_t)i * is, dt);
}

/* Callers have bounds-checked offset, shape and strides against the storage. Odometer over all but the last
 * dimension, tight loop over the last. */
void wt_gather(const uint8_t *src, nn_dtype dt, int64_t offset, int ndim, const int64_t *shape,
               const int64_t *stride, float *dst)
{
    MC_ASSERT(wt_dtype_is_float(dt) && ndim >= 0 && ndim <= NN_WMAXDIM);
    size_t is = wt_dtype_size(dt);
    if (ndim == 0) {
        dst[0] = wt_load_float(src + (size_t)offset * is, dt);
        return;
    }
    for (int d = 0; d < ndim; d++)
        if (shape[d] == 0) return;
    int64_t idx[NN_WMAXDIM] = {0};
    int64_t inner = shape[ndim - 1], istride = stride[ndim - 1];
    int64_t base = offset;
    for (;;) {
        for (int64_t j = 0; j < inner; j++)
            *dst++ = wt_load_float(src + (size_t)(base + j * istride) * is, dt);
        int d = ndim - 2;
        while (d >= 0) {
            idx[d]++;
            base += stride[d];
            if (idx[d] < shape[d]) break;
            base -= idx[d] * stride[d];
            idx[d] = 0;
            d--;
        }
        if (d < 0) return;
    }
}

char *wt_quote(const char *s, size_t n, char *buf, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    MC_ASSERT(cap >= 8);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        /* keep printable ASCII and UTF-8 continuation/lead bytes (names may be non-ASCII); escape controls */
        int plain = (c >= 0x20 && c < 0x7f && c != '\\') || c >= 0x80;
        size_t need = plain ? 1 : 4;
        if (o + need + 4 > cap) { /* room for "..." and NUL */
            memcpy(buf + o, "...", 4);
            return buf;
        }
        if (plain) {
            buf[o++] = (char)c;
        } else {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        }
    }
    buf[o] = 0;
    return buf;
}

int wt_shape_numel(int ndim, const int64_t *shape, int64_t *numel)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || __builtin_mul_overflow(n, shape[d], &n)) return -1;
    }
    *numel = n;
    return 0;
}

static int wt_name_cmp(const void *a, const void *b)
{
    const nn_wtensor *x = *(nn_wtensor *const *)a, *y = *(nn_wtensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Sorting instead of pairwise comparison keeps a crafted file with many tensors from taking quadratic time.
 */
int wt_check_unique_names(const nn_wfile *wf, char *err)
{
    if (wf->n < 2) return 0;
    nn_wtensor **p = mc_malloc(sizeof *p * (size_t)wf->n);
    for (int i = 0; i < wf->n; i++) p[i] = &wf->t[i];
    qsort(p, (size_t)wf->n, sizeof *p, wt_name_cmp);
    int rc = 0;
    for (int i = 1; i < wf->n; i++) {
        if (!strcmp(p[i - 1]->name, p[i]->name)) {
            char q[WT_QUOTE_LEN];
            rc = mc_fail(err, "%s: tensor name '%s' appears twice", wf->path,
                         wt_quote(p[i]->name, strlen(p[i]->name), q, sizeof q));
            break;
        }
    }
    free(p);
    return rc;
}

static uint64_t wt_le64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)b[i] << (8 * i);
    return v;
}

/* A pickle at the very start (PROTO opcode) is what torch.save wrote before 1.6: a bare pickle followed by
 * raw storages, with no archive around it. */
static int wt_is_legacy_torch(const uint8_t *h, size_t n)
{
    return n >= 2 && h[0] == 0x80 && h[1] <= 5;
}

int nn_wfile_open(const char *path, nn_wfile **out, char *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return mc_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        fclose(f);
        return mc_fail(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(f);
        return mc_fail(err, "%s: not a regular file", path);
    }
    uint8_t h[16] = {0};
    size_t got = fread(h, 1, sizeof h, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr) return mc_fail(err, "%s: read error", path);

    nn_wfile *wf = mc_calloc(1, sizeof *wf);
    wf->path = mc_strdup(path);
    wf->file_bytes = (int64_t)st.st_size;
    int rc;
    /* "PK\3\4" starts a local file entry, "PK\5\6" an empty archive's end record: both go to libzip, whose
     * message then says what is wrong with a truncated archive. */
    if (got >= 4 && h[0] == 'P' && h[1] == 'K' && ((h[2] == 3 && h[3] == 4) || (h[2] == 5 && h[3] == 6))) {
        wf->kind = NN_WKIND_TORCH_ZIP;
        rc = wt_torchzip_open(wf, err);
    } else if (wt_is_legacy_torch(h, got)) {
        rc = mc_fail(err,
                     "%s: legacy (pre-1.6, non-zip) torch serialization, which morphcat does not read; "
                     "re-save it with torch >= 1.6: torch.save(torch.load(f), f)",
                     path);
    } else if (got >= 9 && (h[8] == '{' || wt_le64(h) <= (uint64_t)st.st_size - 8)) {
        /* a JSON object, or at least a header length that fits the file: safetensors, whose reader then says
         * precisely what is wrong */
        wf->kind = NN_WKIND_SAFETENSORS;
        rc = wt_safetensors_open(wf, err);
    } else if (got == 0) {
        rc = mc_fail(err, "%s: empty file, not a weight file", path);
    } else {
        rc = mc_fail(err, "%s: not a weight file: neither a zip archive (torch.save) nor safetensors", path);
    }
    if (rc == 0) rc = wt_check_unique_names(wf, err);
    if (rc != 0) {
        nn_wfile_close(wf);
        return -1;
    }
    *out = wf;
    return 0;
}

void nn_wfile_close(nn_wfile *wf)
{
    if (!wf) return;
    for (int i = 0; i < wf->n; i++) {
        free(wf->t[i].name);
        free(wf->t[i].data);
    }
    free(wf->t);
    free(wf->arch_hint);
    free(wf->path);
    free(wf);
}

/* Linear: a model has a few hundred tensors and each is looked up once at load. */
nn_wtensor *nn_wfile_find(const nn_wfile *wf, const char *name)
{
    for (int i = 0; i < wf->n; i++)
        if (!strcmp(wf->t[i].name, name)) return &wf->t[i];
    return NULL;
}
