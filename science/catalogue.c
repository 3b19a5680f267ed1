/* science/catalogue.c: what the science commands read from a catalogue: embeddings by chunks of rows
 * (float16 converted here), the status and id_str columns, label files, and the ranked-CSV writer. Read-only
 * and without HDF5 file locking, like jobs/catread.c. Not here: any statistics (the other science/ files). */
#include <csv.h>
#include <errno.h>
#include <math.h>
#include <hdf5.h>

#include "io/h5attr.h"
#include "science/science.h"

#define SCI_CHUNK_BYTES (16u << 20) /* feature bytes per streamed chunk */

struct sci_cat {
    hid_t file, feat, status, ids;
    hid_t feat_type; /* memory type: native float, or the file's binary16 read raw */
    int half, dim;
    int64_t rows;
    size_t id_width;
    hid_t id_mem;
    char *path;
    uint16_t *half_buf;
    size_t half_cap;
};

static float half_table[65536];
static int half_ready;

/* IEEE binary16 to float32 (numpy's float16 semantics, subnormals included) */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023u, bits;
    if (e == 31)
        bits = sign | 0x7f800000u | (m << 13);
    else if (e)
        bits = sign | ((e + 112) << 23) | (m << 13);
    else if (!m)
        bits = sign;
    else {
        float v = (float)m / 16777216.0f; /* m * 2^-24 */
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

int sci_cat_open(const char *path, sci_cat **out, char *err)
{
    *out = NULL;
    if (!half_ready) {
        for (uint32_t i = 0; i < 65536; i++) half_table[i] = half_to_float((uint16_t)i);
        half_ready = 1;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_file_locking(fapl, 0, 1);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0)
        return mc_fail(err, "%s: cannot be opened as an HDF5 file (missing, not HDF5, or damaged)", path);
    sci_cat *c = mc_calloc(1, sizeof *c);
    c->file = f;
    c->feat = c->status = c->ids = c->feat_type = c->id_mem = -1;
    c->path = mc_strdup(path);
    char layout[128];
    if (io_h5_attr_str(f, "layout", layout, sizeof layout) || strcmp(layout, "morphcat-catalogue-1")) {
        sci_cat_close(c);
        return mc_fail(err, "%s: not a morphcat catalogue (layout attribute '%s')", path, layout);
    }
    c->status = H5Dopen2(f, "galaxies/status", H5P_DEFAULT);
    c->ids = H5Dopen2(f, "galaxies/id_str", H5P_DEFAULT);
    if (c->status < 0 || c->ids < 0) {
        sci_cat_close(c);
        return mc_fail(err, "%s: has no galaxies/status or galaxies/id_str dataset", path);
    }
    hsize_t dims[2] = {0, 0};
    hid_t sp = H5Dget_space(c->status);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    c->rows = (int64_t)dims[0];
    if (H5Lexists(f, "embedding", H5P_DEFAULT) <= 0 || H5Lexists(f, "embedding/features", H5P_DEFAULT) <= 0) {
        sci_cat_close(c);
        return mc_fail(err, "%s: has no embedding/features dataset (was the job run with --embedding none?)",
                       path);
    }
    c->feat = H5Dopen2(f, "embedding/features", H5P_DEFAULT);
    sp = H5Dget_space(c->feat);
    int nd = H5Sget_simple_extent_ndims(sp);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    hid_t ft = H5Dget_type(c->feat);
    int is_float = H5Tget_class(ft) == H5T_FLOAT;
    size_t fsize = H5Tget_size(ft);
    if (nd != 2 || (int64_t)dims[0] != c->rows || dims[1] < 1 || !is_float ||
        (fsize != 2 && fsize != 4 && fsize != 8)) {
        H5Tclose(ft);
        sci_cat_close(c);
        return mc_fail(err, "%s: embedding/features is not a (%lld, D) float16/float32 array", path,
                       (long long)c->rows);
    }
    c->dim = (int)dims[1];
    c->half = fsize == 2;
    c->feat_type = c->half ? H5Tcopy(ft) : H5Tcopy(H5T_NATIVE_FLOAT);
    H5Tclose(ft);
    ft = H5Dget_type(c->ids);
    if (H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) > 0) {
        H5Tclose(ft);
        sci_cat_close(c);
        return mc_fail(err, "%s: galaxies/id_str is not a fixed-width string column", path);
    }
    c->id_width = H5Tget_size(ft) + 1; /* one byte more, so every id is NUL-terminated */
    c->id_mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(c->id_mem, c->id_width);
    H5Tset_strpad(c->id_mem, H5T_STR_NULLTERM);
    H5Tset_cset(c->id_mem, H5Tget_cset(ft));
    H5Tclose(ft);
    *out = c;
    return 0;
}

void sci_cat_close(sci_cat *c)
{
    if (!c) return;
    hid_t d[3] = {c->feat, c->status, c->ids};
    for (int i = 0; i < 3; i++)
        if (d[i] >= 0) H5Dclose(d[i]);
    if (c->feat_type >= 0) H5Tclose(c->feat_type);
    if (c->id_mem >= 0) H5Tclose(c->id_mem);
    if (c->file >= 0) H5Fclose(c->file);
    free(c->half_buf);
    free(c->path);
    free(c);
}

int64_t sci_cat_rows(const sci_cat *c)
{
    return c->rows;
}
int sci_cat_dim(const sci_cat *c)
{
    return c->dim;
}
size_t sci_cat_id_width(const sci_cat *c)
{
    return c->id_width;
}
const char *sci_cat_path(const sci_cat *c)
{
    return c->path;
}

static int read_slab(hid_t ds, hid_t mt, int64_t row0, int64_t n, hsize_t cols, void *buf)
{
    hid_t fs = H5Dget_space(ds);
    hsize_t start[2] = {(hsize_t)row0, 0}, count[2] = {(hsize_t)n, cols};
    int nd = cols ? 2 : 1;
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(nd, count, NULL);
    int rc = H5Dread(ds, mt, ms, fs, H5P_DEFAULT, buf) < 0 ? -1 : 0;
    H5Sclose(ms);
    H5Sclose(fs);
    return rc;
}

int sci_cat_read(sci_cat *c, int64_t row0, int64_t n, float *feat, uint8_t *status, char *ids, char *err)
{
    MC_ASSERT(row0 >= 0 && n >= 0 && row0 + n <= c->rows);
    if (n == 0) return 0;
    if (status && read_slab(c->status, H5T_NATIVE_UINT8, row0, n, 0, status))
        return mc_fail(err, "%s: cannot read galaxies/status rows %lld-%lld", c->path, (long long)row0,
                       (long long)(row0 + n - 1));
    if (ids && read_slab(c->ids, c->id_mem, row0, n, 0, ids))
        return mc_fail(err, "%s: cannot read galaxies/id_str rows %lld-%lld", c->path, (long long)row0,
                       (long long)(row0 + n - 1));
    if (!feat) return 0;
    size_t m = (size_t)n * (size_t)c->dim;
    void *dst = feat;
    if (c->half) {
        if (m > c->half_cap) {
            c->half_buf = mc_realloc(c->half_buf, m * 2);
            c->half_cap = m;
        }
        dst = c->half_buf;
    }
    if (read_slab(c->feat, c->feat_type, row0, n, (hsize_t)c->dim, dst))
        return mc_fail(err, "%s: cannot read embedding/features rows %lld-%lld", c->path, (long long)row0,
                       (long long)(row0 + n - 1));
    if (c->half)
        for (size_t i = 0; i < m; i++) feat[i] = half_table[c->half_buf[i]];
    return 0;
}

int sci_cat_count_ok(sci_cat *c, int64_t *n_ok, char *err)
{
    int64_t step = 1 << 20, n = 0;
    uint8_t *st = mc_malloc((size_t)step);
    for (int64_t r = 0; r < c->rows; r += step) {
        int64_t m = c->rows - r < step ? c->rows - r : step;
        if (sci_cat_read(c, r, m, NULL, st, NULL, err)) {
            free(st);
            return -1;
        }
        for (int64_t i = 0; i < m; i++) n += st[i] == MC_ROW_OK;
    }
    free(st);
    *n_ok = n;
    return 0;
}

/* ---- streams --------------------------------------------------------------------------------------------
 */
void sci_stream_open(sci_stream *s, sci_cat *c, const sci_pca *pca, int want_ids, int64_t first, int64_t end)
{
    memset(s, 0, sizeof *s);
    s->cat = c;
    s->pca = pca;
    s->dim = pca ? pca->k : c->dim;
    s->want_ids = want_ids;
    s->next_row = first;
    s->end_row = end < 0 || end > c->rows ? c->rows : end;
    s->chunk = SCI_CHUNK_BYTES / (4 * (int64_t)c->dim);
    if (s->chunk < 64) s->chunk = 64;
    s->id_width = c->id_width;
    s->raw = mc_malloc_aligned(sizeof(float) * (size_t)s->chunk * c->dim);
    s->x = pca ? mc_malloc_aligned(sizeof(float) * (size_t)s->chunk * s->dim) : s->raw;
    s->row = mc_malloc(sizeof(int64_t) * (size_t)s->chunk);
    s->status = mc_malloc((size_t)s->chunk);
    if (want_ids) {
        s->raw_ids = mc_malloc((size_t)s->chunk * c->id_width);
        s->ids = s->raw_ids;
    }
}

int sci_stream_next(sci_stream *s, char *err)
{
    if (s->next_row >= s->end_row) return 0;
    int64_t r0 = s->next_row, m = s->end_row - r0 < s->chunk ? s->end_row - r0 : s->chunk;
    s->next_row += m;
    int D = s->cat->dim;
    if (sci_cat_read(s->cat, r0, m, s->raw, s->status, s->raw_ids, err)) return -1;
    int64_t k = 0;
    for (int64_t i = 0; i < m; i++) { /* compact the ok rows to the front */
        if (s->status[i] != MC_ROW_OK) continue;
        if (k != i) {
            memmove(s->raw + (size_t)k * D, s->raw + (size_t)i * D, sizeof(float) * (size_t)D);
            if (s->raw_ids) memmove(s->raw_ids + k * s->id_width, s->raw_ids + i * s->id_width, s->id_width);
        }
        s->row[k++] = r0 + i;
    }
    s->n = k;
    if (s->pca && k) sci_pca_project(s->pca, s->raw, k, s->x);
    return 1;
}

void sci_stream_close(sci_stream *s)
{
    if (s->x != s->raw) free(s->x);
    free(s->raw);
    free(s->row);
    free(s->status);
    free(s->raw_ids);
    memset(s, 0, sizeof *s);
}

int sci_feature_moments(sci_cat *c, const sci_pca *pca, double *mu, double *sd, int64_t *n_ok, char *err)
{
    sci_stream s;
    sci_stream_open(&s, c, pca, 0, 0, -1);
    int d = s.dim, rc;
    double *shift = mc_calloc((size_t)d, sizeof(double)), *s1 = mc_calloc((size_t)d, sizeof(double)),
           *s2 = mc_calloc((size_t)d, sizeof(double));
    int64_t n = 0;
    while ((rc = sci_stream_next(&s, err)) == 1) {
        for (int64_t i = 0; i < s.n; i++) {
            const float *x = s.x + (size_t)i * d;
            if (n == 0) /* shifted sums: no cancellation when the mean is large against the spread */
                for (int j = 0; j < d; j++) shift[j] = x[j];
            for (int j = 0; j < d; j++) {
                double v = x[j] - shift[j];
                s1[j] += v;
                s2[j] += v * v;
            }
            n++;
        }
    }
    for (int j = 0; j < d; j++) {
        double m = n ? s1[j] / (double)n : 0;
        mu[j] = shift[j] + m;
        double var = n ? s2[j] / (double)n - m * m : 0;
        sd[j] = var > 0 ? sqrt(var) : 0;
        if (sd[j] == 0) sd[j] = 1; /* sklearn's StandardScaler leaves constant features unscaled */
    }
    *n_ok = n;
    free(shift);
    free(s1);
    free(s2);
    sci_stream_close(&s);
    return rc < 0 ? -1 : 0;
}

/* ---- id sets: open addressing on FNV-1a ------------------------------------------------------------------
 */
struct sci_idset {
    char **key;
    int64_t *slot; /* index into key, -1 empty */
    int64_t n, cap, mask;
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

sci_idset *sci_idset_init(int64_t expected)
{
    sci_idset *s = mc_calloc(1, sizeof *s);
    int64_t cap = 16;
    while (cap < 2 * expected + 16) cap *= 2;
    s->mask = cap - 1;
    s->slot = mc_malloc(sizeof(int64_t) * (size_t)cap);
    for (int64_t i = 0; i < cap; i++) s->slot[i] = -1;
    s->cap = cap / 2;
    s->key = mc_malloc(sizeof(char *) * (size_t)s->cap);
    return s;
}

static int64_t *idset_probe(const sci_idset *s, const char *id)
{
    for (uint64_t h = fnv1a(id) & (uint64_t)s->mask;; h = (h + 1) & (uint64_t)s->mask)
        if (s->slot[h] < 0 || !strcmp(s->key[s->slot[h]], id)) return &s->slot[h];
}

int64_t sci_idset_add(sci_idset *s, const char *id)
{
    if (s->n >= s->cap) { /* grow: rehash into twice the slots */
        int64_t cap = (s->mask + 1) * 2;
        free(s->slot);
        s->slot = mc_malloc(sizeof(int64_t) * (size_t)cap);
        for (int64_t i = 0; i < cap; i++) s->slot[i] = -1;
        s->mask = cap - 1;
        s->cap = cap / 2;
        s->key = mc_realloc(s->key, sizeof(char *) * (size_t)s->cap);
        for (int64_t i = 0; i < s->n; i++) *idset_probe(s, s->key[i]) = i;
    }
    int64_t *p = idset_probe(s, id);
    if (*p >= 0) return -1;
    s->key[s->n] = mc_strdup(id);
    *p = s->n;
    return s->n++;
}

int64_t sci_idset_find(const sci_idset *s, const char *id)
{
    return *idset_probe(s, id);
}
int64_t sci_idset_size(const sci_idset *s)
{
    return s->n;
}
const char *sci_idset_key(const sci_idset *s, int64_t i)
{
    return s->key[i];
}

void sci_idset_free(sci_idset *s)
{
    if (!s) return;
    for (int64_t i = 0; i < s->n; i++) free(s->key[i]);
    free(s->key);
    free(s->slot);
    free(s);
}

/* ---- label files (libcsv, so quoted ids with commas work) ---------------------------------------------- */
typedef struct label_parse {
    sci_labels *l;
    const char *path;
    char *f0, *f1;
    int field;
    int64_t line, cap;
    char *err;
    int failed;
} label_parse;

static void label_field(void *s, size_t len, void *data)
{
    label_parse *p = data;
    char *v = mc_malloc(len + 1);
    memcpy(v, s, len);
    v[len] = 0;
    if (p->field == 0)
        p->f0 = v;
    else if (p->field == 1)
        p->f1 = v;
    else
        free(v);
    p->field++;
}

static void label_row(int c, void *data)
{
    (void)c;
    label_parse *p = data;
    p->line++;
    if (p->line > 1 && !p->failed && p->f0 && (p->f0[0] || (p->f1 && p->f1[0]))) {
        if (!p->f1 || p->field < 2) {
            p->failed = 1;
            mc_fail(p->err, "%s: line %lld: expected id_str,value", p->path, (long long)p->line);
        } else if (sci_idset_add(p->l->ids, p->f0) < 0) {
            p->failed = 1;
            mc_fail(p->err, "%s: line %lld: id_str '%s' is labelled twice", p->path, (long long)p->line,
                    p->f0);
        } else {
            if (p->l->n == p->cap) {
                p->cap = p->cap ? 2 * p->cap : 256;
                p->l->value = mc_realloc(p->l->value, sizeof(char *) * (size_t)p->cap);
                p->l->line = mc_realloc(p->l->line, sizeof(int64_t) * (size_t)p->cap);
            }
            p->l->value[p->l->n] = p->f1;
            p->l->line[p->l->n++] = p->line;
            p->f1 = NULL;
        }
    } else if (p->line == 1 && (!p->f0 || strcmp(p->f0, "id_str"))) {
        p->failed = 1;
        mc_fail(p->err, "%s: line 1: the header must start with id_str", p->path);
    }
    free(p->f0);
    free(p->f1);
    p->f0 = p->f1 = NULL;
    p->field = 0;
}

int sci_labels_read(const char *path, sci_labels *l, char *err)
{
    memset(l, 0, sizeof *l);
    FILE *f = fopen(path, "rb");
    if (!f) return mc_fail(err, "%s: cannot be opened: %s", path, strerror(errno));
    l->ids = sci_idset_init(1024);
    label_parse p = {.l = l, .path = path, .err = err};
    struct csv_parser cp;
    csv_init(&cp, CSV_APPEND_NULL);
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0 && !p.failed)
        if (csv_parse(&cp, buf, got, label_field, label_row, &p) != got) {
            p.failed = 1;
            mc_fail(err, "%s: not a CSV file (%s)", path, csv_strerror(csv_error(&cp)));
        }
    if (!p.failed) csv_fini(&cp, label_field, label_row, &p);
    csv_free(&cp);
    fclose(f);
    free(p.f0);
    free(p.f1);
    if (!p.failed && l->n == 0) {
        p.failed = 1;
        mc_fail(err, "%s: holds no labels (expected a header id_str,value and one line per galaxy)", path);
    }
    if (p.failed) {
        sci_labels_free(l);
        return -1;
    }
    return 0;
}

void sci_labels_free(sci_labels *l)
{
    for (int64_t i = 0; i < l->n; i++) free(l->value[i]);
    free(l->value);
    free(l->line);
    sci_idset_free(l->ids);
    memset(l, 0, sizeof *l);
}

int sci_labels_gather(const sci_labels *l, const char *label_path, sci_cat *c, const sci_pca *pca,
                      int64_t *row, float *x, char *err)
{
    for (int64_t i = 0; i < l->n; i++) row[i] = -1;
    sci_stream s;
    sci_stream_open(&s, c, pca, 1, 0, -1);
    int rc;
    while ((rc = sci_stream_next(&s, err)) == 1)
        for (int64_t i = 0; i < s.n; i++) {
            int64_t j = sci_idset_find(l->ids, s.ids + i * s.id_width);
            if (j < 0 || row[j] >= 0) continue; /* the first ok row of an id */
            row[j] = s.row[i];
            memcpy(x + (size_t)j * s.dim, s.x + (size_t)i * s.dim, sizeof(float) * (size_t)s.dim);
        }
    sci_stream_close(&s);
    if (rc < 0) return -1;
    for (int64_t i = 0; i < l->n; i++)
        if (row[i] < 0)
            return mc_fail(err, "%s: line %lld: id_str '%s' names no ok row of %s", label_path,
                           (long long)l->line[i], sci_idset_key(l->ids, i), sci_cat_path(c));
    return 0;
}

void sci_csv_id(FILE *f, const char *id)
{
    if (!strpbrk(id, ",\"\r\n")) {
        fputs(id, f);
        return;
    }
    fputc('"', f);
    for (const char *p = id; *p; p++) {
        if (*p == '"') fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

/* ---- ranked output --------------------------------------------------------------------------------------
 */
typedef struct rank_item {
    double score;
    int64_t row;
} rank_item;

static int by_score_desc(const void *a, const void *b)
{
    const rank_item *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

static int by_row(const void *a, const void *b)
{
    const int64_t *x = a, *y = b; /* pairs (row, position) */
    return (x[0] > y[0]) - (x[0] < y[0]);
}

int sci_rank_write(FILE *f, sci_cat *c, int64_t *row, double *score, int64_t n, char *err)
{
    rank_item *it = mc_malloc(sizeof *it * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) it[i] = (rank_item){score[i] != score[i] ? -INFINITY : score[i], row[i]};
    qsort(it, (size_t)n, sizeof *it, by_score_desc);
    for (int64_t i = 0; i < n; i++) {
        row[i] = it[i].row;
        score[i] = it[i].score;
    }
    free(it);
    const int64_t block = 1 << 20, step = 1 << 18;
    size_t w = c->id_width;
    int64_t *pairs = mc_malloc(sizeof(int64_t) * 2 * (size_t)block);
    char *ids = mc_malloc((size_t)block * w), *chunk = mc_malloc((size_t)step * w);
    int rc = 0;
    fprintf(f, "rank,id_str,score\n");
    for (int64_t b0 = 0; b0 < n && !rc; b0 += block) {
        int64_t m = n - b0 < block ? n - b0 : block;
        for (int64_t i = 0; i < m; i++) {
            pairs[2 * i] = row[b0 + i];
            pairs[2 * i + 1] = i;
        }
        qsort(pairs, (size_t)m, 2 * sizeof(int64_t), by_row);
        /* one pass over the id column, in chunks, filling this block's ids */
        int64_t j = 0;
        while (j < m && !rc) {
            int64_t r0 = pairs[2 * j];
            int64_t cnt = c->rows - r0 < step ? c->rows - r0 : step;
            if ((rc = sci_cat_read(c, r0, cnt, NULL, NULL, chunk, err))) break;
            for (; j < m && pairs[2 * j] < r0 + cnt; j++)
                memcpy(ids + pairs[2 * j + 1] * (int64_t)w, chunk + (pairs[2 * j] - r0) * (int64_t)w, w);
        }
        for (int64_t i = 0; i < m && !rc; i++) {
            fprintf(f, "%lld,", (long long)(b0 + i + 1));
            sci_csv_id(f, ids + i * (int64_t)w);
            fprintf(f, ",%.9g\n", score[b0 + i]);
        }
    }
    free(pairs);
    free(ids);
    free(chunk);
    return rc;
}
