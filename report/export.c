/* report/export.c: `morphcat export`: the catalogue as a FITS binary table (CFITSIO) or CSV, one row per
 * galaxy with Zoobot's column names, and the clump table (one row per clump) as a second FITS extension or a
 * second CSV. Streamed in chunks of rows: memory is a few chunks whatever the catalogue's size. FITS rows are
 * assembled as the binary table's big-endian records and handed to CFITSIO a chunk at a time
 * (fits_write_tblbytes), which is what keeps 10 million rows of 500 columns at disk speed; CFITSIO writes
 * every header. Not here: parquet (no Debian library), the embedding (a column per dimension is not a table
 * anyone opens in TOPCAT; h5py reads it from the catalogue). */
#include <errno.h>
#include <fitsio.h>
#include <math.h>

#include "report/report_internal.h"

/* Zoobot's suffixes (load_predictions.py; `_dirichlet` from the Euclid Q1 release) and the catalogue's
 * datasets behind them. */
static const struct {
    const char *suffix, *dataset;
} views[] = {{"_fraction", "morphology/fraction"},
             {"_90pc-lower", "morphology/fraction_90pc_lower"},
             {"_90pc-upper", "morphology/fraction_90pc_upper"},
             {"_proportion-asked", "morphology/proportion_asked"},
             {"_dirichlet", "morphology/concentration"}};
#define NVIEWS 5

/* One chunk of the galaxies table, read from the catalogue. */
typedef struct chunk {
    size_t w_id, w_msg, w_rel;
    char *id, *msg, *rel;
    double *ra, *dec;
    uint8_t *status;
    float *m[NVIEWS]; /* rows x n_answers each */
} chunk;

static void chunk_init(chunk *k, rpt_cat *c)
{
    memset(k, 0, sizeof *k);
    k->w_id = rpt_cat_str_width(c, "galaxies/id_str");
    k->w_msg = rpt_cat_str_width(c, "galaxies/message");
    k->w_rel = rpt_cat_str_width(c, "galaxies/release");
    size_t n = RPT_CHUNK_ROWS;
    k->id = mc_malloc(n * k->w_id);
    k->msg = mc_malloc(n * k->w_msg);
    k->rel = mc_calloc(n, k->w_rel ? k->w_rel : 1);
    k->ra = mc_malloc(n * sizeof(double));
    k->dec = mc_malloc(n * sizeof(double));
    k->status = mc_malloc(n);
    for (int v = 0; v < NVIEWS; v++)
        k->m[v] = c->n_answers ? mc_malloc(n * (size_t)c->n_answers * sizeof(float)) : NULL;
}

static void chunk_free(chunk *k)
{
    free(k->id), free(k->msg), free(k->rel), free(k->ra), free(k->dec), free(k->status);
    for (int v = 0; v < NVIEWS; v++) free(k->m[v]);
}

static int chunk_read(chunk *k, rpt_cat *c, int64_t r0, int64_t m, int friendly, char *err)
{
    if (rpt_cat_read_strs(c, "galaxies/id_str", k->w_id, r0, m, k->id, err) ||
        rpt_cat_read_strs(c, "galaxies/message", k->w_msg, r0, m, k->msg, err) ||
        (k->w_rel && rpt_cat_read_strs(c, "galaxies/release", k->w_rel, r0, m, k->rel, err)) ||
        rpt_cat_read(c, "galaxies/ra", H5T_NATIVE_DOUBLE, r0, m, k->ra, err) ||
        rpt_cat_read(c, "galaxies/dec", H5T_NATIVE_DOUBLE, r0, m, k->dec, err) ||
        rpt_cat_read(c, "galaxies/status", H5T_NATIVE_UINT8, r0, m, k->status, err))
        return -1;
    for (int v = 0; v < NVIEWS && c->n_answers; v++)
        if (rpt_cat_read(c, views[v].dataset, H5T_NATIVE_FLOAT, r0, m, k->m[v], err)) return -1;
    if (friendly &&
        c->n_answers) /* zoobot load_predictions: np.where(proportion_asked >= 0.5, fraction, nan) */
        for (int64_t i = 0; i < m * c->n_answers; i++)
            if (!(k->m[3][i] >= 0.5f)) k->m[0][i] = NAN;
    return 0;
}

/* ---- clumps, read a chunk at a time ------------------------------------------------------------------ */
typedef struct clump_chunk {
    int K;
    size_t w_id;
    char *id;
    uint16_t *count;
    uint8_t *label;
    float *score, *box;
    double *ra, *dec;
} clump_chunk;

static void clump_chunk_init(clump_chunk *k, rpt_cat *c)
{
    size_t n = RPT_CHUNK_ROWS, K = (size_t)c->clump_k;
    k->K = c->clump_k;
    k->w_id = rpt_cat_str_width(c, "galaxies/id_str");
    k->id = mc_malloc(n * k->w_id);
    k->count = mc_malloc(n * sizeof(uint16_t));
    k->label = mc_malloc(n * K);
    k->score = mc_malloc(n * K * sizeof(float));
    k->box = mc_malloc(n * K * 4 * sizeof(float));
    k->ra = mc_malloc(n * K * sizeof(double));
    k->dec = mc_malloc(n * K * sizeof(double));
}

static void clump_chunk_free(clump_chunk *k)
{
    free(k->id), free(k->count), free(k->label), free(k->score), free(k->box), free(k->ra), free(k->dec);
}

static int clump_chunk_read(clump_chunk *k, rpt_cat *c, int64_t r0, int64_t m, char *err)
{
    if (rpt_cat_read_strs(c, "galaxies/id_str", k->w_id, r0, m, k->id, err) ||
        rpt_cat_read(c, "clumps/count", H5T_NATIVE_UINT16, r0, m, k->count, err) ||
        rpt_cat_read(c, "clumps/label", H5T_NATIVE_UINT8, r0, m, k->label, err) ||
        rpt_cat_read(c, "clumps/score", H5T_NATIVE_FLOAT, r0, m, k->score, err) ||
        rpt_cat_read(c, "clumps/box", H5T_NATIVE_FLOAT, r0, m, k->box, err) ||
        rpt_cat_read(c, "clumps/ra", H5T_NATIVE_DOUBLE, r0, m, k->ra, err) ||
        rpt_cat_read(c, "clumps/dec", H5T_NATIVE_DOUBLE, r0, m, k->dec, err))
        return -1;
    for (int64_t i = 0; i < m; i++)
        if (k->count[i] > k->K) k->count[i] = (uint16_t)k->K; /* a damaged count cannot read past the row */
    return 0;
}

static const char *class_name(const rpt_cat *c, int label)
{
    return label >= 0 && label < c->n_classes ? c->classes[label] : "unknown";
}

/* ---- FITS ------------------------------------------------------------------------------------------- */
static void be32(unsigned char *p, const void *v)
{
    uint32_t u;
    memcpy(&u, v, 4);
    p[0] = (unsigned char)(u >> 24), p[1] = (unsigned char)(u >> 16), p[2] = (unsigned char)(u >> 8);
    p[3] = (unsigned char)u;
}

static void be64(unsigned char *p, const void *v)
{
    uint64_t u;
    memcpy(&u, v, 8);
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(u >> (56 - 8 * i));
}

static void put_str(unsigned char *p, const char *s, size_t w)
{
    size_t n = strnlen(s, w);
    memcpy(p, s, n);
    memset(p + n, 0, w - n);
}

typedef struct fcols {
    int n;
    char **ttype, **tform, **tunit;
} fcols;

static void fcols_add(fcols *f, const char *name, const char *form, const char *unit)
{
    f->ttype = mc_realloc(f->ttype, sizeof(char *) * (size_t)(f->n + 1));
    f->tform = mc_realloc(f->tform, sizeof(char *) * (size_t)(f->n + 1));
    f->tunit = mc_realloc(f->tunit, sizeof(char *) * (size_t)(f->n + 1));
    f->ttype[f->n] = mc_strdup(name);
    f->tform[f->n] = mc_strdup(form);
    f->tunit[f->n] = mc_strdup(unit);
    f->n++;
}

static void fcols_free(fcols *f)
{
    for (int i = 0; i < f->n; i++) free(f->ttype[i]), free(f->tform[i]), free(f->tunit[i]);
    free(f->ttype), free(f->tform), free(f->tunit);
}

static int fits_fail(char *err, const char *path, const char *what, int status)
{
    char txt[FLEN_STATUS];
    fits_get_errstatus(status, txt);
    return mc_fail(err, "%s: %s: CFITSIO error %d (%s)", path, what, status, txt);
}

/* Provenance keywords on the primary HDU (long strings by the CONTINUE convention). */
static void fits_provenance(fitsfile *f, rpt_cat *c, int friendly, int *status)
{
    static const struct {
        const char *key, *attr;
    } keys[] = {{"MC_MODEL", "model_arch"}, {"MC_MSHA", "model_sha256"},   {"MC_RECIP", "preprocessing"},
                {"MC_RELEA", "release"},    {"MC_SCHEM", "schema"},        {"MC_CVERS", "morphcat_version"},
                {"MC_PREC", "precision"},   {"MC_DSHA", "detector_sha256"}};
    char buf[4096], origin[64];
    snprintf(origin, sizeof origin, "morphcat %s export", MC_VERSION);
    fits_write_key_longwarn(f, status);
    fits_write_key_str(f, "ORIGIN", origin, "software that wrote this file", status);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (rpt_cat_attr(c, keys[i].attr, buf, sizeof buf)) {
            if (strcmp(keys[i].attr, "precision")) continue;
            snprintf(buf, sizeof buf, "fp32"); /* catalogues made before the attribute existed ran float32 */
        }
        fits_write_key_longstr(f, keys[i].key, buf, keys[i].attr, status);
    }
    int fr = friendly;
    fits_write_key_log(f, "FRIENDLY", fr, "fractions blank where proportion-asked < 0.5", status);
}

static int export_fits(rpt_cat *c, const char *tmp, int friendly, rpt_export_stats *st, char *err)
{
    int status = 0;
    fitsfile *f = NULL;
    char name[1024];
    snprintf(name, sizeof name, "!%s", tmp);
    if (fits_create_file(&f, name, &status)) return fits_fail(err, tmp, "cannot create the file", status);
    fits_create_img(f, BYTE_IMG, 0, NULL, &status);
    fits_provenance(f, c, friendly, &status);

    chunk k;
    chunk_init(&k, c);
    fcols fc = {0};
    char form[32];
    snprintf(form, sizeof form, "%zuA", k.w_id - 1);
    fcols_add(&fc, "id_str", form, "");
    fcols_add(&fc, "ra", "1D", "deg");
    fcols_add(&fc, "dec", "1D", "deg");
    fcols_add(&fc, "status", "1B", "");
    snprintf(form, sizeof form, "%zuA", k.w_msg - 1);
    fcols_add(&fc, "message", form, "");
    snprintf(form, sizeof form, "%zuA", k.w_rel ? k.w_rel - 1 : 1);
    fcols_add(&fc, "release", form, "");
    for (int v = 0; v < NVIEWS; v++)
        for (int a = 0; a < c->n_answers; a++) {
            snprintf(name, sizeof name, "%s%s", c->answers[a], views[v].suffix);
            fcols_add(&fc, name, "1E", "");
        }
    int rc = 0;
    if (fc.n > 999) {
        rc = mc_fail(err, "%s: %d columns (%d answers x 5 + 6): more than FITS's 999; export csv instead",
                     c->path, fc.n, c->n_answers);
        goto out;
    }
    fits_create_tbl(f, BINARY_TBL, (LONGLONG)c->n_rows, fc.n, fc.ttype, fc.tform, fc.tunit, "GALAXIES",
                    &status);
    fits_write_key_str(f, "TTYPE4", "status",
                       "0 pending 1 ok 2 missing_file 3 corrupt_file 4 bad_shape "
                       "5 bad_pixels 6 bad_manifest_row",
                       &status);
    if (status) {
        rc = fits_fail(err, tmp, "cannot create the GALAXIES table", status);
        goto out;
    }
    size_t w_rel = k.w_rel ? k.w_rel - 1 : 1;
    size_t rowlen = (k.w_id - 1) + 8 + 8 + 1 + (k.w_msg - 1) + w_rel + (size_t)NVIEWS * c->n_answers * 4;
    unsigned char *rec = mc_malloc(rowlen * RPT_CHUNK_ROWS);
    int A = c->n_answers;
    for (int64_t r0 = 0; r0 < c->n_rows && !rc; r0 += RPT_CHUNK_ROWS) {
        int64_t m = c->n_rows - r0 < RPT_CHUNK_ROWS ? c->n_rows - r0 : RPT_CHUNK_ROWS;
        if ((rc = chunk_read(&k, c, r0, m, friendly, err))) break;
        for (int64_t i = 0; i < m; i++) {
            unsigned char *p = rec + (size_t)i * rowlen;
            put_str(p, k.id + (size_t)i * k.w_id, k.w_id - 1), p += k.w_id - 1;
            be64(p, &k.ra[i]), p += 8;
            be64(p, &k.dec[i]), p += 8;
            *p++ = k.status[i];
            put_str(p, k.msg + (size_t)i * k.w_msg, k.w_msg - 1), p += k.w_msg - 1;
            put_str(p, k.w_rel ? k.rel + (size_t)i * k.w_rel : "", w_rel), p += w_rel;
            for (int v = 0; v < NVIEWS; v++)
                for (int a = 0; a < A; a++) be32(p, &k.m[v][(size_t)i * A + a]), p += 4;
        }
        fits_write_tblbytes(f, (LONGLONG)r0 + 1, 1, (LONGLONG)(rowlen * (size_t)m), rec, &status);
        if (status) rc = fits_fail(err, tmp, "cannot write the GALAXIES rows", status);
    }
    free(rec);
    st->rows = c->n_rows;
    st->columns = fc.n;
    if (rc || !c->has_clumps) goto out;

    /* CLUMPS: count them first (2 bytes a row), so the table is created at its final size */
    clump_chunk q;
    clump_chunk_init(&q, c);
    int64_t total = 0;
    for (int64_t r0 = 0; r0 < c->n_rows && !rc; r0 += RPT_CHUNK_ROWS) {
        int64_t m = c->n_rows - r0 < RPT_CHUNK_ROWS ? c->n_rows - r0 : RPT_CHUNK_ROWS;
        rc = rpt_cat_read(c, "clumps/count", H5T_NATIVE_UINT16, r0, m, q.count, err);
        for (int64_t i = 0; i < m && !rc; i++) total += q.count[i] < q.K ? q.count[i] : q.K;
    }
    fcols cc = {0};
    int w_cls = 1;
    for (int i = 0; i < c->n_classes; i++)
        if ((int)strlen(c->classes[i]) > w_cls) w_cls = (int)strlen(c->classes[i]);
    snprintf(form, sizeof form, "%zuA", q.w_id - 1);
    fcols_add(&cc, "id_str", form, "");
    fcols_add(&cc, "row", "1K", "");
    fcols_add(&cc, "slot", "1I", "");
    snprintf(form, sizeof form, "%dA", w_cls);
    fcols_add(&cc, "class", form, "");
    fcols_add(&cc, "label", "1B", "");
    fcols_add(&cc, "score", "1E", "");
    fcols_add(&cc, "x1", "1E", "pix");
    fcols_add(&cc, "y1", "1E", "pix");
    fcols_add(&cc, "x2", "1E", "pix");
    fcols_add(&cc, "y2", "1E", "pix");
    fcols_add(&cc, "ra", "1D", "deg");
    fcols_add(&cc, "dec", "1D", "deg");
    if (!rc) {
        fits_create_tbl(f, BINARY_TBL, (LONGLONG)total, cc.n, cc.ttype, cc.tform, cc.tunit, "CLUMPS",
                        &status);
        fits_write_comment(
            f,
            "one row per clump: row is the galaxy's 0-based row in GALAXIES; boxes in pixels of "
            "the cutout as stored, 0 at the first pixel's edge",
            &status);
        if (status) rc = fits_fail(err, tmp, "cannot create the CLUMPS table", status);
    }
    size_t clen = (q.w_id - 1) + 8 + 2 + (size_t)w_cls + 1 + 4 * 5 + 16;
    unsigned char *crec = mc_malloc(clen * RPT_CHUNK_ROWS * (size_t)q.K);
    int64_t out_row = 0;
    for (int64_t r0 = 0; r0 < c->n_rows && !rc; r0 += RPT_CHUNK_ROWS) {
        int64_t m = c->n_rows - r0 < RPT_CHUNK_ROWS ? c->n_rows - r0 : RPT_CHUNK_ROWS;
        if ((rc = clump_chunk_read(&q, c, r0, m, err))) break;
        int64_t nrec = 0;
        for (int64_t i = 0; i < m; i++)
            for (int s = 0; s < q.count[i]; s++) {
                size_t j = (size_t)i * q.K + s;
                unsigned char *p = crec + (size_t)nrec++ * clen;
                int64_t row = r0 + i;
                int16_t slot = (int16_t)s;
                put_str(p, q.id + (size_t)i * q.w_id, q.w_id - 1), p += q.w_id - 1;
                be64(p, &row), p += 8;
                p[0] = (unsigned char)((uint16_t)slot >> 8), p[1] = (unsigned char)slot, p += 2;
                put_str(p, class_name(c, q.label[j]), (size_t)w_cls), p += w_cls;
                *p++ = q.label[j];
                be32(p, &q.score[j]), p += 4;
                for (int b = 0; b < 4; b++) be32(p, &q.box[j * 4 + b]), p += 4;
                be64(p, &q.ra[j]), p += 8;
                be64(p, &q.dec[j]), p += 8;
            }
        if (nrec)
            fits_write_tblbytes(f, (LONGLONG)out_row + 1, 1, (LONGLONG)(clen * (size_t)nrec), crec, &status);
        out_row += nrec;
        if (status) rc = fits_fail(err, tmp, "cannot write the CLUMPS rows", status);
    }
    MC_ASSERT(rc || out_row == total);
    st->clumps = out_row;
    free(crec);
    fcols_free(&cc);
    clump_chunk_free(&q);
out:
    fcols_free(&fc);
    chunk_free(&k);
    int cst = 0;
    fits_close_file(f, &cst);
    if (!rc && cst) rc = fits_fail(err, tmp, "cannot finish the file", cst);
    return rc;
}

/* ---- CSV -------------------------------------------------------------------------------------------- */
static void csv_str(FILE *fp, const char *s)
{
    fputc('"', fp);
    for (; *s; s++) {
        if (*s == '"') fputc('"', fp);
        fputc(*s, fp);
    }
    fputc('"', fp);
}

int rpt_csv_float(char *buf, float v)
{
    if (isnan(v)) return buf[0] = 0, 0;
    if (isinf(v)) return sprintf(buf, "%s", v > 0 ? "inf" : "-inf");
    char *p = buf;
    double x = v;
    if (signbit(x)) *p++ = '-', x = -x;
    if (x == 0) {
        *p++ = '0';
        *p = 0;
        return (int)(p - buf);
    }
    /* 9 significant digits as an integer: x / 10^(e-8) in double (relative error ~1e-16) rounded; an error of
     * one in the last digit would still be well within half a float32 ulp (>= 3e-8 relative), so the value
     * comes back */
    int e = (int)floor(log10(x));
    double scaled = x * pow(10.0, 8 - e);
    uint64_t m = (uint64_t)llround(scaled);
    if (m >= 1000000000u) m = (m + 5) / 10, e++;
    if (m < 100000000u) m *= 10, e--;
    char dig[10];
    for (int i = 8; i >= 0; i--) dig[i] = (char)('0' + m % 10), m /= 10;
    int nd = 9;
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    if (e >= -5 && e < 0) { /* 0.000ddd */
        *p++ = '0', *p++ = '.';
        for (int i = 0; i < -e - 1; i++) *p++ = '0';
        for (int i = 0; i < nd; i++) *p++ = dig[i];
    } else if (e >= 0 && e < 9) { /* ddd.ddd */
        for (int i = 0; i <= e; i++) *p++ = i < nd ? dig[i] : '0';
        if (nd > e + 1) {
            *p++ = '.';
            for (int i = e + 1; i < nd; i++) *p++ = dig[i];
        }
    } else { /* d.ddde+XX */
        *p++ = dig[0];
        if (nd > 1) {
            *p++ = '.';
            for (int i = 1; i < nd; i++) *p++ = dig[i];
        }
        p += sprintf(p, "e%+03d", e);
    }
    *p = 0;
    return (int)(p - buf);
}

static void csv_f32(FILE *fp, float v)
{
    char b[32];
    b[0] = ',';
    int n = rpt_csv_float(b + 1, v);
    fwrite(b, 1, (size_t)n + 1, fp);
}

static void csv_f64(FILE *fp, double v)
{
    fputc(',', fp);
    if (isfinite(v)) { /* the shortest of 15, 16, 17 digits that gives the double back */
        char b[40];
        for (int d = 15; d <= 17; d++) {
            snprintf(b, sizeof b, "%.*g", d, v);
            if (strtod(b, NULL) == v) break;
        }
        fputs(b, fp);
    } else if (!isnan(v))
        fputs(v > 0 ? "inf" : "-inf", fp);
}

static FILE *csv_open(const char *path, char *err)
{
    FILE *fp = fopen(path, "w");
    if (!fp) {
        mc_fail(err, "%s: cannot be written: %s", path, strerror(errno));
        return NULL;
    }
    setvbuf(fp, NULL, _IOFBF, 1 << 20);
    return fp;
}

static int csv_close(FILE *fp, const char *path, char *err)
{
    int bad = ferror(fp);
    if (fclose(fp) || bad) return mc_fail(err, "%s: write failed (disk full?)", path);
    return 0;
}

static int export_csv(rpt_cat *c, const char *tmp, const char *clump_tmp, int friendly, rpt_export_stats *st,
                      char *err)
{
    FILE *fp = csv_open(tmp, err);
    if (!fp) return -1;
    chunk k;
    chunk_init(&k, c);
    int A = c->n_answers;
    fputs("id_str,ra,dec,status,message,release", fp);
    for (int v = 0; v < NVIEWS; v++)
        for (int a = 0; a < A; a++) fprintf(fp, ",%s%s", c->answers[a], views[v].suffix);
    fputc('\n', fp);
    int rc = 0;
    for (int64_t r0 = 0; r0 < c->n_rows && !rc; r0 += RPT_CHUNK_ROWS) {
        int64_t m = c->n_rows - r0 < RPT_CHUNK_ROWS ? c->n_rows - r0 : RPT_CHUNK_ROWS;
        if ((rc = chunk_read(&k, c, r0, m, friendly, err))) break;
        for (int64_t i = 0; i < m; i++) {
            csv_str(fp, k.id + (size_t)i * k.w_id);
            csv_f64(fp, k.ra[i]);
            csv_f64(fp, k.dec[i]);
            fprintf(fp, ",%u,", k.status[i]);
            csv_str(fp, k.msg + (size_t)i * k.w_msg);
            fputc(',', fp);
            csv_str(fp, k.w_rel ? k.rel + (size_t)i * k.w_rel : "");
            for (int v = 0; v < NVIEWS; v++)
                for (int a = 0; a < A; a++) csv_f32(fp, k.m[v][(size_t)i * A + a]);
            fputc('\n', fp);
        }
    }
    chunk_free(&k);
    char dummy[MC_ERR_LEN];
    if (csv_close(fp, tmp, rc ? dummy : err) && !rc) rc = -1;
    st->rows = c->n_rows;
    st->columns = 6 + (int64_t)NVIEWS * A;
    if (rc || !c->has_clumps) return rc;

    if (!(fp = csv_open(clump_tmp, err))) return -1;
    fputs("id_str,row,slot,class,label,score,x1,y1,x2,y2,ra,dec\n", fp);
    clump_chunk q;
    clump_chunk_init(&q, c);
    for (int64_t r0 = 0; r0 < c->n_rows && !rc; r0 += RPT_CHUNK_ROWS) {
        int64_t m = c->n_rows - r0 < RPT_CHUNK_ROWS ? c->n_rows - r0 : RPT_CHUNK_ROWS;
        if ((rc = clump_chunk_read(&q, c, r0, m, err))) break;
        for (int64_t i = 0; i < m; i++)
            for (int s = 0; s < q.count[i]; s++) {
                size_t j = (size_t)i * q.K + s;
                csv_str(fp, q.id + (size_t)i * q.w_id);
                fprintf(fp, ",%lld,%d,%s,%u", (long long)(r0 + i), s, class_name(c, q.label[j]), q.label[j]);
                csv_f32(fp, q.score[j]);
                for (int b = 0; b < 4; b++) csv_f32(fp, q.box[j * 4 + b]);
                csv_f64(fp, q.ra[j]);
                csv_f64(fp, q.dec[j]);
                fputc('\n', fp);
                st->clumps++;
            }
    }
    clump_chunk_free(&q);
    if (csv_close(fp, clump_tmp, rc ? dummy : err) && !rc) rc = -1;
    return rc;
}

/* FILE with `_clumps` before its extension: out.csv -> out_clumps.csv */
static void clumps_name(const char *output, char *buf, size_t len)
{
    const char *slash = strrchr(output, '/'), *dot = strrchr(output, '.');
    if (dot && (!slash || dot > slash))
        snprintf(buf, len, "%.*s_clumps%s", (int)(dot - output), output, dot);
    else
        snprintf(buf, len, "%s_clumps", output);
}

int rpt_export(const char *catalogue, rpt_export_format fmt, const char *output, int friendly,
               rpt_export_stats *st, char *err)
{
    memset(st, 0, sizeof *st);
    rpt_cat *c;
    if (rpt_cat_open(catalogue, &c, err)) return -1;
    char tmp[4200], ctmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", output);
    int rc;
    if (fmt == RPT_EXPORT_FITS) {
        rc = export_fits(c, tmp, friendly, st, err);
    } else {
        if (c->has_clumps) clumps_name(output, st->clumps_path, sizeof st->clumps_path);
        snprintf(ctmp, sizeof ctmp, "%s.tmp", st->clumps_path);
        rc = export_csv(c, tmp, ctmp, friendly, st, err);
        if (!rc && c->has_clumps && rename(ctmp, st->clumps_path))
            rc = mc_fail(err, "%s: cannot be renamed into place: %s", st->clumps_path, strerror(errno));
        if (rc && c->has_clumps) remove(ctmp);
    }
    if (!rc && rename(tmp, output))
        rc = mc_fail(err, "%s: cannot be renamed into place: %s", output, strerror(errno));
    if (rc) remove(tmp);
    rpt_cat_close(c);
    return rc;
}
