/* pipeline/cmd_status.c: `morphcat status`: what catalogues, or the chunks of a planned job, hold: rows done,
 * failed by reason, remaining, and a rate (measured over --interval, or averaged since creation). Read-only
 * and lock-free, so it is safe beside a running job. Not here: reading a catalogue (jobs/status.c). */
#include <getopt.h>
#include <unistd.h>

#include "jobs/jobs.h"
#include "pipeline/cli.h"
#include "pipeline/lock.h"

static void status_usage(FILE *f)
{
    fprintf(f, "usage: morphcat status CAT.h5 [CAT.h5 ...] [--interval S] [--json]\n"
               "       morphcat status --plan DIR --outputs DIR [--interval S] [--json]\n\n"
               "Prints what each catalogue holds (rows done, failed by reason, pending) and the total. With\n"
               "--plan and --outputs, the catalogues are the planned chunks' (OUTPUTS/chunk_NNNNN.h5, as the\n"
               "sbatch scripts name them) and chunks not started count as remaining. The rate is measured by\n"
               "reading the status columns twice, --interval S apart; without it, it is averaged from a\n"
               "catalogue's creation to its last write (pauses and queue waits included). Safe to run while\n"
               "the job writes. A catalogue some job holds (CAT.h5.lock) says by whom, and whether that lock is\n"
               "stale (its holder is gone on this host, or silent for --lock-stale-after S seconds, default 300,\n"
               "on another). Exit status 0 (1 when a catalogue cannot be read).\n");
}

typedef struct entry {
    char path[4200];
    int64_t planned_rows; /* from the plan, for chunks not started */
    jobs_status s;
    int held; /* 1 when CAT.h5.lock exists: lock says who holds it */
    mc_lock_holder lock;
} entry;

static int64_t done_of(const jobs_status *s)
{
    int64_t d = 0;
    for (int k = 1; k < MC_ROW_NSTATUS; k++) d += s->counts[k];
    return d;
}

static int read_all(entry *e, int n, double stale, char *err)
{
    for (int i = 0; i < n; i++) {
        if (jobs_status_read(e[i].path, &e[i].s, err)) return -1;
        e[i].held = mc_lock_query(e[i].path, stale, &e[i].lock, err);
        if (e[i].held < 0) return -1;
        if ((e[i].s.absent || e[i].s.creating) && e[i].planned_rows) e[i].s.n_rows = e[i].planned_rows;
        if (e[i].s.absent || e[i].s.creating) e[i].s.counts[MC_ROW_PENDING] = e[i].s.n_rows;
    }
    return 0;
}

static const char *state_of(const jobs_status *s)
{
    if (s->absent) return "not started";
    if (s->creating) return "being created";
    return s->counts[MC_ROW_PENDING] ? "incomplete" : "complete";
}

static void json_str(const char *t)
{
    printf("\"");
    for (const char *p = t; *p; p++) printf(*p == '"' || *p == '\\' ? "\\%c" : (unsigned char)*p < 32 ? "?" : "%c", *p);
    printf("\"");
}

static void print_lock_text(const entry *e)
{
    if (e->held != 1) return;
    char d[800];
    mc_lock_describe(&e->lock, d, sizeof d);
    if (e->lock.stale)
        printf("  lock: held by %s: STALE (%s); the next job on it breaks it\n", d, e->lock.why_stale);
    else
        printf("  lock: held by %s\n", d);
}

static void print_text(const char *label, const jobs_status *s, int detail)
{
    int64_t done = done_of(s), failed = done - s->counts[MC_ROW_OK];
    printf("%s: %lld rows, %s: done %lld (ok %lld, failed %lld", label, (long long)s->n_rows, state_of(s),
           (long long)done, (long long)s->counts[MC_ROW_OK], (long long)failed);
    if (failed) {
        printf(":");
        for (int k = 2; k < MC_ROW_NSTATUS; k++)
            if (s->counts[k]) printf(" %s %lld", mc_row_status_name(k), (long long)s->counts[k]);
    }
    printf("), remaining %lld", (long long)s->counts[MC_ROW_PENDING]);
    if (detail && !s->absent && !s->creating)
        printf("; release '%s', model %s %.12s", s->release, s->model_arch, s->model_sha256);
    printf("\n");
}

static void print_json_one(const char *path, const jobs_status *s, const entry *e, int last)
{
    printf("    {\"path\": \"");
    for (const char *p = path; *p; p++) printf(*p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
    printf("\", \"state\": \"%s\", \"rows\": %lld, \"done\": %lld, \"remaining\": %lld, \"release\": \"%s\", "
           "\"counts\": {", state_of(s), (long long)s->n_rows, (long long)done_of(s),
           (long long)s->counts[MC_ROW_PENDING], s->release);
    for (int k = 0; k < MC_ROW_NSTATUS; k++)
        printf("%s\"%s\": %lld", k ? ", " : "", mc_row_status_name(k), (long long)s->counts[k]);
    printf("}, \"lock\": ");
    if (e->held == 1) {
        printf("{\"command\": ");
        json_str(e->lock.command);
        printf(", \"host\": ");
        json_str(e->lock.host);
        printf(", \"pid\": %ld, \"slurm_job\": ", e->lock.pid);
        json_str(e->lock.slurm_job);
        printf(", \"started_utc\": ");
        json_str(e->lock.started_utc);
        printf(", \"heartbeat_age\": %.1f, \"stale\": %s, \"why_stale\": ", e->lock.heartbeat_age,
               e->lock.stale ? "true" : "false");
        json_str(e->lock.stale ? e->lock.why_stale : "");
        printf("}");
    } else {
        printf("null");
    }
    printf("}%s\n", last ? "" : ",");
}

int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {{"plan", required_argument, 0, 'p'},   {"outputs", required_argument, 0, 'o'},
                                         {"interval", required_argument, 0, 'i'}, {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},           {"lock-stale-after", required_argument, 0, 's'},
                                         {0, 0, 0, 0}};
    const char *plan = NULL, *outputs = NULL;
    double interval = 0, stale = MC_LOCK_STALE_DEFAULT;
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'p': plan = optarg; break;
        case 'o': outputs = optarg; break;
        case 'i': interval = atof(optarg); break;
        case 'j': json = 1; break;
        case 's': stale = atof(optarg); break;
        case 'h': status_usage(stdout); return MC_EXIT_OK;
        default: status_usage(stderr); return MC_EXIT_USAGE;
        }
    }
    char err[MC_ERR_LEN];
    entry *e = NULL;
    int n = 0;
    if (plan || outputs) {
        if (!plan || !outputs || optind != argc) {
            fprintf(stderr, "morphcat: status: --plan and --outputs go together, without catalogue arguments\n");
            return MC_EXIT_USAGE;
        }
        int64_t *rows, nc;
        if (jobs_plan_read(plan, &rows, &nc, err)) {
            fprintf(stderr, "morphcat: status: %s\n", err);
            return MC_EXIT_FAIL;
        }
        n = (int)nc;
        e = mc_calloc((size_t)(n > 0 ? n : 1), sizeof *e);
        for (int i = 0; i < n; i++) {
            snprintf(e[i].path, sizeof e[i].path, "%s/chunk_%05d.h5", outputs, i);
            e[i].planned_rows = rows[i];
        }
        free(rows);
    } else {
        n = argc - optind;
        if (n < 1) {
            status_usage(stderr);
            return MC_EXIT_USAGE;
        }
        e = mc_calloc((size_t)n, sizeof *e);
        for (int i = 0; i < n; i++) snprintf(e[i].path, sizeof e[i].path, "%s", argv[optind + i]);
    }
    int rc = read_all(e, n, stale, err);
    double rate = -1, t_first = mc_now();
    int64_t done0 = 0;
    for (int i = 0; i < n; i++) done0 += done_of(&e[i].s);
    if (!rc && interval > 0) {
        useconds_t us = (useconds_t)(interval * 1e6);
        usleep(us);
        rc = read_all(e, n, stale, err);
        int64_t done1 = 0;
        for (int i = 0; i < n; i++) done1 += done_of(&e[i].s);
        rate = (double)(done1 - done0) / (mc_now() - t_first);
    }
    if (rc) {
        fprintf(stderr, "morphcat: status: %s\n", err);
        free(e);
        return MC_EXIT_FAIL;
    }
    jobs_status tot;
    memset(&tot, 0, sizeof tot);
    double age = 0;
    int started = 0;
    for (int i = 0; i < n; i++) {
        tot.n_rows += e[i].s.n_rows;
        for (int k = 0; k < MC_ROW_NSTATUS; k++) tot.counts[k] += e[i].s.counts[k];
        if (e[i].s.age_seconds > age) age = e[i].s.age_seconds;
        started += !e[i].s.absent;
    }
    double avg = n == 1 && age > 0 ? (double)done_of(&tot) / age : -1;
    if (json) {
        printf("{\n  \"catalogues\": [\n");
        for (int i = 0; i < n; i++) print_json_one(e[i].path, &e[i].s, &e[i], i == n - 1);
        printf("  ],\n  \"total\": {\"rows\": %lld, \"done\": %lld, \"remaining\": %lld, \"failed\": %lld, "
               "\"started\": %d, \"catalogues\": %d},\n", (long long)tot.n_rows, (long long)done_of(&tot),
               (long long)tot.counts[MC_ROW_PENDING], (long long)(done_of(&tot) - tot.counts[MC_ROW_OK]), started, n);
        printf("  \"rate\": %.6g,\n  \"rate_kind\": \"%s\"\n}\n", rate >= 0 ? rate : avg >= 0 ? avg : 0.0,
               rate >= 0 ? "measured" : avg >= 0 ? "average since creation" : "unknown");
    } else {
        for (int i = 0; i < n; i++) {
            print_text(e[i].path, &e[i].s, 1);
            print_lock_text(&e[i]);
        }
        if (n > 1) print_text("total", &tot, 0);
        double r = rate >= 0 ? rate : avg;
        if (r > 0) {
            double eta = (double)tot.counts[MC_ROW_PENDING] / r;
            printf("rate: %.2f galaxies/s (%s); remaining %lld galaxies: about %.2f h at this rate\n", r,
                   rate >= 0 ? "measured now" : "average from creation to the last write, pauses included",
                   (long long)tot.counts[MC_ROW_PENDING], eta / 3600.0);
        } else if (rate == 0 && tot.counts[MC_ROW_PENDING]) {
            printf("rate: 0 galaxies/s over the last %.0f s: is the job running?\n", interval);
        }
    }
    free(e);
    return MC_EXIT_OK;
}
