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

int jobs_manifest_write(const char *path, const io_manifest *m, const int64_t *rows, int64_t n, char *err)
{
    char cwd[4096] = "", tmp[4200];
    if (!getcwd(cwd, sizeof cwd)) return mc_fail(err, "cannot read the current folder (%s)", strerror(errno));
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return mc_fail(err, "%s: cannot write (%s)", tmp, strerror(errno));
    static char buf[1 << 20];
    setvbuf(f, buf, _IOFBF, sizeof buf);
    fputs("id_str,file_loc,ra,dec,hdu,morphcat_bad_row\n", f);
    char *abs = NULL;
    size_t abs_cap = 0;
    for (int64_t k = 0; k < n; k++) {
        const io_manifest_row *r = &m->rows[rows[k]];
        put_field(f, r->id_str);
        fputc(',', f);
        const char *p = r->path ? r->path : "";
        if (p[0] && p[0] != '/') {
            size_t need = strlen(cwd) + strlen(p) + 2;
            if (need > abs_cap) abs = mc_realloc(abs, abs_cap = 2 * need);
            snprintf(abs, abs_cap, "%s/%s", cwd, p[0] == '.' && p[1] == '/' ? p + 2 : p);
            p = abs;
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
    free(abs);
    int bad = ferror(f) != 0;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) bad = 1;
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        unlink(tmp);
        return mc_fail(err, "%s: write failed (disk full?)", tmp);
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return mc_fail(err, "%s: cannot rename into place (%s)", path, strerror(errno));
    }
    return 0;
}
