/* jobs/manifest.c: writes a subset of a manifest's rows as a new CSV manifest (plan chunks, rerun deltas),
 * so that `morphcat run` on it treats every row exactly as it would have in the source manifest: paths
 * absolute, sky positions to full double precision, bad rows kept bad with their original reason.
 * Not here: reading manifests (io/manifest.c). */
#include <errno.h>
#include <math.h>
#include <unistd.h>

#include "jobs/jobs.h"

/* RFC 4180: quote when the field holds a comma, quote, line break or edge blank; double inner quotes. */
static void put_field(FILE *f, const char *s)
{
    if (!s) s = "";
    size_t n = strlen(s);
    int quote = n && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t');
    for (const char *p = s; *p && !quote; p++) quote = *p == ',' || *p == '"' || *p == '\n' || *p == '\r';
    if (!quote) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const char *p = s; *p; p++) {
        if (*p == '"') fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

struct jobs_manifest_writer {
    FILE *f;
    char path[4200], tmp[4200], cwd[4096];
    char *abs;
    size_t abs_cap;
    char *buf;
};

int jobs_manifest_writer_open(const char *path, jobs_manifest_writer **out, char *err)
{
    *out = NULL;
    jobs_manifest_writer *w = mc_calloc(1, sizeof *w);
    if (!getcwd(w->cwd, sizeof w->cwd)) {
        free(w);
        return mc_fail(err, "cannot read the current folder (%s)", strerror(errno));
    }
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    w->f = fopen(w->tmp, "w");
    if (!w->f) {
        mc_fail(err, "%s: cannot write (%s)", w->tmp, strerror(errno));
        free(w);
        return -1;
    }
    w->buf = mc_malloc(1 << 20);
    setvbuf(w->f, w->buf, _IOFBF, 1 << 20);
    fputs("id_str,file_loc,ra,dec,hdu,morphcat_bad_row\n", w->f);
    *out = w;
    return 0;
}

void jobs_manifest_writer_row(jobs_manifest_writer *w, const io_manifest_row *r)
{
    FILE *f = w->f;
    put_field(f, r->id_str);
    fputc(',', f);
    const char *p = r->path ? r->path : "";
    if (p[0] && p[0] != '/') {
        size_t need = strlen(w->cwd) + strlen(p) + 2;
        if (need > w->abs_cap) w->abs = mc_realloc(w->abs, w->abs_cap = 2 * need);
        snprintf(w->abs, w->abs_cap, "%s/%s", w->cwd, p[0] == '.' && p[1] == '/' ? p + 2 : p);
        p = w->abs;
    }
    put_field(f, p);
    if (r->bad || isnan(r->ra) || isnan(r->dec)) fputs(",,", f);
    else { /* the shortest text that reads back as the same double */
        char a[40], b[40];
        for (int pr = 15; pr <= 17; pr++) {
            snprintf(a, sizeof a, "%.*g", pr, r->ra);
            if (strtod(a, NULL) == r->ra) break;
        }
        for (int pr = 15; pr <= 17; pr++) {
            snprintf(b, sizeof b, "%.*g", pr, r->dec);
            if (strtod(b, NULL) == r->dec) break;
        }
        fprintf(f, ",%s,%s", a, b);
    }
    fputc(',', f);
    put_field(f, r->hdu);
    fputc(',', f);
    if (r->bad) put_field(f, r->note && r->note[0] ? r->note : "unusable manifest row");
    fputc('\n', f);
}

int jobs_manifest_writer_close(jobs_manifest_writer *w, char *err)
{
    if (!w) return 0;
    int bad = ferror(w->f) != 0;
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) bad = 1;
    if (fclose(w->f) != 0) bad = 1;
    int rc = 0;
    if (bad) {
        unlink(w->tmp);
        rc = mc_fail(err, "%s: write failed (disk full?)", w->tmp);
    } else if (rename(w->tmp, w->path) != 0) {
        unlink(w->tmp);
        rc = mc_fail(err, "%s: cannot rename into place (%s)", w->path, strerror(errno));
    }
    free(w->abs);
    free(w->buf);
    free(w);
    return rc;
}

int jobs_manifest_write(const char *path, const io_manifest *m, const int64_t *rows, int64_t n, char *err)
{
    jobs_manifest_writer *w;
    if (jobs_manifest_writer_open(path, &w, err)) return -1;
    for (int64_t k = 0; k < n; k++) jobs_manifest_writer_row(w, &m->rows[rows[k]]);
    return jobs_manifest_writer_close(w, err);
}
