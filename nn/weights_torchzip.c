/* nn/weights_torchzip.c: torch.save archives (pytorch_model.bin, Lightning *.ckpt) read with libzip: runs
 * <top>/data.pkl through the pickle VM, applies the policy on what a weight file may contain, checks every
 * tensor view against its storage and copies it into contiguous float32. It does not read the legacy
 * (pre-1.6) format, TorchScript archives, or anything outside the state_dict of a checkpoint. */
#include "nn/weights_impl.h"

#include <zip.h>

/* A real data.pkl is kilobytes to a few megabytes (tensor bytes live in their own entries). */
#define TZ_PICKLE_MAX ((uint64_t)256 << 20)
#define TZ_ARENA_MAX ((size_t)2 << 30)
/* deflate cannot expand beyond ~1032:1, so a larger claim is a lie about the entry's size */
#define TZ_DEFLATE_RATIO 1100

typedef struct {
    const char *name;
    const pk_value *storage;
    nn_dtype dtype;
    int64_t offset;
    int ndim;
    int64_t shape[NN_WMAXDIM], stride[NN_WMAXDIM];
    int64_t numel;
    int64_t extent; /* elements of the storage the view touches: its last index + 1, 0 when empty */
    int out;        /* index into wf->t */
} tz_view;

typedef struct {
    nn_wfile *wf;
    zip_t *za;
    char top[512]; /* "<top>/" prefix of every entry, from data.pkl's path */
    char *err;
    int64_t out_bytes, out_cap; /* float32 bytes produced so far, and the most we accept */
} tz_ctx;

static int tz_zip_fail(tz_ctx *c, const char *what, zip_error_t *ze)
{
    return mc_fail(c->err, "%s: %s (libzip: %s)", c->wf->path, what, zip_error_strerror(ze));
}

/* Reads n bytes from the start of entry idx into dst. When n is the whole entry, one more read reaches the
 * end of the entry, which is where libzip compares the CRC: a flipped byte in a storage is then caught. */
static int tz_read_entry(tz_ctx *c, zip_int64_t idx, const char *ename, void *dst, uint64_t n,
                         uint64_t entry_size)
{
    char q[WT_QUOTE_LEN];
    zip_file_t *zf = zip_fopen_index(c->za, (zip_uint64_t)idx, 0);
    if (!zf)
        return mc_fail(c->err, "%s: cannot open entry %s (libzip: %s)", c->wf->path,
                       wt_quote(ename, strlen(ename), q, sizeof q), zip_strerror(c->za));
    uint64_t done = 0;
    int rc = 0;
    while (done < n) {
        uint64_t want = n - done > ((uint64_t)1 << 30) ? ((uint64_t)1 << 30) : n - done;
        zip_int64_t got = zip_fread(zf, (char *)dst + done, want);
        if (got <= 0) {
            rc = mc_fail(c->err, "%s: entry %s: %s after %llu of %llu bytes (libzip: %s)", c->wf->path,
                         wt_quote(ename, strlen(ename), q, sizeof q), got < 0 ? "read error" : "truncated",
                         (unsigned long long)done, (unsigned long long)n,
                         got < 0 ? zip_file_strerror(zf) : "unexpected end of data");
            break;
        }
        done += (uint64_t)got;
    }
    if (rc == 0 && n == entry_size) {
        char extra;
        zip_int64_t got = zip_fread(zf, &extra, 1);
        if (got != 0)
            rc = mc_fail(c->err, "%s: entry %s: %s (libzip: %s)", c->wf->path,
                         wt_quote(ename, strlen(ename), q, sizeof q),
                         got < 0 ? "corrupt data" : "longer than its declared size",
                         got < 0 ? zip_file_strerror(zf) : "extra bytes");
    }
    zip_fclose(zf);
    return rc;
}

/* Size checks before allocating anything for an entry: a stored entry cannot be larger than the file, and a
 * compressed one cannot be more than deflate's ratio larger than its compressed size. */
static int tz_stat_entry(tz_ctx *c, zip_int64_t idx, const char *ename, zip_stat_t *st)
{
    char q[WT_QUOTE_LEN];
    if (zip_stat_index(c->za, (zip_uint64_t)idx, 0, st) != 0 || !(st->valid & ZIP_STAT_SIZE) ||
        !(st->valid & ZIP_STAT_COMP_SIZE) || !(st->valid & ZIP_STAT_COMP_METHOD))
        return mc_fail(c->err, "%s: cannot stat entry %s (libzip: %s)", c->wf->path,
                       wt_quote(ename, strlen(ename), q, sizeof q), zip_strerror(c->za));
    uint64_t fb = (uint64_t)c->wf->file_bytes;
    int bad = st->comp_size > fb ||
              (st->comp_method == ZIP_CM_STORE ? st->size > fb
                                               : st->size / TZ_DEFLATE_RATIO > st->comp_size + 1024);
    if (bad)
        return mc_fail(c->err, "%s: entry %s claims %llu bytes, impossible in a file of %lld bytes",
                       c->wf->path, wt_quote(ename, strlen(ename), q, sizeof q), (unsigned long long)st->size,
                       (long long)c->wf->file_bytes);
    return 0;
}

/* Finds the one "<top>/data.pkl" entry; the top folder is named after whatever file torch.save wrote, so it
 * is never assumed. */
static int tz_find_pickle(tz_ctx *c, zip_int64_t *pkl)
{
    zip_int64_t ne = zip_get_num_entries(c->za, 0);
    *pkl = -1;
    for (zip_int64_t i = 0; i < ne; i++) {
        const char *nm = zip_get_name(c->za, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
        if (!nm) continue;
        const char *slash = strchr(nm, '/');
        if (!slash || slash == nm || strcmp(slash, "/data.pkl") != 0) continue;
        if (*pkl >= 0)
            return mc_fail(c->err, "%s: archive holds more than one <folder>/data.pkl", c->wf->path);
        size_t tl = (size_t)(slash - nm) + 1;
        if (tl >= sizeof c->top) return mc_fail(c->err, "%s: archive folder name is too long", c->wf->path);
        /* the folder name goes into messages: keep control characters out of them */
        for (size_t k = 0; k + 1 < tl; k++)
            if ((unsigned char)nm[k] < 0x20 || nm[k] == 0x7f)
                return mc_fail(c->err, "%s: archive folder name holds control characters", c->wf->path);
        memcpy(c->top, nm, tl);
        c->top[tl] = 0;
        *pkl = i;
    }
    if (*pkl < 0)
        return mc_fail(c->err, "%s: zip archive without a <folder>/data.pkl entry: not written by torch.save",
                       c->wf->path);
    return 0;
}

/* torch 2.x records the byte order; storages are copied as little-endian. */
static int tz_check_byteorder(tz_ctx *c)
{
    char name[600];
    snprintf(name, sizeof name, "%sbyteorder", c->top);
    zip_int64_t idx = zip_name_locate(c->za, name, ZIP_FL_ENC_RAW);
    if (idx < 0) return 0;
    zip_stat_t st;
    if (tz_stat_entry(c, idx, name, &st)) return -1;
    char buf[16] = {0}, q[WT_QUOTE_LEN];
    if (st.size < sizeof buf) {
        if (tz_read_entry(c, idx, name, buf, st.size, st.size)) return -1;
        if (!strcmp(buf, "little")) return 0;
        if (!strcmp(buf, "big"))
            return mc_fail(c->err, "%s: big-endian storages are not supported", c->wf->path);
    }
    return mc_fail(c->err, "%s: %s is not 'little' or 'big'", c->wf->path,
                   wt_quote(name, strlen(name), q, sizeof q));
}

static const char *tz_describe(const pk_value *v, char *buf, size_t cap)
{
    const pk_value *g = v->type == PK_GLOBAL ? v : v->type == PK_OBJ ? v->u.obj.root : NULL;
    if (g)
        snprintf(buf, cap, "%s %s.%s", v->type == PK_GLOBAL ? "a reference to" : "an instance of",
                 g->u.glob.module, g->u.glob.name);
    else
        snprintf(buf, cap, "%s %s", strchr("aeiou", wt_pickle_type_name(v)[0]) ? "an" : "a",
                 wt_pickle_type_name(v));
    return buf;
}

/* Tuples only (torch writes tuple(size) and stride()): a tuple cannot change after the call that used it, so
 * what is checked here is what torch would have seen. */
static int tz_ints(const pk_value *t, int64_t *out, int max, int *n)
{
    if (t->type != PK_TUPLE) return -1;
    if (t->u.seq.n > (size_t)max) return -2;
    for (size_t i = 0; i < t->u.seq.n; i++) {
        if (t->u.seq.v[i]->type != PK_INT) return -1;
        out[i] = t->u.seq.v[i]->u.i;
    }
    *n = (int)t->u.seq.n;
    return 0;
}

/* Follows _rebuild_parameter / _rebuild_from_type_v2 down to _rebuild_tensor(_v2)'s arguments and checks the
 * view against its storage: offset, sizes and strides non-negative, no overflow, last element inside. */
static int tz_resolve(tz_ctx *c, const char *qname, const pk_value *v, tz_view *w)
{
    const char *path = c->wf->path;
    char d[300];
    if (v->type != PK_TENSOR)
        return mc_fail(c->err, "%s: state_dict entry '%s' is %s, not a tensor", path, qname,
                       tz_describe(v, d, sizeof d));
    pk_gkind kind = v->u.tensor.kind;
    const pk_value *args = v->u.tensor.args;
    for (int depth = 0;; depth++) {
        MC_ASSERT(args->type == PK_TUPLE);
        size_t na = args->u.seq.n;
        pk_value *const *av = args->u.seq.v;
        if (depth > 8) return mc_fail(c->err, "%s: tensor '%s' is wrapped too deeply", path, qname);
        if (kind == PK_G_REBUILD_PARAMETER || kind == PK_G_REBUILD_PARAMETER_WITH_STATE) {
            if (na != (kind == PK_G_REBUILD_PARAMETER ? 3u : 4u) || av[0]->type != PK_TENSOR)
                return mc_fail(c->err, "%s: tensor '%s': malformed _rebuild_parameter arguments", path,
                               qname);
            kind = av[0]->u.tensor.kind;
            args = av[0]->u.tensor.args;
            continue;
        }
        if (kind == PK_G_REBUILD_FROM_TYPE_V2) {
            /* (func, new_type, args, state): func must be one of ours and new_type plain Tensor or Parameter
             */
            if (na != 4 || av[0]->type != PK_GLOBAL || av[1]->type != PK_GLOBAL || av[2]->type != PK_TUPLE)
                return mc_fail(c->err, "%s: tensor '%s': malformed _rebuild_from_type_v2 arguments", path,
                               qname);
            pk_gkind fk = av[0]->u.glob.kind;
            if (fk != PK_G_REBUILD_TENSOR_V2 && fk != PK_G_REBUILD_TENSOR && fk != PK_G_REBUILD_PARAMETER &&
                fk != PK_G_REBUILD_PARAMETER_WITH_STATE)
                return mc_fail(c->err, "%s: tensor '%s' is rebuilt by unsupported %s.%s", path, qname,
                               av[0]->u.glob.module, av[0]->u.glob.name);
            if (av[1]->u.glob.kind != PK_G_TENSOR_TYPE)
                return mc_fail(c->err, "%s: tensor '%s' is of unsupported tensor subclass %s.%s", path, qname,
                               av[1]->u.glob.module, av[1]->u.glob.name);
            kind = fk;
            args = av[2];
            continue;
        }
        MC_ASSERT(kind == PK_G_REBUILD_TENSOR_V2 || kind == PK_G_REBUILD_TENSOR);
        if (kind == PK_G_REBUILD_TENSOR_V2 ? (na != 6 && na != 7) : na != 4)
            return mc_fail(c->err, "%s: tensor '%s': %s has %zu arguments", path, qname,
                           kind == PK_G_REBUILD_TENSOR_V2 ? "_rebuild_tensor_v2" : "_rebuild_tensor", na);
        if (av[0]->type != PK_STORAGE)
            return mc_fail(c->err, "%s: tensor '%s': storage argument is %s", path, qname,
                           tz_describe(av[0], d, sizeof d));
        if (av[1]->type != PK_INT)
            return mc_fail(c->err, "%s: tensor '%s': storage offset is not an int", path, qname);
        int nd = 0, ns = 0;
        int r1 = tz_ints(av[2], w->shape, NN_WMAXDIM, &nd), r2 = tz_ints(av[3], w->stride, NN_WMAXDIM, &ns);
        if (r1 == -2)
            return mc_fail(c->err, "%s: tensor '%s' has %zu dimensions; at most %d are supported", path,
                           qname, av[2]->u.seq.n, NN_WMAXDIM);
        if (r1 || r2 || nd != ns)
            return mc_fail(c->err, "%s: tensor '%s': size and stride are not matching tuples of ints", path,
                           qname);
        w->storage = av[0];
        w->offset = av[1]->u.i;
        w->ndim = nd;
        break;
    }

    const pk_value *st = w->storage, *cls = st->u.storage.cls;
    char qk[WT_QUOTE_LEN];
    wt_quote(st->u.storage.key, strlen(st->u.storage.key), qk, sizeof qk);
    if (cls->u.glob.kind != PK_G_STORAGE)
        return mc_fail(c->err, "%s: tensor '%s': storage '%s' has %s type %s.%s", path, qname, qk,
                       cls->u.glob.kind == PK_G_STORAGE_UNSUPPORTED ? "unsupported" : "non-storage",
                       cls->u.glob.module, cls->u.glob.name);
    w->dtype = cls->u.glob.dtype;
    int64_t snum = st->u.storage.numel, sbytes;
    if (__builtin_mul_overflow(snum, (int64_t)wt_dtype_size(w->dtype), &sbytes) || sbytes > c->wf->file_bytes)
        return mc_fail(c->err, "%s: tensor '%s': storage '%s' claims %lld elements, more than the file holds",
                       path, qname, qk, (long long)snum);
    if (w->offset < 0) return mc_fail(c->err, "%s: tensor '%s': negative storage offset", path, qname);
    for (int i = 0; i < w->ndim; i++)
        if (w->shape[i] < 0 || w->stride[i] < 0)
            return mc_fail(c->err, "%s: tensor '%s': negative size or stride", path, qname);
    if (wt_shape_numel(w->ndim, w->shape, &w->numel))
        return mc_fail(c->err, "%s: tensor '%s': element count overflows", path, qname);
    w->extent = 0;
    if (w->numel > 0) {
        int64_t last = w->offset, step;
        for (int i = 0; i < w->ndim; i++) {
            if (__builtin_mul_overflow(w->shape[i] - 1, w->stride[i], &step) ||
                __builtin_add_overflow(last, step, &last))
                return mc_fail(c->err, "%s: tensor '%s': storage index overflows", path, qname);
        }
        if (last >= snum)
            return mc_fail(c->err,
                           "%s: tensor '%s' reaches element %lld of storage '%s', which holds %lld elements "
                           "(offset %lld)",
                           path, qname, (long long)last, qk, (long long)snum, (long long)w->offset);
        w->extent = last + 1;
    }
    return 0;
}

static int tz_view_cmp(const void *a, const void *b)
{
    const tz_view *x = *(tz_view *const *)a, *y = *(tz_view *const *)b;
    int k = strcmp(x->storage->u.storage.key, y->storage->u.storage.key);
    return k ? k : (x->out > y->out) - (x->out < y->out);
}

static int tz_is_contiguous(const tz_view *w)
{
    int64_t expect = 1;
    for (int i = w->ndim - 1; i >= 0; i--) {
        if (w->shape[i] != 1 && w->stride[i] != expect) return 0;
        expect *= w->shape[i];
    }
    return 1;
}

static float *tz_alloc_output(tz_ctx *c, const tz_view *w)
{
    int64_t bytes = w->numel * 4; /* numel * 4 fits: bounded by out_cap below */
    if (w->numel > c->out_cap / 4 || c->out_bytes > c->out_cap - bytes) {
        char q[WT_QUOTE_LEN];
        mc_fail(c->err,
                "%s: tensor '%s': views of shared storages add up to more than %lld MiB of float32, far more "
                "than "
                "the file holds; refusing",
                c->wf->path, wt_quote(w->name, strlen(w->name), q, sizeof q), (long long)(c->out_cap >> 20));
        return NULL;
    }
    c->out_bytes += bytes;
    return mc_malloc_aligned((size_t)bytes);
}

/* Reads one storage entry (once, however many views share it) and fills the float views on it. */
static int tz_load_group(tz_ctx *c, tz_view **g, int ng)
{
    nn_wfile *wf = c->wf;
    const char *key = g[0]->storage->u.storage.key;
    char qk[WT_QUOTE_LEN], qn[WT_QUOTE_LEN];
    wt_quote(key, strlen(key), qk, sizeof qk);
    wt_quote(g[0]->name, strlen(g[0]->name), qn, sizeof qn);
    /* several persistent ids may name one key (a crafted file could give them different types): need the
     * largest declared size */
    uint64_t need = 0;
    int any_float = 0;
    for (int i = 0; i < ng; i++) {
        uint64_t b = (uint64_t)g[i]->storage->u.storage.numel * wt_dtype_size(g[i]->dtype);
        if (b > need) need = b;
        any_float |= wt_dtype_is_float(g[i]->dtype);
    }
    char ename[1200];
    snprintf(ename, sizeof ename, "%sdata/%s", c->top, key);
    zip_int64_t idx = zip_name_locate(c->za, ename, ZIP_FL_ENC_RAW);
    if (idx < 0) {
        char qe[WT_QUOTE_LEN];
        return mc_fail(c->err, "%s: storage '%s' of tensor '%s' is missing (no entry %s)", wf->path, qk, qn,
                       wt_quote(ename, strlen(ename), qe, sizeof qe));
    }
    zip_stat_t st;
    if (tz_stat_entry(c, idx, ename, &st)) return -1;
    if (st.size < need)
        return mc_fail(c->err,
                       "%s: storage '%s' of tensor '%s' holds %llu bytes, but the pickle declares %llu "
                       "(%lld elements of %s)",
                       wf->path, qk, qn, (unsigned long long)st.size, (unsigned long long)need,
                       (long long)g[0]->storage->u.storage.numel, nn_dtype_name(g[0]->dtype));
    if (!any_float) return 0; /* integer tensors keep only dtype and shape */

    tz_view *w0 = g[0];
    if (ng == 1 && w0->dtype == NN_DT_F32 && w0->offset == 0 && tz_is_contiguous(w0) &&
        (uint64_t)w0->numel * 4 == need) {
        /* the common case: one float32 tensor owning its storage, read straight into place */
        float *dst = tz_alloc_output(c, w0);
        if (!dst) return -1;
        wf->t[w0->out].data = dst;
        return tz_read_entry(c, idx, ename, dst, need, st.size);
    }
    uint8_t *buf = mc_malloc_aligned(need);
    int rc = tz_read_entry(c, idx, ename, buf, need, st.size);
    for (int i = 0; i < ng && rc == 0; i++) {
        tz_view *w = g[i];
        if (!wt_dtype_is_float(w->dtype)) continue;
        float *dst = tz_alloc_output(c, w);
        if (!dst) {
            rc = -1;
            break;
        }
        wf->t[w->out].data = dst;
        if (w->numel == 0) continue;
        /* extent <= storage numel of this view's own persistent id, and its bytes <= need */
        wt_gather(buf, w->dtype, w->offset, w->ndim, w->shape, w->stride, dst);
    }
    free(buf);
    return rc;
}

static int tz_root_not_dict(tz_ctx *c, const pk_value *root)
{
    char d[300];
    if (root->type == PK_OBJ)
        return mc_fail(c->err,
                       "%s: top-level object is %s, not a dict of tensors (a whole pickled model?); save "
                       "model.state_dict() instead",
                       c->wf->path, tz_describe(root, d, sizeof d));
    return mc_fail(c->err,
                   "%s: top-level object is %s, not a dict of tensors; save model.state_dict() instead",
                   c->wf->path, tz_describe(root, d, sizeof d));
}

/* The pickle's meaning: which dict holds the tensors, what unknown globals are tolerated, the tensor list. */
static int tz_interpret(tz_ctx *c, const pk_value *root, pk_info *info)
{
    nn_wfile *wf = c->wf;
    if (root->type != PK_DICT) return tz_root_not_dict(c, root);
    const pk_value *sd = wt_pickle_dict_get(root, "state_dict");
    char d[300];
    if (sd && sd->type == PK_DICT) {
        /* a Lightning checkpoint: unknown classes may sit in hyper_parameters, callbacks ..., never in the
         * state_dict */
        wf->kind = NN_WKIND_LIGHTNING;
        const pk_value *u = wt_pickle_find_unknown(sd, info);
        if (u)
            return mc_fail(c->err,
                           "%s: unknown global %s.%s inside the checkpoint's state_dict; morphcat reads only "
                           "tensors and never runs code from weight files",
                           wf->path, u->u.glob.module, u->u.glob.name);
        const pk_value *hp = wt_pickle_dict_get(root, "hyper_parameters");
        if (hp && hp->type == PK_OBJ) hp = hp->u.obj.dict; /* AttributeDict and other dict subclasses */
        const pk_value *an = wt_pickle_dict_get(hp, "architecture_name");
        if (an && an->type == PK_STR && strlen(an->u.str.s) == an->u.str.n)
            wf->arch_hint = mc_strdup(an->u.str.s);
    } else if (sd) {
        return mc_fail(c->err, "%s: 'state_dict' is %s, not a dict of tensors", wf->path,
                       tz_describe(sd, d, sizeof d));
    } else {
        sd = root;
        const pk_value *u = info->first_unknown;
        if (u)
            return mc_fail(
                c->err,
                "%s: unknown global %s.%s in a state_dict file; morphcat reads only tensors and never "
                "runs code from weight files",
                wf->path, u->u.glob.module, u->u.glob.name);
    }

    size_t n = sd->u.dict.n;
    if (n > (size_t)INT32_MAX / 2) return mc_fail(c->err, "%s: too many tensors", wf->path);
    wf->t = mc_calloc(n ? n : 1, sizeof *wf->t);
    tz_view *views = mc_calloc(n ? n : 1, sizeof *views);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const pk_value *k = sd->u.dict.kv[2 * i], *v = sd->u.dict.kv[2 * i + 1];
        if (k->type != PK_STR || strlen(k->u.str.s) != k->u.str.n) {
            rc = mc_fail(c->err, "%s: state_dict key #%zu is %s, not a plain string", wf->path, i,
                         k->type == PK_STR ? "a string with a NUL byte" : tz_describe(k, d, sizeof d));
            break;
        }
        char qn[WT_QUOTE_LEN];
        wt_quote(k->u.str.s, k->u.str.n, qn, sizeof qn);
        tz_view *w = &views[i];
        w->name = k->u.str.s;
        w->out = (int)i;
        rc = tz_resolve(c, qn, v, w);
        if (rc) break;
        nn_wtensor *t = &wf->t[i];
        t->name = mc_strdup(k->u.str.s);
        t->dtype = w->dtype;
        t->ndim = w->ndim;
        memcpy(t->shape, w->shape, sizeof t->shape);
        t->numel = w->numel;
        wf->n = (int)i + 1;
    }
    if (rc == 0 && n > 0) {
        /* one read per storage, in key order; the tensor list keeps pickle order */
        tz_view **order = mc_malloc(n * sizeof *order);
        for (size_t i = 0; i < n; i++) order[i] = &views[i];
        qsort(order, n, sizeof *order, tz_view_cmp);
        for (size_t i = 0; i < n && rc == 0;) {
            size_t j = i + 1;
            while (j < n && !strcmp(order[j]->storage->u.storage.key, order[i]->storage->u.storage.key)) j++;
            rc = tz_load_group(c, order + i, (int)(j - i));
            i = j;
        }
        free(order);
    }
    free(views);
    return rc;
}

int wt_torchzip_open(nn_wfile *wf, char *err)
{
    tz_ctx c = {.wf = wf, .err = err};
    /* every view of a storage becomes its own copy, so a crafted file could ask for terabytes from a few
     * bytes; real files produce at most about 2x their size (fp16) */
    c.out_cap = (int64_t)256 << 20;
    if (wf->file_bytes < (INT64_MAX >> 5)) c.out_cap += 16 * wf->file_bytes;

    int zerr = 0;
    c.za = zip_open(wf->path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
    if (!c.za) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        int rc = tz_zip_fail(&c, "truncated or not a zip archive", &ze);
        zip_error_fini(&ze);
        return rc;
    }
    zip_int64_t pidx;
    int rc = tz_find_pickle(&c, &pidx);
    if (rc == 0) rc = tz_check_byteorder(&c);
    zip_stat_t st;
    char pname[600];
    snprintf(pname, sizeof pname, "%sdata.pkl", c.top);
    if (rc == 0) rc = tz_stat_entry(&c, pidx, pname, &st);
    if (rc == 0 && st.size > TZ_PICKLE_MAX)
        rc = mc_fail(err, "%s: %s is %llu bytes, more than the %llu MiB a weight pickle can need", wf->path,
                     pname, (unsigned long long)st.size, (unsigned long long)(TZ_PICKLE_MAX >> 20));
    if (rc == 0) {
        uint8_t *pkl = mc_malloc((size_t)st.size);
        rc = tz_read_entry(&c, pidx, pname, pkl, st.size, st.size);
        if (rc == 0) {
            wt_arena arena;
            size_t cap = ((size_t)64 << 20) + 64 * (size_t)st.size;
            wt_arena_init(&arena, cap < TZ_ARENA_MAX ? cap : TZ_ARENA_MAX);
            char what[800], q[WT_QUOTE_LEN];
            snprintf(what, sizeof what, "%s: %s", wf->path, wt_quote(pname, strlen(pname), q, sizeof q));
            pk_value *root;
            pk_info info;
            rc = wt_pickle_load(&arena, pkl, (size_t)st.size, what, &root, &info, err);
            if (rc == 0) rc = tz_interpret(&c, root, &info);
            wt_arena_free(&arena);
        }
        free(pkl);
    }
    zip_discard(c.za);
    return rc;
}
