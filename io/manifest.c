/* io/manifest.c: CSV manifests (libcsv, streamed in 1 MiB chunks) and folder listings, with every string in
 * one arena so a million rows cost two allocations that grow geometrically. It checks the manifest's own
 * rules only; whether the files exist is the cutout reader's business. */
#include "io/manifest.h"

#include <csv.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------- string arena */

/* Strings are appended to one growing buffer and referenced by offset while it may still move; offsets
 * become pointers once, at the end (arena_fix). Offset 0 is reserved for NULL. */
typedef struct {
    char *buf;
    size_t len, cap;
} arena;

static size_t arena_put(arena *a, const char *s, size_t n)
{
    if (a->len + n + 1 > a->cap) {
        size_t cap = a->cap ? a->cap : 1 << 16;
        while (a->len + n + 1 > cap) cap *= 2;
        a->buf = (char *)mc_realloc(a->buf, cap);
        a->cap = cap;
    }
    size_t off = a->len;
    memcpy(a->buf + off, s, n);
    a->buf[off + n] = 0;
    a->len += n + 1;
    return off;
}

/* Offsets travel in the row's pointer fields until the arena stops moving. */
static char *off_ptr(size_t off)
{
    return (char *)(uintptr_t)off;
}

static char *arena_fix(const arena *a, char *p)
{
    size_t off = (size_t)(uintptr_t)p;
    return off ? a->buf + off : NULL;
}

/* ---------------------------------------------------------------------------------- shared helpers */

static void sha_hex(EVP_MD_CTX *md, char *hex)
{
    unsigned char dig[32];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(md, dig, &dl);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", dig[i]);
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* One error line when two rows share an id_str; where[] names them (CSV lines or file names). */
static int check_duplicates(io_manifest *m, const int64_t *line, char *const *file, const char *path,
                            char *err)
{
    size_t cap = 16;
    while (cap < 2 * (size_t)m->n + 16) cap *= 2;
    int64_t *tab = (int64_t *)mc_calloc(cap, sizeof(int64_t));
    int rc = 0;
    for (int64_t i = 0; i < m->n && !rc; i++) {
        const char *id = m->rows[i].id_str;
        if (!id || !id[0]) continue;
        size_t h = (size_t)hash_str(id) & (cap - 1);
        for (;; h = (h + 1) & (cap - 1)) {
            if (!tab[h]) {
                tab[h] = i + 1;
                break;
            }
            int64_t j = tab[h] - 1;
            if (!strcmp(m->rows[j].id_str, id)) {
                if (line)
                    rc = mc_fail(err, "%s: duplicate id_str '%s' on lines %lld and %lld", path, id,
                                 (long long)line[j], (long long)line[i]);
                else
                    rc = mc_fail(err, "%s: duplicate id_str '%s' from files %s and %s", path, id, file[j],
                                 file[i]);
                break;
            }
        }
    }
    free(tab);
    return rc;
}

static void finish_widths(io_manifest *m)
{
    m->max_id_len = m->max_path_len = 0;
    for (int64_t i = 0; i < m->n; i++) {
        int li = m->rows[i].id_str ? (int)strlen(m->rows[i].id_str) : 0;
        int lp = m->rows[i].path ? (int)strlen(m->rows[i].path) : 0;
        if (li > m->max_id_len) m->max_id_len = li;
        if (lp > m->max_path_len) m->max_path_len = lp;
    }
}

/* ---------------------------------------------------------------------------------- CSV */

enum { COL_ID, COL_PATH, COL_RA, COL_DEC, COL_HDU, COL_BAD, NCOL };

typedef struct {
    const char *path;
    const char *dir; /* manifest's folder with a trailing '/', or "" */
    size_t dirlen;
    arena a;
    io_manifest_row *rows;
    int64_t *line;
    int64_t n, cap;
    int64_t cur_line, rec_line; /* line being fed; line where the current record began */
    int in_rec;
    int header_done, nheader;
    int col[NCOL]; /* field index of each column, -1 if absent */
    char **hnames; /* header names (only while reading the header) */
    int nh_cap;
    /* current record */
    int nfield;
    size_t val[NCOL]; /* arena offsets of the interesting fields (0 = absent) */
    size_t val_len[NCOL];
    char *hdr_err; /* whole-manifest error while reading the header */
    /* streaming (io_manifest_scan): each row goes to fn and its strings are dropped from the arena */
    int streaming, stop;
    io_manifest_row one;  /* the row being built */
    size_t arena_base;    /* arena length before the first row */
    io_manifest_row_fn fn;
    void *ctx;
    struct dup_runs *dup; /* the bounded-memory duplicate check, or NULL */
    int max_id_len, max_path_len;
} csv_state;

static void dup_add(struct dup_runs *d, const char *id, int64_t row);

/* The first offence of an id against UTF-8 (ids become HDF5 strings that every reader decodes as UTF-8), as
 * text into why; 0 when the id is fine. Control characters are allowed: a quoted CSV field may hold them. */
static int id_offence(const char *id, size_t n, char *why, size_t len)
{
    const unsigned char *u = (const unsigned char *)id;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        int k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
        int ok = k >= 0 && i + (size_t)k < n + (k == 0);
        for (int j = 1; ok && j <= k; j++) ok = (u[i + (size_t)j] & 0xc0) == 0x80;
        if (ok && k == 1) ok = c >= 0xc2;                                 /* overlong */
        if (ok && k == 2) ok = !(c == 0xe0 && u[i + 1] < 0xa0) && !(c == 0xed && u[i + 1] >= 0xa0); /* overlong, surrogates */
        if (ok && k == 3) ok = c <= 0xf4 && !(c == 0xf0 && u[i + 1] < 0x90) && !(c == 0xf4 && u[i + 1] >= 0x90);
        if (!ok) {
            snprintf(why, len, "id_str is not valid UTF-8 (byte 0x%02x at offset %zu)", c, i);
            return 1;
        }
        i += (size_t)k + 1;
    }
    return 0;
}

static void cb_field(void *s, size_t len, void *data)
{
    csv_state *st = (csv_state *)data;
    if (!st->in_rec) {
        st->in_rec = 1;
        st->rec_line = st->cur_line;
    }
    int k = st->nfield++;
    if (!st->header_done) {
        if (k >= st->nh_cap) {
            st->nh_cap = st->nh_cap ? 2 * st->nh_cap : 16;
            st->hnames = (char **)mc_realloc(st->hnames, (size_t)st->nh_cap * sizeof(char *));
        }
        char *h = (char *)mc_malloc(len + 1);
        memcpy(h, s, len);
        h[len] = 0;
        st->hnames[k] = h;
        return;
    }
    for (int c = 0; c < NCOL; c++)
        if (st->col[c] == k) {
            const char *v = (const char *)s;
            if (c == COL_PATH && len > 0 && v[0] != '/' && st->dirlen) {
                /* relative path: resolved against the manifest's folder */
                size_t off = arena_put(&st->a, st->dir, st->dirlen);
                st->a.len--; /* drop the NUL so the path continues the folder */
                arena_put(&st->a, v, len);
                st->val[c] = off;
                st->val_len[c] = st->dirlen + len;
            } else {
                st->val[c] = arena_put(&st->a, v, len);
                st->val_len[c] = len;
            }
        }
}

static const char *const ID_NAMES[] = {"id_str", "id", "objid", NULL};
static const char *const PATH_NAMES[] = {"file_loc", "path", "file", "filename", "location", NULL};

/* Trimmed copy of a header name for comparison (libcsv keeps blanks inside quotes). */
static int name_is(const char *h, const char *want)
{
    while (*h == ' ' || *h == '\t') h++;
    size_t n = strlen(h);
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\t')) n--;
    return n == strlen(want) && !strncasecmp(h, want, n);
}

static void header_done(csv_state *st)
{
    static const char *const *const sets[NCOL] = {ID_NAMES, PATH_NAMES, NULL, NULL, NULL, NULL};
    static const char *const single[NCOL] = {NULL, NULL, "ra", "dec", "hdu", "morphcat_bad_row"};
    for (int c = 0; c < NCOL; c++) {
        st->col[c] = -1;
        if (sets[c]) {
            for (int a = 0; sets[c][a] && st->col[c] < 0; a++)
                for (int k = 0; k < st->nfield; k++)
                    if (name_is(st->hnames[k], sets[c][a])) {
                        st->col[c] = k;
                        break;
                    }
        } else {
            for (int k = 0; k < st->nfield; k++)
                if (name_is(st->hnames[k], single[c])) {
                    st->col[c] = k;
                    break;
                }
        }
    }
    st->nheader = st->nfield;
    if (st->col[COL_ID] < 0 || st->col[COL_PATH] < 0) {
        /* the header's names, as many as fit whole, bytes outside printable ASCII shown as '?' so the message
         * stays one readable line (snprintf's return counted past the buffer once: found by fuzz_manifest) */
        char have[400];
        size_t u = 0;
        int k = 0;
        for (; k < st->nfield; k++) {
            const char *name = st->hnames[k];
            if (u + strlen(name) + 2 > sizeof have - 8) break;
            if (k) have[u++] = ',', have[u++] = ' ';
            for (; *name; name++) have[u++] = (unsigned char)*name < 0x20 || (unsigned char)*name > 0x7e ? '?' : *name;
        }
        snprintf(have + u, sizeof have - u, "%s", k < st->nfield ? (k ? ", ..." : "...") : "");
        st->hdr_err = (char *)mc_malloc(MC_ERR_LEN);
        mc_fail(st->hdr_err, "%s: line %lld: no %s column (accepted: %s); the header has: %s", st->path,
                (long long)st->rec_line, st->col[COL_ID] < 0 ? "id_str" : "path",
                st->col[COL_ID] < 0 ? "id_str, id, objid" : "file_loc, path, file, filename, location", have);
    }
    for (int k = 0; k < st->nfield; k++) free(st->hnames[k]);
    st->header_done = 1;
}

/* A number of degrees in [lo, hi]; empty or "nan" is no value (NAN). Returns 0, or -1 if unusable. */
static int parse_degrees(const char *s, double lo, double hi, double *out)
{
    while (*s == ' ') s++;
    if (!*s || !strcasecmp(s, "nan")) {
        *out = NAN;
        return 0;
    }
    char *end;
    double v = strtod(s, &end);
    while (*end == ' ') end++;
    if (end == s || *end || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static void cb_record(int c, void *data)
{
    (void)c;
    csv_state *st = (csv_state *)data;
    if (!st->in_rec) {
        st->in_rec = 1;
        st->rec_line = st->cur_line;
    }
    if (!st->header_done) {
        header_done(st);
        goto reset;
    }
    if (st->hdr_err) goto reset;
    io_manifest_row *r = &st->one;
    if (!st->streaming) {
        if (st->n == st->cap) {
            st->cap = st->cap ? 2 * st->cap : 1024;
            st->rows = (io_manifest_row *)mc_realloc(st->rows, (size_t)st->cap * sizeof *st->rows);
            st->line = (int64_t *)mc_realloc(st->line, (size_t)st->cap * sizeof *st->line);
        }
        r = &st->rows[st->n];
        st->line[st->n] = st->rec_line;
    }
    memset(r, 0, sizeof *r);
    st->n++;
    r->id_str = off_ptr(st->val[COL_ID] ? st->val[COL_ID] : arena_put(&st->a, "", 0));
    r->path = off_ptr(st->val[COL_PATH] ? st->val[COL_PATH] : arena_put(&st->a, "", 0));
    r->hdu = st->val[COL_HDU] && st->val_len[COL_HDU] ? off_ptr(st->val[COL_HDU]) : NULL;
    r->ra = r->dec = NAN;
    char note[512] = "";
    const char *ra = st->val[COL_RA] ? st->a.buf + st->val[COL_RA] : "";
    const char *dec = st->val[COL_DEC] ? st->a.buf + st->val[COL_DEC] : "";
    if (st->nfield != st->nheader)
        snprintf(note, sizeof note, "%d fields where the header has %d", st->nfield, st->nheader);
    else if (st->val[COL_BAD] && st->val_len[COL_BAD] > 0) /* a bad row carried over by morphcat plan/rerun */
        snprintf(note, sizeof note, "%s", st->a.buf + st->val[COL_BAD]);
    else if (!st->val[COL_ID] || st->val_len[COL_ID] == 0)
        snprintf(note, sizeof note, "empty id_str");
    else if (id_offence(st->a.buf + st->val[COL_ID], st->val_len[COL_ID], note, sizeof note))
        for (size_t k = 0; k < st->val_len[COL_ID]; k++) { /* the stored id stays valid: '?' for bytes >= 0x80 */
            unsigned char *b = (unsigned char *)st->a.buf + st->val[COL_ID] + k;
            if (*b >= 0x80) *b = '?';
        }
    else if (!st->val[COL_PATH] || st->val_len[COL_PATH] == 0)
        snprintf(note, sizeof note, "empty path");
    else if (parse_degrees(ra, -360, 360, &r->ra))
        snprintf(note, sizeof note, "bad ra '%.60s' (need degrees in [-360, 360])", ra);
    else if (parse_degrees(dec, -90, 90, &r->dec))
        snprintf(note, sizeof note, "bad dec '%.60s' (need degrees in [-90, 90])", dec);
    else if (isnan(r->ra) != isnan(r->dec))
        snprintf(note, sizeof note, "%s given without %s", isnan(r->ra) ? "dec" : "ra",
                 isnan(r->ra) ? "ra" : "dec");
    if (note[0]) {
        char full[700];
        int n = st->val[COL_BAD] && st->val_len[COL_BAD] > 0 && st->nfield == st->nheader
                    ? snprintf(full, sizeof full, "%s", note) /* already names its manifest and line */
                    : snprintf(full, sizeof full, "%s: line %lld: %s", st->path, (long long)st->rec_line, note);
        r->bad = 1;
        r->note = off_ptr(arena_put(&st->a, full, (size_t)n));
        r->ra = r->dec = NAN;
    }
    if (st->streaming) { /* the arena no longer moves for this row: pointers, hand over, forget */
        io_manifest_row v = *r;
        v.id_str = arena_fix(&st->a, r->id_str);
        v.path = arena_fix(&st->a, r->path);
        v.hdu = arena_fix(&st->a, r->hdu);
        v.note = arena_fix(&st->a, r->note);
        int li = (int)strlen(v.id_str), lp = (int)strlen(v.path);
        if (li > st->max_id_len) st->max_id_len = li;
        if (lp > st->max_path_len) st->max_path_len = lp;
        if (st->dup && v.id_str[0]) dup_add(st->dup, v.id_str, st->n - 1);
        if (st->fn && st->fn(st->ctx, st->n - 1, st->rec_line, &v)) st->stop = 1;
        st->a.len = st->arena_base;
    }
reset:
    st->in_rec = 0;
    st->nfield = 0;
    memset(st->val, 0, sizeof st->val);
    memset(st->val_len, 0, sizeof st->val_len);
}

/* Set up a csv_state for path: its folder (for relative paths) and the arena, offset 0 meaning NULL. Returns
 * the arena offset of path; *dir is the folder (malloc'ed) or NULL. */
static size_t csv_state_init(csv_state *st, const char *path, char **dir)
{
    memset(st, 0, sizeof *st);
    st->path = path;
    st->cur_line = 1;
    const char *slash = strrchr(path, '/');
    *dir = NULL;
    st->dir = "";
    if (slash) {
        size_t dl = (size_t)(slash - path) + 1;
        *dir = (char *)mc_malloc(dl + 1);
        memcpy(*dir, path, dl);
        (*dir)[dl] = 0;
        st->dir = *dir;
        st->dirlen = dl;
    }
    arena_put(&st->a, "", 0);
    return arena_put(&st->a, path, strlen(path));
}

/* Feed the whole file through libcsv (or until a row callback asks to stop); the sha256 of its bytes into
 * sha (when not stopped). Whole-manifest errors return -1 with their line. */
static int csv_parse_file(const char *path, FILE *f, csv_state *st, char *sha, char *err)
{
    struct csv_parser p;
    MC_ASSERT(csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) == 0);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    MC_ASSERT(md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1);
    size_t bufsz = 1 << 20;
    char *buf = (char *)mc_malloc(bufsz);
    int rc = 0, first = 1;
    size_t got;
    while (!rc && !st->stop && (got = fread(buf, 1, bufsz, f)) > 0) {
        EVP_DigestUpdate(md, buf, got);
        char *s = buf, *end = buf + got;
        if (first) {
            first = 0;
            if (got >= 3 && (unsigned char)s[0] == 0xef && (unsigned char)s[1] == 0xbb &&
                (unsigned char)s[2] == 0xbf)
                s += 3; /* UTF-8 byte order mark */
        }
        /* Feed line by line so a record knows the line it started on. */
        while (s < end && !st->stop) {
            char *nl = (char *)memchr(s, '\n', (size_t)(end - s));
            size_t n = nl ? (size_t)(nl - s) + 1 : (size_t)(end - s);
            if (csv_parse(&p, s, n, cb_field, cb_record, st) != n) {
                rc =
                    mc_fail(err,
                            "%s: line %lld: malformed CSV (%s; a quote inside a field must be doubled, and a "
                            "quoted field must be followed by a comma or the end of the line)",
                            path, (long long)st->cur_line, csv_strerror(csv_error(&p)));
                break;
            }
            if (st->hdr_err) break;
            if (nl) st->cur_line++;
            s += n;
        }
        if (st->hdr_err) break;
    }
    if (!rc && !st->stop && ferror(f)) rc = mc_fail(err, "%s: read error (%s)", path, strerror(errno));
    if (!rc && !st->stop && !st->hdr_err && csv_fini(&p, cb_field, cb_record, st) != 0)
        rc = mc_fail(err, "%s: line %lld: unterminated quoted field at the end of the file", path,
                     (long long)st->rec_line);
    if (!rc && st->hdr_err) rc = mc_fail(err, "%s", st->hdr_err);
    if (!rc && !st->stop && !st->header_done) rc = mc_fail(err, "%s: empty manifest (no header line)", path);
    csv_free(&p);
    free(buf);
    sha_hex(md, sha);
    EVP_MD_CTX_free(md);
    free(st->hnames);
    free(st->hdr_err);
    st->hnames = NULL;
    st->hdr_err = NULL;
    return rc;
}

static int read_csv(const char *path, FILE *f, io_manifest *m, char *err)
{
    csv_state st;
    char *dir;
    size_t path_off = csv_state_init(&st, path, &dir);
    int rc = csv_parse_file(path, f, &st, m->sha256, err);
    free(dir);
    if (rc) {
        free(st.a.buf);
        free(st.rows);
        free(st.line);
        return rc;
    }
    /* The arena stops moving: shrink it, then turn offsets into pointers. */
    st.a.buf = (char *)mc_realloc(st.a.buf, st.a.len);
    m->strings = st.a.buf;
    m->path = st.a.buf + path_off;
    m->n = st.n;
    m->rows =
        st.n ? (io_manifest_row *)mc_realloc(st.rows, (size_t)st.n * sizeof *st.rows) : (free(st.rows), NULL);
    for (int64_t i = 0; i < m->n; i++) {
        io_manifest_row *r = &m->rows[i];
        r->id_str = arena_fix(&st.a, r->id_str);
        r->path = arena_fix(&st.a, r->path);
        r->hdu = arena_fix(&st.a, r->hdu);
        r->note = arena_fix(&st.a, r->note);
    }
    finish_widths(m);
    rc = check_duplicates(m, st.line, NULL, path, err);
    free(st.line);
    return rc;
}

/* ---------------------------------------------------------------------------------- streaming */

/* The duplicate check of a streamed manifest, in bounded memory: (64-bit hash of id_str, row) pairs are
 * sorted in runs of sort_rows (16 bytes each) spilled to an unlinked temporary file, then merged. Equal
 * hashes are candidates; the one whose second row comes first is the error check_duplicates reports (the
 * first row of a hash group is the id's first occurrence), confirmed by reading the two ids back. Distinct
 * ids with equal hashes (about n^2 / 2^65: 3e-6 at 10 million rows) fall back to the exact in-memory check. */
typedef struct {
    uint64_t h;
    int64_t row;
} dup_ent;

struct dup_runs {
    dup_ent *buf;
    size_t n, cap;
    uint64_t mask; /* of the hash's bits kept (tests use fewer, to make collisions) */
    int fd;        /* spilled runs, back to back; -1 until the first spill */
    int64_t *run_len;
    int n_runs, cap_runs, failed;
    char tmp_err[256];
};

static int dup_cmp(const void *a, const void *b)
{
    const dup_ent *x = (const dup_ent *)a, *y = (const dup_ent *)b;
    if (x->h != y->h) return x->h < y->h ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

static uint64_t hash_id(const char *s)
{
    uint64_t h = hash_str(s); /* FNV-1a, then a 64-bit finaliser so every bit depends on every byte */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

static void dup_spill(struct dup_runs *d)
{
    if (d->failed || !d->n) return;
    qsort(d->buf, d->n, sizeof *d->buf, dup_cmp);
    if (d->fd < 0) {
        const char *t = getenv("TMPDIR");
        char name[4200];
        snprintf(name, sizeof name, "%s/morphcat-ids-XXXXXX", t && t[0] ? t : "/tmp");
        d->fd = mkstemp(name);
        if (d->fd < 0) {
            snprintf(d->tmp_err, sizeof d->tmp_err, "%.200s: cannot create (%s)", name, strerror(errno));
            d->failed = 1;
            return;
        }
        unlink(name);
    }
    size_t bytes = d->n * sizeof *d->buf, done = 0;
    while (done < bytes) {
        ssize_t w = write(d->fd, (const char *)d->buf + done, bytes - done);
        if (w <= 0) {
            snprintf(d->tmp_err, sizeof d->tmp_err, "the temporary file cannot be written (%s)",
                     w < 0 ? strerror(errno) : "disk full?");
            d->failed = 1;
            return;
        }
        done += (size_t)w;
    }
    if (d->n_runs == d->cap_runs)
        d->run_len = (int64_t *)mc_realloc(d->run_len, sizeof(int64_t) * (size_t)(d->cap_runs = 2 * d->cap_runs + 8));
    d->run_len[d->n_runs++] = (int64_t)d->n;
    d->n = 0;
}

static void dup_add(struct dup_runs *d, const char *id, int64_t row)
{
    if (d->n == d->cap) dup_spill(d);
    if (d->n == d->cap) return; /* the spill failed: reported at the end */
    d->buf[d->n++] = (dup_ent){hash_id(id) & d->mask, row};
}

typedef struct {
    int64_t next, end; /* entries of the run still on disk: [next, end) */
    dup_ent *b;
    size_t at, len;
} dup_cursor;

static int cursor_fill(const struct dup_runs *d, dup_cursor *c, size_t cap)
{
    c->at = 0;
    c->len = (size_t)(c->end - c->next < (int64_t)cap ? c->end - c->next : (int64_t)cap);
    size_t bytes = c->len * sizeof(dup_ent), done = 0;
    while (done < bytes) {
        ssize_t r = pread(d->fd, (char *)c->b + done, bytes - done, (off_t)(c->next * (int64_t)sizeof(dup_ent)) + (off_t)done);
        if (r <= 0) return -1;
        done += (size_t)r;
    }
    c->next += (int64_t)c->len;
    return 0;
}

/* Sift heap[p] down a binary min-heap of nh cursor indices ordered by each cursor's current entry. */
static void dup_sift(int *heap, int nh, int p, const dup_cursor *c)
{
#define DUP_LESS(x, y) (dup_cmp(&c[x].b[c[x].at], &c[y].b[c[y].at]) < 0)
    for (;;) {
        int l = 2 * p + 1, m = p;
        if (l < nh && DUP_LESS(heap[l], heap[m])) m = l;
        if (l + 1 < nh && DUP_LESS(heap[l + 1], heap[m])) m = l + 1;
        if (m == p) break;
        int t = heap[p];
        heap[p] = heap[m];
        heap[m] = t;
        p = m;
    }
#undef DUP_LESS
}

/* The candidate: rows j < i with equal hashes, i as small as possible; *i = -1 when there is none. */
static int dup_candidate(struct dup_runs *d, int64_t *j, int64_t *i, char *err)
{
    *j = *i = -1;
    if (d->fd >= 0) dup_spill(d); /* everything on disk, merged below */
    if (d->failed) return mc_fail(err, "checking id_str for duplicates: %s", d->tmp_err);
    if (d->fd < 0) { /* one run: sorted in memory */
        qsort(d->buf, d->n, sizeof *d->buf, dup_cmp);
        for (size_t k = 1; k < d->n; k++)
            if (d->buf[k].h == d->buf[k - 1].h && (k < 2 || d->buf[k - 2].h != d->buf[k].h) &&
                (*i < 0 || d->buf[k].row < *i)) {
                *i = d->buf[k].row;
                *j = d->buf[k - 1].row;
            }
        return 0;
    }
    /* k-way merge through a binary heap of cursors; the run buffer's memory is shared among the cursors */
    int nr = d->n_runs;
    dup_cursor *c = (dup_cursor *)mc_calloc((size_t)nr, sizeof *c);
    int *heap = (int *)mc_malloc(sizeof(int) * (size_t)nr);
    size_t per = d->cap / (size_t)nr;
    if (per < 16) per = 16;
    dup_ent *pool = per * (size_t)nr <= d->cap ? d->buf : (dup_ent *)mc_malloc(sizeof(dup_ent) * per * (size_t)nr);
    int64_t off = 0;
    int nh = 0, rc = 0;
    for (int r = 0; r < nr && !rc; r++) {
        c[r].next = off;
        c[r].end = off += d->run_len[r];
        c[r].b = pool + (size_t)r * per;
        if (cursor_fill(d, &c[r], per)) rc = -1;
        if (c[r].len) heap[nh++] = r;
    }
    for (int k = nh / 2 - 1; k >= 0; k--) /* heapify */
        dup_sift(heap, nh, k, c);
    uint64_t gh = 0;
    int64_t first = -1, members = 0;
    while (nh > 0 && !rc) {
        int r = heap[0];
        dup_ent e = c[r].b[c[r].at];
        if (members && e.h == gh) {
            if (++members == 2 && (*i < 0 || e.row < *i)) {
                *i = e.row;
                *j = first;
            }
        } else {
            gh = e.h;
            first = e.row;
            members = 1;
        }
        if (++c[r].at == c[r].len && (c[r].next == c[r].end || cursor_fill(d, &c[r], per))) {
            if (c[r].next < c[r].end) rc = -1;
            heap[0] = heap[--nh];
        }
        dup_sift(heap, nh, 0, c);
    }
    if (pool != d->buf) free(pool);
    free(c);
    free(heap);
    return rc ? mc_fail(err, "checking id_str for duplicates: the temporary file cannot be read back") : 0;
}

/* Row j's and row i's id and line, read back for the candidate. */
typedef struct {
    int64_t j, i, line_j, line_i;
    char *id_j, *id_i;
} dup_pair;

static int pick_pair(void *ctx, int64_t index, int64_t line, const io_manifest_row *r)
{
    dup_pair *p = (dup_pair *)ctx;
    if (index == p->j) {
        p->id_j = mc_strdup(r->id_str);
        p->line_j = line;
    }
    if (index == p->i) {
        p->id_i = mc_strdup(r->id_str);
        p->line_i = line;
    }
    return index >= p->i;
}

static int scan_csv(const char *path, io_manifest_row_fn fn, void *ctx, io_manifest_info *info,
                    struct dup_runs *dup, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return mc_fail(err, "%s: cannot open manifest (%s)", path, strerror(errno));
    csv_state st;
    char *dir;
    csv_state_init(&st, path, &dir);
    st.streaming = 1;
    st.arena_base = st.a.len;
    st.fn = fn;
    st.ctx = ctx;
    st.dup = dup;
    int rc = csv_parse_file(path, f, &st, info ? info->sha256 : (char[65]){0}, err);
    fclose(f);
    free(dir);
    free(st.a.buf);
    if (info) {
        info->n = st.n;
        info->max_id_len = st.max_id_len;
        info->max_path_len = st.max_path_len;
    }
    return rc;
}

int io_manifest_scan(const char *path, const io_manifest_scan_opts *o, io_manifest_row_fn fn, void *ctx,
                     io_manifest_info *info, char *err)
{
    MC_ASSERT(path && info);
    static const io_manifest_scan_opts defaults = {0};
    if (!o) o = &defaults;
    memset(info, 0, sizeof *info);
    struct stat sb;
    if (stat(path, &sb) != 0) return mc_fail(err, "%s: cannot open manifest (%s)", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) { /* a listing is sorted whole anyway: read it, then hand the rows over */
        io_manifest m;
        if (io_manifest_read(path, &m, err)) return -1;
        snprintf(info->path, sizeof info->path, "%s", m.path);
        memcpy(info->sha256, m.sha256, sizeof info->sha256);
        info->n = m.n;
        info->max_id_len = m.max_id_len;
        info->max_path_len = m.max_path_len;
        for (int64_t i = 0; fn && i < m.n; i++)
            if (fn(ctx, i, 0, &m.rows[i])) break;
        io_manifest_free(&m);
        return 0;
    }
    snprintf(info->path, sizeof info->path, "%s", path);
    if (!o->unique) return scan_csv(path, fn, ctx, info, NULL, err);
    struct dup_runs d = {0};
    d.cap = o->sort_rows > 0 ? (size_t)o->sort_rows : (size_t)1 << 18;
    d.buf = (dup_ent *)mc_malloc(d.cap * sizeof *d.buf);
    d.mask = o->hash_bits > 0 && o->hash_bits < 64 ? ((uint64_t)1 << o->hash_bits) - 1 : ~(uint64_t)0;
    d.fd = -1;
    int64_t j, i;
    int rc = scan_csv(path, fn, ctx, info, &d, err);
    if (!rc) rc = dup_candidate(&d, &j, &i, err);
    free(d.buf);
    free(d.run_len);
    if (d.fd >= 0) close(d.fd);
    if (rc || i < 0) return rc;
    dup_pair p = {.j = j, .i = i};
    rc = scan_csv(path, pick_pair, &p, NULL, NULL, err);
    if (!rc && p.id_j && p.id_i && !strcmp(p.id_j, p.id_i))
        rc = mc_fail(err, "%s: duplicate id_str '%s' on lines %lld and %lld", path, p.id_i, (long long)p.line_j,
                     (long long)p.line_i);
    else if (!rc) { /* two ids with one hash: the exact check decides */
        io_manifest m;
        rc = io_manifest_read(path, &m, err);
        if (!rc) io_manifest_free(&m);
    }
    free(p.id_j);
    free(p.id_i);
    return rc;
}

/* ---------------------------------------------------------------------------------- folders */

static const char *const CUTOUT_EXT[] = {".fits.gz", ".fits.fz", ".fits", ".fit", ".fz",
                                         ".png",     ".jpg",     ".jpeg", NULL};

/* Length of the cutout extension name ends with (longest match), or 0. */
static size_t cutout_ext_len(const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; CUTOUT_EXT[i]; i++) {
        size_t e = strlen(CUTOUT_EXT[i]);
        if (n > e && !strcasecmp(name + n - e, CUTOUT_EXT[i])) return e;
    }
    return 0;
}

typedef struct {
    arena a;
    size_t *rel; /* arena offsets of relative paths */
    size_t n, cap;
} listing;

static int walk(const char *root, const char *rel, listing *L, char *err)
{
    char full[4096];
    snprintf(full, sizeof full, "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(full);
    if (!d) return mc_fail(err, "%s: cannot list folder (%s)", full, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* ., .., hidden files, macOS ._ resource forks */
        char sub[4096];
        int n = snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        if (n >= (int)sizeof sub) {
            rc = mc_fail(err, "%s/%s: path too long", root, sub);
            break;
        }
        int is_dir = e->d_type == DT_DIR, is_file = e->d_type == DT_REG;
        if (e->d_type == DT_LNK || e->d_type == DT_UNKNOWN) {
            char fp[8192];
            snprintf(fp, sizeof fp, "%s/%s", root, sub);
            struct stat st;
            if (e->d_type == DT_UNKNOWN && lstat(fp, &st) == 0 && S_ISDIR(st.st_mode))
                is_dir = 1;
            else if (stat(fp, &st) == 0 && S_ISREG(st.st_mode))
                is_file = 1; /* links to files count; links to folders are not followed (no cycles) */
        }
        if (is_dir) {
            rc = walk(root, sub, L, err);
        } else if (is_file && cutout_ext_len(e->d_name)) {
            if (L->n == L->cap) {
                L->cap = L->cap ? 2 * L->cap : 1024;
                L->rel = (size_t *)mc_realloc(L->rel, L->cap * sizeof *L->rel);
            }
            L->rel[L->n++] = arena_put(&L->a, sub, (size_t)n);
        }
    }
    closedir(d);
    return rc;
}

static const char *sort_base;
static int cmp_rel(const void *a, const void *b)
{
    return strcmp(sort_base + *(const size_t *)a, sort_base + *(const size_t *)b);
}

static int read_folder(const char *path, io_manifest *m, char *err)
{
    size_t plen = strlen(path);
    while (plen > 1 && path[plen - 1] == '/') plen--;
    char *root = (char *)mc_malloc(plen + 1);
    memcpy(root, path, plen);
    root[plen] = 0;
    listing L;
    memset(&L, 0, sizeof L);
    arena_put(&L.a, "", 0);
    int rc = walk(root, "", &L, err);
    if (rc) {
        free(root);
        free(L.a.buf);
        free(L.rel);
        return rc;
    }
    sort_base = L.a.buf; /* one thread reads manifests; qsort has no context argument */
    qsort(L.rel, L.n, sizeof *L.rel, cmp_rel);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    MC_ASSERT(md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1);
    for (size_t i = 0; i < L.n; i++) {
        const char *r = L.a.buf + L.rel[i];
        EVP_DigestUpdate(md, r, strlen(r));
        EVP_DigestUpdate(md, "\n", 1);
    }
    sha_hex(md, m->sha256);
    EVP_MD_CTX_free(md);
    /* Rows: full path and id_str appended to the same arena; offsets until it stops moving. */
    size_t path_off = arena_put(&L.a, root, plen);
    io_manifest_row *rows = L.n ? (io_manifest_row *)mc_calloc(L.n, sizeof *rows) : NULL;
    size_t *id_off = (size_t *)mc_malloc((L.n + 1) * sizeof(size_t));
    for (size_t i = 0; i < L.n; i++) {
        /* copy the relative path first: arena_put may move the buffer under a pointer into it */
        size_t rl = strlen(L.a.buf + L.rel[i]);
        char *rel = (char *)mc_malloc(rl + 1);
        memcpy(rel, L.a.buf + L.rel[i], rl + 1);
        size_t off = arena_put(&L.a, root, plen);
        L.a.len--;
        arena_put(&L.a, "/", 1);
        L.a.len--;
        arena_put(&L.a, rel, rl);
        rows[i].path = off_ptr(off);
        id_off[i] = arena_put(&L.a, rel, rl - cutout_ext_len(rel));
        rows[i].id_str = off_ptr(id_off[i]);
        rows[i].ra = rows[i].dec = NAN;
        free(rel);
    }
    L.a.buf = (char *)mc_realloc(L.a.buf, L.a.len);
    char **files = (char **)mc_malloc((L.n + 1) * sizeof(char *));
    for (size_t i = 0; i < L.n; i++) {
        rows[i].path = arena_fix(&L.a, rows[i].path);
        rows[i].id_str = arena_fix(&L.a, rows[i].id_str);
        files[i] = L.a.buf + L.rel[i];
    }
    m->strings = L.a.buf;
    m->path = L.a.buf + path_off;
    m->rows = rows;
    m->n = (int64_t)L.n;
    finish_widths(m);
    rc = check_duplicates(m, NULL, files, m->path, err);
    free(files);
    free(id_off);
    free(L.rel);
    free(root);
    return rc;
}

/* ---------------------------------------------------------------------------------- entry points */

int io_manifest_read(const char *path, io_manifest *m, char *err)
{
    MC_ASSERT(path && m);
    memset(m, 0, sizeof *m);
    struct stat st;
    if (stat(path, &st) != 0) return mc_fail(err, "%s: cannot open manifest (%s)", path, strerror(errno));
    int rc;
    if (S_ISDIR(st.st_mode)) {
        rc = read_folder(path, m, err);
    } else {
        FILE *f = fopen(path, "rb");
        if (!f) return mc_fail(err, "%s: cannot open manifest (%s)", path, strerror(errno));
        rc = read_csv(path, f, m, err);
        fclose(f);
    }
    if (rc) io_manifest_free(m);
    return rc ? -1 : 0;
}

void io_manifest_free(io_manifest *m)
{
    if (!m) return;
    free(m->rows);
    free(m->strings);
    memset(m, 0, sizeof *m);
}
