/* nn/weights_safetensors.c: model.safetensors: an 8-byte little-endian header length, a JSON header (parsed
 * with cJSON) mapping names to dtype, shape and data_offsets, then the raw little-endian tensor bytes.
 * Every header field is validated before any data is read. It does not memory-map the file and ignores
 * __metadata__; like the reference library it refuses overlapping tensors, but it tolerates unused gaps. */
#include "nn/weights_impl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>

/* the safetensors format's own limit on the header */
#define ST_HEADER_MAX ((uint64_t)100 << 20)

typedef struct {
    uint64_t begin, end;
    int idx;
} st_span;

static const struct {
    const char *name;
    nn_dtype dt;
} st_dtypes[] = {
    {"F32", NN_DT_F32}, {"F64", NN_DT_F64}, {"F16", NN_DT_F16}, {"BF16", NN_DT_BF16}, {"I64", NN_DT_I64},
    {"I32", NN_DT_I32}, {"I16", NN_DT_I16}, {"I8", NN_DT_I8},   {"U8", NN_DT_U8},     {"BOOL", NN_DT_BOOL},
};

/* A JSON number that is a non-negative integer exactly representable in a double. */
static int st_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

static int st_span_cmp(const void *a, const void *b)
{
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Reads one entry's header fields into t and its byte span; data_len is the size of the data section. */
static int st_parse_entry(nn_wfile *wf, const cJSON *e, nn_wtensor *t, st_span *sp, uint64_t data_len,
                          char *err)
{
    char q[WT_QUOTE_LEN];
    const char *name = e->string ? e->string : "";
    wt_quote(name, strlen(name), q, sizeof q);
    if (!cJSON_IsObject(e))
        return mc_fail(err, "%s: safetensors header: entry '%s' is not an object", wf->path, q);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of))
        return mc_fail(
            err, "%s: safetensors header: tensor '%s' lacks a string dtype, a shape list or data_offsets",
            wf->path, q);
    size_t k;
    for (k = 0; k < sizeof st_dtypes / sizeof st_dtypes[0]; k++)
        if (!strcmp(dt->valuestring, st_dtypes[k].name)) break;
    if (k == sizeof st_dtypes / sizeof st_dtypes[0]) {
        char qd[WT_QUOTE_LEN];
        return mc_fail(err, "%s: safetensors header: tensor '%s' has unsupported dtype '%s'", wf->path, q,
                       wt_quote(dt->valuestring, strlen(dt->valuestring), qd, sizeof qd));
    }
    t->dtype = st_dtypes[k].dt;
    int nd = cJSON_GetArraySize(sh);
    if (nd > NN_WMAXDIM)
        return mc_fail(err, "%s: safetensors header: tensor '%s' has %d dimensions; at most %d are supported",
                       wf->path, q, nd, NN_WMAXDIM);
    t->ndim = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, sh)
    {
        uint64_t v;
        if (st_uint(d, &v))
            return mc_fail(err,
                           "%s: safetensors header: tensor '%s' has a shape entry that is not a non-negative "
                           "integer",
                           wf->path, q);
        t->shape[t->ndim++] = (int64_t)v;
    }
    uint64_t b, en;
    if (cJSON_GetArraySize(of) != 2 || st_uint(cJSON_GetArrayItem(of, 0), &b) ||
        st_uint(cJSON_GetArrayItem(of, 1), &en))
        return mc_fail(err,
                       "%s: safetensors header: tensor '%s': data_offsets is not two non-negative integers",
                       wf->path, q);
    if (b > en)
        return mc_fail(err, "%s: safetensors header: tensor '%s': data_offsets [%llu, %llu] run backwards",
                       wf->path, q, (unsigned long long)b, (unsigned long long)en);
    if (en > data_len)
        return mc_fail(
            err,
            "%s: safetensors header: tensor '%s': data_offsets end %llu is past the end of the data "
            "(%llu bytes)",
            wf->path, q, (unsigned long long)en, (unsigned long long)data_len);
    int64_t bytes;
    if (wt_shape_numel(t->ndim, t->shape, &t->numel) ||
        __builtin_mul_overflow(t->numel, (int64_t)wt_dtype_size(t->dtype), &bytes))
        return mc_fail(err, "%s: safetensors header: tensor '%s': element count overflows", wf->path, q);
    if ((uint64_t)bytes != en - b)
        return mc_fail(
            err,
            "%s: safetensors header: tensor '%s': data_offsets span %llu bytes, but %lld elements of %s "
            "need %lld",
            wf->path, q, (unsigned long long)(en - b), (long long)t->numel, nn_dtype_name(t->dtype),
            (long long)bytes);
    sp->begin = b;
    sp->end = en;
    t->name = mc_strdup(name);
    return 0;
}

static int st_read_at(FILE *f, uint64_t pos, void *dst, size_t n)
{
    if (pos > (uint64_t)INT64_MAX || fseeko(f, (off_t)pos, SEEK_SET) != 0) return -1;
    return fread(dst, 1, n, f) == n ? 0 : -1;
}

static int st_load(nn_wfile *wf, FILE *f, char *err)
{
    uint8_t lenb[8];
    if (wf->file_bytes < 8 || st_read_at(f, 0, lenb, 8))
        return mc_fail(err, "%s: too short for a safetensors header length", wf->path);
    uint64_t hn = 0;
    for (int i = 0; i < 8; i++) hn |= (uint64_t)lenb[i] << (8 * i);
    uint64_t avail = (uint64_t)wf->file_bytes - 8;
    if (hn > avail)
        return mc_fail(err, "%s: safetensors header length %llu runs past the end of the file (%lld bytes)",
                       wf->path, (unsigned long long)hn, (long long)wf->file_bytes);
    if (hn > ST_HEADER_MAX)
        return mc_fail(err, "%s: safetensors header length %llu is over the format's 100 MB limit", wf->path,
                       (unsigned long long)hn);
    char *hdr = mc_malloc((size_t)hn + 1);
    if (st_read_at(f, 8, hdr, (size_t)hn)) {
        free(hdr);
        return mc_fail(err, "%s: read error in the safetensors header", wf->path);
    }
    hdr[hn] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hn, &end, 0);
    int rc = 0;
    if (!root) {
        const char *ep = cJSON_GetErrorPtr();
        long at = ep && ep >= hdr && ep <= hdr + hn ? (long)(ep - hdr) : -1;
        rc = mc_fail(err, "%s: safetensors header is not valid JSON (near byte %ld of the header)", wf->path,
                     at);
        free(hdr);
        return rc;
    }
    /* writers pad the header with spaces to align the data; anything else after the JSON is corruption */
    for (const char *p = end; p && p < hdr + hn; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = mc_fail(err, "%s: safetensors header has bytes after its JSON object (at byte %ld)",
                         wf->path, (long)(p - hdr));
            break;
        }
    }
    if (rc == 0 && !cJSON_IsObject(root))
        rc = mc_fail(err, "%s: safetensors header is not a JSON object", wf->path);
    uint64_t data_start = 8 + hn, data_len = avail - hn;
    int n = 0;
    const cJSON *e;
    if (rc == 0) {
        cJSON_ArrayForEach(e, root)
        {
            if (!e->string || strcmp(e->string, "__metadata__") != 0) n++;
        }
    }
    st_span *sp = mc_calloc(n ? (size_t)n : 1, sizeof *sp);
    if (rc == 0) {
        wf->t = mc_calloc(n ? (size_t)n : 1, sizeof *wf->t);
        cJSON_ArrayForEach(e, root)
        {
            if (e->string && !strcmp(e->string, "__metadata__")) continue;
            rc = st_parse_entry(wf, e, &wf->t[wf->n], &sp[wf->n], data_len, err);
            if (rc) break;
            sp[wf->n].idx = wf->n;
            wf->n++;
        }
    }
    cJSON_Delete(root);
    free(hdr);
    if (rc == 0 && n > 1) {
        /* overlapping tensors would let a small file expand into many copies of the same bytes */
        st_span *s = mc_malloc((size_t)n * sizeof *s);
        memcpy(s, sp, (size_t)n * sizeof *s);
        qsort(s, (size_t)n, sizeof *s, st_span_cmp);
        for (int i = 1; i < n && rc == 0; i++) {
            if (s[i].begin < s[i - 1].end) {
                char q1[WT_QUOTE_LEN], q2[WT_QUOTE_LEN];
                const char *a = wf->t[s[i - 1].idx].name, *b = wf->t[s[i].idx].name;
                rc = mc_fail(err, "%s: safetensors header: tensors '%s' and '%s' overlap", wf->path,
                             wt_quote(a, strlen(a), q1, sizeof q1), wt_quote(b, strlen(b), q2, sizeof q2));
            }
        }
        free(s);
    }
    uint8_t *tmp = NULL;
    for (int i = 0; i < wf->n && rc == 0; i++) {
        nn_wtensor *t = &wf->t[i];
        if (!wt_dtype_is_float(t->dtype)) continue; /* integer tensors keep only dtype and shape */
        size_t bytes = (size_t)(sp[i].end - sp[i].begin);
        t->data = mc_malloc_aligned((size_t)t->numel * 4);
        void *dst = t->dtype == NN_DT_F32 ? (void *)t->data : (tmp = mc_realloc(tmp, bytes));
        if (bytes && st_read_at(f, data_start + sp[i].begin, dst, bytes)) {
            char q[WT_QUOTE_LEN];
            rc = mc_fail(err, "%s: read error in the data of tensor '%s'", wf->path,
                         wt_quote(t->name, strlen(t->name), q, sizeof q));
            break;
        }
        if (t->dtype != NN_DT_F32) wt_convert(dst, t->dtype, t->numel, t->data);
    }
    free(tmp);
    free(sp);
    return rc;
}

int wt_safetensors_open(nn_wfile *wf, char *err)
{
    FILE *f = fopen(wf->path, "rb");
    if (!f) return mc_fail(err, "%s: cannot open: %s", wf->path, strerror(errno));
    int rc = st_load(wf, f, err);
    fclose(f);
    return rc;
}
