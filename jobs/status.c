/* jobs/status.c: what one catalogue holds: rows by status, its release and model, and how long it has been
 * written (created_utc to the file's last change), read without disturbing a job that is writing it.
 * Not here: rates over time and job-wide sums (pipeline/cmd_status.c). */
#include <sys/stat.h>

#include "jobs/jobs.h"

/* "YYYY-MM-DDTHH:MM:SSZ" to Unix seconds; -1 when unreadable. */
static double parse_utc(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) !=
        6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm);
}

int jobs_status_read(const char *path, jobs_status *s, char *err)
{
    memset(s, 0, sizeof *s);
    s->age_seconds = -1;
    char marker[4200];
    snprintf(marker, sizeof marker, "%s.creating", path);
    struct stat st;
    if (stat(marker, &st) == 0) {
        s->creating = 1;
        return 0;
    }
    if (stat(path, &st) != 0) {
        s->absent = 1;
        return 0;
    }
    jobs_cat *c;
    if (jobs_cat_open(path, &c, err)) return -1;
    s->n_rows = jobs_cat_rows(c);
    uint8_t *status = mc_malloc((size_t)(s->n_rows > 0 ? s->n_rows : 1));
    int rc = jobs_cat_read_status(c, status, err);
    for (int64_t i = 0; !rc && i < s->n_rows; i++) s->counts[status[i] < MC_ROW_NSTATUS ? status[i] : 0]++;
    free(status);
    char created[64];
    jobs_cat_attr(c, "release", s->release, sizeof s->release);
    jobs_cat_attr(c, "model_arch", s->model_arch, sizeof s->model_arch);
    jobs_cat_attr(c, "model_sha256", s->model_sha256, sizeof s->model_sha256);
    if (!jobs_cat_attr(c, "created_utc", created, sizeof created)) {
        double t0 = parse_utc(created);
        if (t0 > 0) s->age_seconds = (double)st.st_mtime - t0;
    }
    jobs_cat_close(c);
    return rc;
}
