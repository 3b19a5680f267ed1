/* jobs/merge.c: `morphcat merge` and the writing half of data-release reruns: per-job catalogues in, one
 * release catalogue out, one row per galaxy. Datasets are copied generically (every dataset whose first
 * dimension is the row count, in any group, of any type), so groups added to the layout later come along
 * without changes here; the per-answer virtual column views are remade to point into the new file. Serial
 * HDF5, written to OUTPUT.tmp and renamed, so a merge killed at any moment leaves no half-made catalogue
 * and can simply be run again. Not here: choosing rows for reruns (jobs/rerun.c). */
#include <errno.h>
#include <hdf5.h>
#include <unistd.h>

#include "io/h5attr.h"
#include "jobs/jobs.h"

const char *const jobs_merge_ident[] = {"layout",     "model_sha256",    "model_arch", "schema",
                                        "preprocessing", "input_size", "embedding_dtype", "pca_sha256",
                                        "clump_postprocessing", "precision", NULL};

/* ---- what a catalogue holds ----------------------------------------------------------------------------- */
typedef struct node {
    char *name;
    int is_group, is_virtual;
    hid_t type; /* datasets: the file type */
    int rank;
    hsize_t dims[H5S_MAX_RANK];
} node;

/* An input's layout is read once; its file is open only while it is checked or copied from (the first
 * input's stays open: the output's groups, attributes and dataset settings come from it), so the memory
 * of a merge does not grow with its inputs (HDF5 keeps metadata and chunk caches per open file). */
typedef struct cat_in {
    const char *path;
    hid_t file;
    int64_t n_rows;
    node *nodes;
    int n_nodes, cap_nodes;
    char release[IO_CAT_RELEASE_LEN], unit_rows[32];
    size_t *widest; /* first input only: per node, the widest fixed-string type of any input's */
} cat_in;

static hid_t input_open(const char *path)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_file_locking(fapl, 0, 1);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    return f;
}

static void input_close(cat_in *c)
{
    if (c->file >= 0) H5Fclose(c->file);
    c->file = -1;
}

static herr_t visit_cb(hid_t loc, const char *name, const H5L_info_t *info, void *data)
{
    (void)info;
    cat_in *c = data;
    hid_t o = H5Oopen(loc, name, H5P_DEFAULT);
    if (o < 0) return 0; /* a dangling link: nothing to copy */
    H5I_type_t t = H5Iget_type(o);
    if (t == H5I_GROUP || t == H5I_DATASET) {
        if (c->n_nodes == c->cap_nodes)
            c->nodes = mc_realloc(c->nodes, sizeof(node) * (size_t)(c->cap_nodes = c->cap_nodes ? 2 * c->cap_nodes : 32));
        node *n = &c->nodes[c->n_nodes++];
        memset(n, 0, sizeof *n);
        n->name = mc_strdup(name);
        n->is_group = t == H5I_GROUP;
        n->type = -1;
        if (!n->is_group) {
            hid_t t = H5Dget_type(o);
            n->type = H5Tcopy(t); /* a transient copy: usable once the file is closed */
            H5Tclose(t);
            hid_t sp = H5Dget_space(o);
            n->rank = H5Sget_simple_extent_ndims(sp);
            H5Sget_simple_extent_dims(sp, n->dims, NULL);
            H5Sclose(sp);
            hid_t dcpl = H5Dget_create_plist(o);
            n->is_virtual = H5Pget_layout(dcpl) == H5D_VIRTUAL;
            H5Pclose(dcpl);
        }
    }
    H5Oclose(o);
    return 0;
}

static void cat_in_close(cat_in *c)
{
    free(c->widest);
    c->widest = NULL;
    for (int i = 0; i < c->n_nodes; i++) {
        free(c->nodes[i].name);
        if (c->nodes[i].type >= 0) H5Tclose(c->nodes[i].type);
    }
    free(c->nodes);
    input_close(c);
    c->nodes = NULL;
    c->n_nodes = 0;
}



/* Copy every attribute of src to dst, whatever its type (variable-length strings included). */
static herr_t copy_attr_cb(hid_t src, const char *name, const H5A_info_t *info, void *data)
{
    (void)info;
    hid_t dst = *(hid_t *)data;
    hid_t a = H5Aopen(src, name, H5P_DEFAULT), t = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    size_t sz = H5Tget_size(t);
    void *buf = mc_calloc((size_t)(n > 0 ? n : 1), sz);
    herr_t rc = H5Aread(a, t, buf);
    if (rc >= 0) {
        if (H5Aexists(dst, name) > 0) H5Adelete(dst, name);
        hid_t b = H5Acreate2(dst, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        rc = b < 0 || H5Awrite(b, t, buf) < 0 ? -1 : 0;
        if (b >= 0) H5Aclose(b);
        if (H5Tdetect_class(t, H5T_VLEN) > 0 || (H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0))
            H5Dvlen_reclaim(t, sp, H5P_DEFAULT, buf);
    }
    free(buf);
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
    return rc < 0 ? -1 : 0;
}

static int copy_attrs(hid_t src, hid_t dst)
{
    hsize_t idx = 0;
    return H5Aiterate2(src, H5_INDEX_NAME, H5_ITER_INC, &idx, copy_attr_cb, &dst) < 0 ? -1 : 0;
}

static int cat_in_open(cat_in *c, const char *path, char *err)
{
    memset(c, 0, sizeof *c);
    c->path = path;
    c->file = input_open(path);
    if (c->file < 0) return mc_fail(err, "%s: cannot be opened as an HDF5 file (missing, not HDF5, or damaged)", path);
    char layout[128];
    if (io_h5_attr_str(c->file, "layout", layout, sizeof layout) || strcmp(layout, IO_CAT_LAYOUT))
        return mc_fail(err, "%s: not a morphcat catalogue (layout '%s', expected '%s')", path, layout, IO_CAT_LAYOUT);
    H5Lvisit(c->file, H5_INDEX_NAME, H5_ITER_INC, visit_cb, c);
    io_h5_attr_str(c->file, "release", c->release, sizeof c->release);
    io_h5_attr_str(c->file, "unit_rows", c->unit_rows, sizeof c->unit_rows);
    c->n_rows = -1;
    for (int i = 0; i < c->n_nodes; i++)
        if (!strcmp(c->nodes[i].name, "galaxies/status") && c->nodes[i].rank == 1) c->n_rows = (int64_t)c->nodes[i].dims[0];
    if (c->n_rows < 0) return mc_fail(err, "%s: has no galaxies/status column", path);
    for (int i = 0; i < c->n_nodes; i++) {
        node *n = &c->nodes[i];
        if (n->is_group || n->is_virtual) continue;
        if (n->rank < 1 || (int64_t)n->dims[0] != c->n_rows)
            return mc_fail(err, "%s: dataset %s is not indexed by galaxy row (first dimension %llu, %lld rows): merge "
                                "copies row-indexed datasets only", path, n->name,
                           (unsigned long long)(n->rank ? n->dims[0] : 0), (long long)c->n_rows);
    }
    return 0;
}

/* Catalogues of one job's options list the same nodes in the same (name) order: try position `hint` first. */
static const node *find_node(const cat_in *c, const char *name, int hint)
{
    if (hint >= 0 && hint < c->n_nodes && !strcmp(c->nodes[hint].name, name)) return &c->nodes[hint];
    for (int i = 0; i < c->n_nodes; i++)
        if (!strcmp(c->nodes[i].name, name)) return &c->nodes[i];
    return NULL;
}

/* Root attributes named *_sha256 (identities of a model, detector, PCA ...), manifest_sha256 excepted. */
static herr_t collect_sha_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void)loc;
    (void)info;
    char *list = data;
    size_t n = strlen(name), used = strlen(list);
    if (n > 7 && !strcmp(name + n - 7, "_sha256") && strcmp(name, "manifest_sha256") && used + n + 2 < 4096) {
        memcpy(list + used, name, n);
        list[used + n] = '\n';
        list[used + n + 1] = 0;
    }
    return 0;
}

/* Same model, head, recipe and columns as the first input, or one line saying what differs. */
static int check_same(const cat_in *a, const cat_in *b, char *err)
{
    char va[2048], vb[2048];
    /* every *_sha256 identity either has, so identities added to the layout later are checked too */
    char names[4096] = "";
    for (int pass = 0; pass < 2; pass++) {
        hsize_t idx = 0;
        H5Aiterate2(pass ? b->file : a->file, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_sha_cb, names);
    }
    for (char *name = names, *nl; *name && (nl = strchr(name, '\n')); name = nl + 1) {
        *nl = 0;
        io_h5_attr_str(a->file, name, va, sizeof va);
        io_h5_attr_str(b->file, name, vb, sizeof vb);
        if (strcmp(va, vb))
            return mc_fail(err, "%s: its %s is '%.120s' but %s has '%.120s': catalogues of different models, "
                                "schemas, recipes or layouts cannot be merged", b->path, name, vb, a->path, va);
    }
    for (int i = 0; jobs_merge_ident[i]; i++) {
        va[0] = vb[0] = 0;
        io_h5_attr_str(a->file, jobs_merge_ident[i], va, sizeof va);
        io_h5_attr_str(b->file, jobs_merge_ident[i], vb, sizeof vb);
        if (!strcmp(jobs_merge_ident[i], "precision")) { /* catalogues from before the attribute are fp32 */
            if (!va[0]) snprintf(va, sizeof va, "fp32");
            if (!vb[0]) snprintf(vb, sizeof vb, "fp32");
        }
        if (strcmp(va, vb))
            return mc_fail(err, "%s: its %s is '%.120s' but %s has '%.120s': catalogues of different models, "
                                "schemas, recipes or layouts cannot be merged", b->path, jobs_merge_ident[i], vb,
                           a->path, va);
    }
    for (int pass = 0; pass < 2; pass++) {
        const cat_in *x = pass ? b : a, *y = pass ? a : b;
        for (int i = 0; i < x->n_nodes; i++) {
            const node *n = &x->nodes[i], *m = find_node(y, n->name, i);
            if (!m || m->is_group != n->is_group || m->is_virtual != n->is_virtual)
                return mc_fail(err, "%s has %s %s but %s has not: catalogues to merge must have the same columns "
                                    "(same job options)", x->path, n->is_group ? "group" : "dataset", n->name,
                               y->path);
        }
    }
    for (int i = 0; i < a->n_nodes; i++) {
        const node *n = &a->nodes[i], *m = find_node(b, n->name, i);
        if (n->is_group || n->is_virtual) continue;
        int same = n->rank == m->rank;
        for (int d = 1; same && d < n->rank; d++) same = n->dims[d] == m->dims[d];
        if (same) {
            int sa = H5Tget_class(n->type) == H5T_STRING && H5Tis_variable_str(n->type) <= 0;
            int sb = H5Tget_class(m->type) == H5T_STRING && H5Tis_variable_str(m->type) <= 0;
            same = (sa && sb) ? H5Tget_cset(n->type) == H5Tget_cset(m->type) : H5Tequal(n->type, m->type) > 0;
        }
        if (!same)
            return mc_fail(err, "%s: dataset %s has a different type or shape than in %s: catalogues to merge must "
                                "have the same columns (same job options)", b->path, n->name, a->path);
    }
    return 0;
}

/* ---- the writer ----------------------------------------------------------------------------------------- */
/* Read (write = 0) or write rows [row0, row0 + n) of a row-indexed dataset of the given rank and dims. */
static int io_rows(hid_t ds, hid_t mtype, int rank, const hsize_t *dims, int64_t row0, int64_t n, void *buf, int write)
{
    hsize_t start[H5S_MAX_RANK] = {0}, count[H5S_MAX_RANK];
    count[0] = (hsize_t)n;
    start[0] = (hsize_t)row0;
    for (int d = 1; d < rank; d++) count[d] = dims[d];
    hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(rank, count, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    herr_t e = write ? H5Dwrite(ds, mtype, ms, fs, H5P_DEFAULT, buf) : H5Dread(ds, mtype, ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    return e < 0 ? -1 : 0;
}

static int read_rows(hid_t ds, hid_t mtype, int rank, const hsize_t *dims, int64_t row0, int64_t n, void *buf)
{
    return io_rows(ds, mtype, rank, dims, row0, n, buf, 0);
}

static int write_rows(hid_t ds, hid_t mtype, int rank, const hsize_t *dims, int64_t row0, int64_t n, const void *buf)
{
    return io_rows(ds, mtype, rank, dims, row0, n, (void *)buf, 1);
}

/* The inputs a dataset's copy has open at once: at most MERGE_OPEN (each open file costs HDF5's caches, a few
 * MB), evicting the one used longest ago. Blocks of concatenated chunks touch inputs in order, so each input
 * is opened about once per dataset. */
enum { MERGE_OPEN = 8 };

typedef struct {
    cat_in *in;
    const char *name;
    hid_t *ds;     /* per input: the dataset, or -1 */
    int slot[MERGE_OPEN], n_slot;
    int64_t *used; /* per input: when last used */
    int64_t clock;
} ds_pool;

static hid_t pool_get(ds_pool *p, int k)
{
    p->used[k] = ++p->clock;
    if (p->ds[k] >= 0) return p->ds[k];
    if (k > 0 && p->n_slot == MERGE_OPEN) {
        int v = 0;
        for (int s = 1; s < p->n_slot; s++)
            if (p->used[p->slot[s]] < p->used[p->slot[v]]) v = s;
        int old = p->slot[v];
        H5Dclose(p->ds[old]);
        p->ds[old] = -1;
        input_close(&p->in[old]);
        p->slot[v] = p->slot[--p->n_slot];
    }
    if (k > 0) {
        p->in[k].file = input_open(p->in[k].path);
        if (p->in[k].file < 0) return -1;
        p->slot[p->n_slot++] = k;
    }
    p->ds[k] = H5Dopen2(p->in[k].file, p->name, H5P_DEFAULT);
    return p->ds[k];
}

static void pool_free(ds_pool *p, int n_in)
{
    for (int k = 0; k < n_in; k++) {
        if (p->ds[k] >= 0) H5Dclose(p->ds[k]);
        if (k > 0) input_close(&p->in[k]);
    }
    free(p->ds);
    free(p->used);
}

/* Copy one row-indexed dataset: output rows in blocks of ~8 MiB; the block's rows grouped by input (in output
 * order within each); for each input in the block, read the span of its rows at once when they are dense
 * (concatenated chunks, reruns), or run by run when they are not. */
static int copy_dataset(cat_in *in, int n_in, const jobs_pick *picks, int64_t n_out, hid_t out_ds, hid_t mtype,
                        const node *nd, char *err)
{
    size_t row_bytes = H5Tget_size(mtype);
    for (int d = 1; d < nd->rank; d++) row_bytes *= (size_t)nd->dims[d];
    int64_t block = (int64_t)((8u << 20) / (row_bytes ? row_bytes : 1));
    if (block < 1) block = 1;
    if (block > n_out) block = n_out > 0 ? n_out : 1;
    char *out = mc_malloc(row_bytes * (size_t)block), *span = mc_malloc(row_bytes * (size_t)(4 * block));
    ds_pool pool = {.in = in, .name = nd->name};
    pool.ds = mc_malloc(sizeof(hid_t) * (size_t)n_in);
    pool.used = mc_calloc((size_t)n_in, sizeof(int64_t));
    for (int k = 0; k < n_in; k++) pool.ds[k] = -1;
    /* per block: the inputs touched (in order of first use), each one's count, lo and hi, and its rows' place
     * in `order` (output positions grouped by input) */
    int64_t *cnt = mc_calloc((size_t)n_in, sizeof(int64_t)), *lo = mc_malloc(sizeof(int64_t) * (size_t)n_in);
    int64_t *hi = mc_malloc(sizeof(int64_t) * (size_t)n_in), *at = mc_malloc(sizeof(int64_t) * (size_t)n_in);
    int64_t *order = mc_malloc(sizeof(int64_t) * (size_t)block);
    int *touched = mc_malloc(sizeof(int) * (size_t)n_in);
    int rc = 0;
    for (int64_t o0 = 0; o0 < n_out && !rc; o0 += block) {
        int64_t n = n_out - o0 < block ? n_out - o0 : block;
        int nt = 0;
        for (int64_t i = o0; i < o0 + n; i++) {
            int k = picks[i].input;
            if (!cnt[k]++) {
                touched[nt++] = k;
                lo[k] = INT64_MAX;
                hi[k] = -1;
            }
            if (picks[i].row < lo[k]) lo[k] = picks[i].row;
            if (picks[i].row > hi[k]) hi[k] = picks[i].row;
        }
        int64_t pos = 0;
        for (int t = 0; t < nt; t++) {
            at[touched[t]] = pos;
            pos += cnt[touched[t]];
        }
        for (int64_t i = o0; i < o0 + n; i++) order[at[picks[i].input]++] = i;
        pos = 0;
        for (int t = 0; t < nt && !rc; t++) {
            int k = touched[t];
            const int64_t *mine = order + pos; /* k's output positions, increasing */
            int64_t m = cnt[k];
            pos += m;
            hid_t ds = pool_get(&pool, k);
            if (ds < 0) {
                rc = mc_fail(err, "%s: cannot be opened again to read %s (moved or damaged during the merge?)",
                             in[k].path, nd->name);
                break;
            }
            if (hi[k] - lo[k] + 1 <= 4 * block) {
                rc = read_rows(ds, mtype, nd->rank, nd->dims, lo[k], hi[k] - lo[k] + 1, span);
                for (int64_t q = 0; q < m && !rc; q++)
                    memcpy(out + (size_t)(mine[q] - o0) * row_bytes,
                           span + (size_t)(picks[mine[q]].row - lo[k]) * row_bytes, row_bytes);
            } else {
                for (int64_t q = 0; q < m && !rc;) {
                    int64_t r = q + 1; /* a run: consecutive output rows from consecutive input rows */
                    while (r < m && mine[r] == mine[r - 1] + 1 && picks[mine[r]].row == picks[mine[r - 1]].row + 1)
                        r++;
                    rc = read_rows(ds, mtype, nd->rank, nd->dims, picks[mine[q]].row, r - q,
                                   out + (size_t)(mine[q] - o0) * row_bytes);
                    q = r;
                }
            }
            if (rc) mc_fail(err, "%s: cannot read %s", in[k].path, nd->name);
        }
        for (int t = 0; t < nt; t++) cnt[touched[t]] = 0;
        if (!rc && write_rows(out_ds, mtype, nd->rank, nd->dims, o0, n, out))
            rc = mc_fail(err, "writing %s failed (disk full?)", nd->name);
    }
    pool_free(&pool, n_in);
    free(cnt);
    free(lo);
    free(hi);
    free(at);
    free(order);
    free(touched);
    free(out);
    free(span);
    return rc;
}

static int write_merged(cat_in *in, int n_in, const jobs_pick *picks, int64_t n_out, const char *output,
                        const io_kv *set, int n_set, char *err)
{
    for (int64_t i = 0; i < n_out; i++)
        MC_ASSERT(picks[i].input >= 0 && picks[i].input < n_in && picks[i].row >= 0 &&
                  picks[i].row < in[picks[i].input].n_rows);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", output);
    unlink(tmp);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return mc_fail(err, "%s: cannot create (is the folder writable?)", tmp);
    int rc = copy_attrs(in[0].file, f) ? mc_fail(err, "%s: cannot copy the root attributes", in[0].path) : 0;
    for (int i = 0; !rc && i < n_set; i++)
        if (io_h5_attr_put_str(f, set[i].key, set[i].value)) rc = mc_fail(err, "%s: cannot write attribute %s", tmp, set[i].key);
    /* groups first (H5Lvisit lists a group before what it holds), then stored datasets, then views */
    for (int pass = 0; pass < 3 && !rc; pass++)
        for (int i = 0; i < in[0].n_nodes && !rc; i++) {
            const node *nd = &in[0].nodes[i];
            if ((pass == 0) != nd->is_group || (pass == 2) != nd->is_virtual) continue;
            hid_t src = H5Oopen(in[0].file, nd->name, H5P_DEFAULT), obj = -1;
            if (pass == 0) {
                obj = H5Gcreate2(f, nd->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            } else {
                hsize_t dims[H5S_MAX_RANK], maxd[H5S_MAX_RANK];
                for (int d = 0; d < nd->rank; d++) dims[d] = maxd[d] = nd->dims[d];
                dims[0] = (hsize_t)n_out;
                maxd[0] = H5S_UNLIMITED;
                hid_t sp = H5Screate_simple(nd->rank, dims, maxd);
                hid_t dcpl = H5Dget_create_plist(src), type = H5Tcopy(nd->type);
                if (pass == 1) {
                    /* fixed strings as wide as the widest input's */
                    if (H5Tget_class(type) == H5T_STRING && H5Tis_variable_str(type) <= 0)
                        H5Tset_size(type, in[0].widest[i]);
                    size_t row_bytes = H5Tget_size(type);
                    for (int d = 1; d < nd->rank; d++) row_bytes *= (size_t)nd->dims[d];
                    hsize_t chunk[H5S_MAX_RANK];
                    chunk[0] = (hsize_t)((1u << 20) / (row_bytes ? row_bytes : 1));
                    if (chunk[0] < 1) chunk[0] = 1;
                    if (chunk[0] > (hsize_t)n_out && n_out > 0) chunk[0] = (hsize_t)n_out;
                    for (int d = 1; d < nd->rank; d++) chunk[d] = nd->dims[d] ? nd->dims[d] : 1;
                    H5Pset_chunk(dcpl, nd->rank, chunk); /* filters and fill settings stay the input's */
                    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_INCR);
                }
                obj = H5Dcreate2(f, nd->name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
                if (obj >= 0 && pass == 1 && n_out > 0)
                    rc = copy_dataset(in, n_in, picks, n_out, obj, type, nd, err);
                H5Tclose(type);
                H5Pclose(dcpl);
                H5Sclose(sp);
            }
            if (obj < 0 && !rc) rc = mc_fail(err, "%s: cannot create %s", tmp, nd->name);
            if (!rc && copy_attrs(src, obj)) rc = mc_fail(err, "%s: cannot copy the attributes of %s", tmp, nd->name);
            if (obj >= 0) H5Oclose(obj);
            H5Oclose(src);
        }
    if (H5Fclose(f) < 0 && !rc) rc = mc_fail(err, "%s: closing failed (disk full?)", tmp);
    if (!rc) {
        FILE *fs = fopen(tmp, "r+");
        if (fs) {
            fsync(fileno(fs));
            fclose(fs);
        }
        if (rename(tmp, output) != 0) rc = mc_fail(err, "%s: cannot rename into place (%s)", output, strerror(errno));
    }
    if (rc) unlink(tmp);
    return rc;
}

static int open_all(const char *const *inputs, int n_in, cat_in *in, char *err)
{
    for (int k = 0; k < n_in; k++) in[k].file = -1;
    for (int k = 0; k < n_in; k++) {
        if (cat_in_open(&in[k], inputs[k], err)) return -1;
        if (k == 0) in[0].widest = mc_calloc((size_t)(in[0].n_nodes ? in[0].n_nodes : 1), sizeof(size_t));
        if (k > 0 && check_same(&in[0], &in[k], err)) return -1;
        for (int i = 0; i < in[0].n_nodes; i++) {
            const node *nd = &in[0].nodes[i], *mine = find_node(&in[k], nd->name, i);
            if (!nd->is_group && H5Tget_class(mine->type) == H5T_STRING && H5Tis_variable_str(mine->type) <= 0 &&
                H5Tget_size(mine->type) > in[0].widest[i])
                in[0].widest[i] = H5Tget_size(mine->type);
        }
        if (k > 0) cat_in_close(&in[k]); /* checked: its path, rows and attributes are all that is needed now */
    }
    return 0;
}

int jobs_merge_picks(const char *const *inputs, int n_in, const jobs_pick *picks, int64_t n_out, const char *output,
                     const io_kv *set, int n_set, char *err)
{
    if (n_in < 1) return mc_fail(err, "nothing to merge");
    cat_in *in = mc_calloc((size_t)n_in, sizeof *in);
    int rc = open_all(inputs, n_in, in, err);
    if (!rc) rc = write_merged(in, n_in, picks, n_out, output, set, n_set, err);
    for (int k = 0; k < n_in; k++) cat_in_close(&in[k]);
    free(in);
    return rc;
}

/* ---- one row per id_str ---------------------------------------------------------------------------------- */
static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int status_class(uint8_t s)
{
    return s == MC_ROW_OK ? 2 : s == MC_ROW_PENDING ? 0 : 1;
}

int jobs_merge(const char *const *inputs, int n_in, const char *output, const char *release, int allow_pending,
               jobs_merge_stats *st, char *err)
{
    memset(st, 0, sizeof *st);
    if (n_in < 1) return mc_fail(err, "nothing to merge: give the catalogues to merge");
    for (int k = 0; k < n_in; k++)
        if (!strcmp(inputs[k], output))
            return mc_fail(err, "%s is both an input and the output: write the release catalogue to a new path",
                           output);
    cat_in *in = mc_calloc((size_t)n_in, sizeof *in);
    char **ids = mc_calloc((size_t)n_in, sizeof(char *));
    uint8_t **status = mc_calloc((size_t)n_in, sizeof(uint8_t *));
    size_t *w = mc_calloc((size_t)n_in, sizeof(size_t));
    jobs_pick *picks = NULL;
    uint8_t *best = NULL;
    int64_t *tab = NULL;
    char *merged_from = NULL;
    int rc = open_all(inputs, n_in, in, err);
    int64_t total = 0;
    for (int k = 0; k < n_in && !rc; k++) {
        jobs_cat *c;
        rc = jobs_cat_open(inputs[k], &c, err);
        if (rc) break;
        status[k] = mc_malloc((size_t)(in[k].n_rows > 0 ? in[k].n_rows : 1));
        rc = jobs_cat_read_status(c, status[k], err);
        if (!rc) rc = jobs_cat_read_strings(c, "galaxies/id_str", &ids[k], &w[k], err);
        jobs_cat_close(c);
        total += in[k].n_rows;
    }
    st->rows_in = total;
    if (!rc) {
        size_t cap = 16;
        while (cap < 2 * (size_t)total + 16) cap *= 2;
        tab = mc_calloc(cap, sizeof(int64_t)); /* output index + 1 */
        picks = mc_malloc(sizeof(jobs_pick) * (size_t)(total > 0 ? total : 1));
        best = mc_malloc((size_t)(total > 0 ? total : 1));
        int64_t n_out = 0;
        for (int k = 0; k < n_in; k++)
            for (int64_t i = 0; i < in[k].n_rows; i++) {
                const char *id = ids[k] + (size_t)i * w[k];
                int cls = status_class(status[k][i]);
                if (!id[0]) { /* a bad manifest row without an id: nothing to match it on */
                    st->no_id++;
                    picks[n_out] = (jobs_pick){k, i};
                    best[n_out++] = (uint8_t)cls;
                    continue;
                }
                size_t h = (size_t)hash_str(id) & (cap - 1);
                for (;; h = (h + 1) & (cap - 1)) {
                    if (!tab[h]) {
                        tab[h] = n_out + 1;
                        picks[n_out] = (jobs_pick){k, i};
                        best[n_out++] = (uint8_t)cls;
                        break;
                    }
                    int64_t o = tab[h] - 1;
                    const jobs_pick *p = &picks[o];
                    if (strcmp(ids[p->input] + (size_t)p->row * w[p->input], id)) continue;
                    st->duplicates++;
                    if (cls >= best[o]) { /* better status, or as good and from a later input */
                        if (cls > best[o] && best[o] == 1) st->replaced_failed++;
                        picks[o] = (jobs_pick){k, i};
                        best[o] = (uint8_t)cls;
                    }
                    break;
                }
            }
        st->rows_out = n_out;
        int64_t first_pending = -1;
        for (int64_t o = 0; o < n_out; o++)
            if (best[o] == 0) {
                st->pending_out++;
                if (first_pending < 0) first_pending = o;
            }
        if (st->pending_out && !allow_pending) {
            const jobs_pick *p = &picks[first_pending];
            rc = mc_fail(err, "%lld galaxies are pending (not computed) in every input that holds them, e.g. '%s' in "
                              "%s: finish those jobs first (rerun them), or pass --allow-pending",
                         (long long)st->pending_out, ids[p->input] + (size_t)p->row * w[p->input], in[p->input].path);
        }
        if (!rc) {
            /* provenance: the inputs, their releases and sizes; the identity of a merged catalogue */
            size_t cap_m = 256, len = 0;
            merged_from = mc_malloc(cap_m);
            merged_from[0] = 0;
            char rel[IO_CAT_RELEASE_LEN], last_rel[IO_CAT_RELEASE_LEN] = "", unit0[32] = "", unit[32], line[4400];
            int mixed_units = 0;
            for (int k = 0; k < n_in; k++) {
                snprintf(rel, sizeof rel, "%s", in[k].release);
                snprintf(unit, sizeof unit, "%s", in[k].unit_rows);
                if (k == 0) snprintf(unit0, sizeof unit0, "%s", unit);
                else mixed_units |= strcmp(unit, unit0) != 0;
                snprintf(last_rel, sizeof last_rel, "%s", rel);
                int n = snprintf(line, sizeof line, "%s\trelease=%s\trows=%lld\n", inputs[k], rel, (long long)in[k].n_rows);
                if (len + (size_t)n + 1 > cap_m) merged_from = mc_realloc(merged_from, cap_m = 2 * (len + (size_t)n + 1));
                memcpy(merged_from + len, line, (size_t)n + 1);
                len += (size_t)n;
            }
            char nrows[32], created[32];
            snprintf(nrows, sizeof nrows, "%lld", (long long)n_out);
            mc_utc_now(created, sizeof created);
            io_kv set[] = {{"n_rows", nrows},
                           {"release", release && release[0] ? release : last_rel},
                           {"manifest_sha256", "none (merged: see merged_from)"},
                           {"manifest_path", ""},
                           {"created_utc", created},
                           {"unit_rows", mixed_units ? "mixed" : unit0},
                           {"merged_from", merged_from}};
            rc = write_merged(in, n_in, picks, n_out, output, set, (int)(sizeof set / sizeof set[0]), err);
        }
    }
    for (int k = 0; k < n_in; k++) {
        cat_in_close(&in[k]);
        free(ids[k]);
        free(status[k]);
    }
    free(in);
    free(ids);
    free(status);
    free(w);
    free(picks);
    free(best);
    free(tab);
    free(merged_from);
    return rc;
}
