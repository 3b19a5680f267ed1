/* report/catread.c: the catalogue as the report, mosaic and export commands read it: serially, read-only,
 * without file locking, in row chunks (hyperslabs), never a whole column of a big table at once.
 * Not here: writing catalogues (io/catalog.c), merging them (jobs/). */
#include <strings.h>

#include "io/catalog.h"
#include "io/h5attr.h"
#include "report/report_internal.h"

/* A variable-length string array attribute (answer_columns, class_names) into n malloc'ed strings. */
static char **attr_strs(hid_t obj, const char *name, int *n)
{
    *n = 0;
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t sp = H5Aget_space(a);
    hssize_t m = H5Sget_simple_extent_npoints(sp);
    hid_t ft = H5Aget_type(a);
    char **out = NULL;
    if (m > 0 && H5Tget_class(ft) == H5T_STRING) {
        hid_t t = H5Tcopy(H5T_C_S1);
        out = mc_calloc((size_t)m, sizeof *out);
        if (H5Tis_variable_str(ft) > 0) {
            H5Tset_size(t, H5T_VARIABLE);
            H5Tset_cset(t, H5Tget_cset(ft));
            char **v = mc_calloc((size_t)m, sizeof *v);
            if (H5Aread(a, t, v) >= 0)
                for (hssize_t i = 0; i < m; i++) out[i] = mc_strdup(v[i] ? v[i] : "");
            H5Dvlen_reclaim(t, sp, H5P_DEFAULT, v);
            free(v);
        } else {
            size_t w = H5Tget_size(ft) + 1;
            H5Tset_size(t, w);
            H5Tset_strpad(t, H5T_STR_NULLTERM);
            char *v = mc_calloc((size_t)m, w);
            if (H5Aread(a, t, v) >= 0)
                for (hssize_t i = 0; i < m; i++) out[i] = mc_strdup(v + (size_t)i * w);
            free(v);
        }
        for (hssize_t i = 0; i < m; i++)
            if (!out[i]) out[i] = mc_strdup("");
        *n = (int)m;
        H5Tclose(t);
    }
    H5Tclose(ft);
    H5Sclose(sp);
    H5Aclose(a);
    return out;
}

static void strs_free(char **s, int n)
{
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

int rpt_cat_open(const char *path, rpt_cat **out, char *err)
{
    *out = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_file_locking(fapl, 0, 1);
    /* a larger chunk cache: the (N, A) morphology chunks are read many rows at a time */
    H5Pset_cache(fapl, 0, 521, (size_t)32 << 20, 1.0);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0)
        return mc_fail(err, "%s: cannot be opened as an HDF5 file (missing, not HDF5, or damaged)", path);
    rpt_cat *c = mc_calloc(1, sizeof *c);
    c->file = f;
    c->path = mc_strdup(path);
    char buf[4096];
    if (io_h5_attr_str(f, "layout", buf, sizeof buf) || strcmp(buf, IO_CAT_LAYOUT)) {
        mc_fail(err, "%s: not a morphcat catalogue (layout attribute '%s', expected '%s')", path, buf,
                IO_CAT_LAYOUT);
        rpt_cat_close(c);
        return -1;
    }
    static const char *const need[] = {"galaxies/status", "galaxies/id_str",  "galaxies/ra",
                                       "galaxies/dec",    "galaxies/message", "galaxies/file"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!rpt_cat_has(c, need[i])) {
            mc_fail(err, "%s: not a complete morphcat catalogue: no %s dataset", path, need[i]);
            rpt_cat_close(c);
            return -1;
        }
    hid_t ds = H5Dopen2(f, "galaxies/status", H5P_DEFAULT);
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[1] = {0};
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    H5Dclose(ds);
    c->n_rows = (int64_t)dims[0];
    if (rpt_cat_has(c, "morphology/fraction")) {
        hid_t g = H5Gopen2(f, "morphology", H5P_DEFAULT);
        c->answers = attr_strs(g, "answer_columns", &c->n_answers);
        H5Gclose(g);
        static const char *const cols[] = {"morphology/fraction", "morphology/fraction_90pc_lower",
                                           "morphology/fraction_90pc_upper", "morphology/proportion_asked",
                                           "morphology/concentration"};
        for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
            int ok = rpt_cat_has(c, cols[i]);
            if (ok) {
                hid_t d = H5Dopen2(f, cols[i], H5P_DEFAULT);
                hid_t s = H5Dget_space(d);
                hsize_t dd[2] = {0, 0};
                ok = H5Sget_simple_extent_ndims(s) == 2 && H5Sget_simple_extent_dims(s, dd, NULL) == 2 &&
                     (int64_t)dd[0] == c->n_rows && (int)dd[1] == c->n_answers;
                H5Sclose(s);
                H5Dclose(d);
            }
            if (!ok) {
                mc_fail(err, "%s: %s is absent or not (%lld, %d) as morphology.answer_columns says", path,
                        cols[i], (long long)c->n_rows, c->n_answers);
                rpt_cat_close(c);
                return -1;
            }
        }
    }
    if (rpt_cat_has(c, "clumps/count") && rpt_cat_has(c, "clumps/box")) {
        hid_t g = H5Gopen2(f, "clumps", H5P_DEFAULT);
        c->classes = attr_strs(g, "class_names", &c->n_classes);
        H5Gclose(g);
        hid_t d = H5Dopen2(f, "clumps/score", H5P_DEFAULT);
        hid_t s = H5Dget_space(d);
        hsize_t dd[2] = {0, 0};
        H5Sget_simple_extent_dims(s, dd, NULL);
        H5Sclose(s);
        H5Dclose(d);
        c->clump_k = (int)dd[1];
        c->has_clumps = c->clump_k > 0;
    }
    if (io_h5_attr_str(f, "preprocessing", buf, sizeof buf))
        snprintf(c->recipe_err, sizeof c->recipe_err, "%s: has no preprocessing attribute (the recipe)",
                 path);
    else if (pp_recipe_parse(buf, &c->recipe, c->recipe_err))
        ;
    else
        c->recipe_ok = 1;
    *out = c;
    return 0;
}

void rpt_cat_close(rpt_cat *c)
{
    if (!c) return;
    if (c->file >= 0) H5Fclose(c->file);
    strs_free(c->answers, c->n_answers);
    strs_free(c->classes, c->n_classes);
    free(c->path);
    free(c);
}

int64_t rpt_cat_rows(const rpt_cat *c)
{
    return c->n_rows;
}

int rpt_cat_n_answers(const rpt_cat *c)
{
    return c->n_answers;
}

const char *rpt_cat_answer(const rpt_cat *c, int a)
{
    MC_ASSERT(a >= 0 && a < c->n_answers);
    return c->answers[a];
}

int rpt_cat_has_clumps(const rpt_cat *c)
{
    return c->has_clumps;
}

int rpt_cat_attr(const rpt_cat *c, const char *name, char *buf, size_t len)
{
    return io_h5_attr_str(c->file, name, buf, len);
}

int rpt_cat_has(rpt_cat *c, const char *dataset)
{
    /* H5Lexists needs each parent to exist: check the group first */
    char g[256];
    const char *slash = strchr(dataset, '/');
    if (slash) {
        snprintf(g, sizeof g, "%.*s", (int)(slash - dataset), dataset);
        if (H5Lexists(c->file, g, H5P_DEFAULT) <= 0) return 0;
    }
    return H5Lexists(c->file, dataset, H5P_DEFAULT) > 0;
}

size_t rpt_cat_str_width(rpt_cat *c, const char *dataset)
{
    if (!rpt_cat_has(c, dataset)) return 0;
    hid_t ds = H5Dopen2(c->file, dataset, H5P_DEFAULT);
    hid_t ft = H5Dget_type(ds);
    size_t w = 0;
    if (H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) <= 0) w = H5Tget_size(ft) + 1;
    H5Tclose(ft);
    H5Dclose(ds);
    return w;
}

int rpt_cat_read(rpt_cat *c, const char *dataset, hid_t mem_type, int64_t row0, int64_t n, void *buf,
                 char *err)
{
    MC_ASSERT(row0 >= 0 && n >= 0 && row0 + n <= c->n_rows);
    if (n == 0) return 0;
    hid_t ds = H5Dopen2(c->file, dataset, H5P_DEFAULT);
    if (ds < 0) return mc_fail(err, "%s: has no %s dataset", c->path, dataset);
    hid_t fs = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(fs);
    hsize_t dims[4] = {0}, start[4] = {0}, count[4] = {0};
    MC_ASSERT(nd >= 1 && nd <= 4);
    H5Sget_simple_extent_dims(fs, dims, NULL);
    int rc = 0;
    if ((int64_t)dims[0] != c->n_rows) {
        rc = mc_fail(err, "%s: %s has %llu rows, the catalogue %lld", c->path, dataset,
                     (unsigned long long)dims[0], (long long)c->n_rows);
    } else {
        for (int i = 0; i < nd; i++) count[i] = dims[i];
        start[0] = (hsize_t)row0;
        count[0] = (hsize_t)n;
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
        hid_t ms = H5Screate_simple(nd, count, NULL);
        if (H5Dread(ds, mem_type, ms, fs, H5P_DEFAULT, buf) < 0)
            rc = mc_fail(err, "%s: cannot read rows %lld..%lld of %s", c->path, (long long)row0,
                         (long long)(row0 + n - 1), dataset);
        H5Sclose(ms);
    }
    H5Sclose(fs);
    H5Dclose(ds);
    return rc;
}

int rpt_cat_read_strs(rpt_cat *c, const char *dataset, size_t width, int64_t row0, int64_t n, char *buf,
                      char *err)
{
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, width);
    H5Tset_strpad(mt, H5T_STR_NULLTERM);
    /* HDF5 does not convert between ASCII and UTF-8: take the stored character set */
    hid_t ds = H5Dopen2(c->file, dataset, H5P_DEFAULT);
    if (ds >= 0) {
        hid_t ft = H5Dget_type(ds);
        H5Tset_cset(mt, H5Tget_cset(ft));
        H5Tclose(ft);
        H5Dclose(ds);
    }
    int rc = rpt_cat_read(c, dataset, mt, row0, n, buf, err);
    H5Tclose(mt);
    return rc;
}

typedef struct want {
    const char *id;
    int index;
} want;

static int want_cmp(const void *a, const void *b)
{
    const want *x = a, *y = b;
    int r = strcmp(x->id, y->id);
    return r ? r : x->index - y->index;
}

int rpt_cat_find_ids(rpt_cat *c, const char *const *ids, int n, int64_t *rows, char *err)
{
    want *w = mc_malloc(sizeof *w * (size_t)(n > 0 ? n : 1));
    for (int i = 0; i < n; i++) {
        w[i] = (want){ids[i], i};
        rows[i] = -1;
    }
    qsort(w, (size_t)n, sizeof *w, want_cmp);
    size_t width = rpt_cat_str_width(c, "galaxies/id_str");
    char *buf = mc_malloc(width * RPT_CHUNK_ROWS);
    int rc = 0;
    for (int64_t r0 = 0; r0 < c->n_rows && !rc; r0 += RPT_CHUNK_ROWS) {
        int64_t m = c->n_rows - r0 < RPT_CHUNK_ROWS ? c->n_rows - r0 : RPT_CHUNK_ROWS;
        if ((rc = rpt_cat_read_strs(c, "galaxies/id_str", width, r0, m, buf, err))) break;
        for (int64_t i = 0; i < m; i++) {
            const char *id = buf + (size_t)i * width;
            /* the first of the requests equal to id, then every equal one (an id may be asked twice) */
            int lo = 0, hi = n;
            while (lo < hi) {
                int mid = (lo + hi) / 2;
                if (strcmp(w[mid].id, id) < 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            for (int k = lo; k < n && !strcmp(w[k].id, id); k++)
                if (rows[w[k].index] < 0) rows[w[k].index] = r0 + i;
        }
    }
    for (int i = 0; i < n && !rc; i++)
        if (rows[i] < 0) rc = mc_fail(err, "%s: no galaxy with id_str '%s'", c->path, ids[i]);
    free(buf);
    free(w);
    return rc;
}
