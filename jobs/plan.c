/* jobs/plan.c: `morphcat plan`: splits a manifest into chunks, one Slurm array task each, sized from a measured
 * per-core rate so a task fits its time limit, and prints the node-hours the survey will cost. Chunks hold
 * whole work units (multiples of --batch), so a chunked survey gives the values an unchunked run gives.
 * Not here: submitting anything (slurm/), measuring the rate (morphcat run prints it). */
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobs/jobs.h"

int jobs_plan_make(int64_t n_rows, const jobs_plan_opts *o, jobs_plan *p, char *err)
{
    memset(p, 0, sizeof *p);
    if (!(o->rate > 0)) return mc_fail(err, "--rate must be > 0 galaxies/s per core (morphcat run prints it)");
    if (o->nodes < 1 || o->cores_per_node < 1 || o->nodes_per_task < 1 || o->batch < 1)
        return mc_fail(err, "--nodes, --cores-per-node, --nodes-per-task and --batch must be >= 1");
    if (o->nodes_per_task > o->nodes)
        return mc_fail(err, "--nodes-per-task %d is more than --nodes %d", o->nodes_per_task, o->nodes);
    if (!(o->task_hours > 0) && o->chunk_rows <= 0) return mc_fail(err, "--task-hours must be > 0");
    p->n_rows = n_rows;
    p->task_rate = o->rate * o->cores_per_node * o->nodes_per_task;
    int slots = o->nodes / o->nodes_per_task; /* tasks that can run at once */
    int64_t b = o->batch, chunk;
    if (o->chunk_rows > 0) {
        chunk = (o->chunk_rows + b - 1) / b * b;
    } else {
        chunk = (int64_t)(p->task_rate * o->task_hours * 3600.0) / b * b;
        /* a survey smaller than one wave of tasks: spread it so every node works */
        int64_t even = (n_rows + slots - 1) / slots;
        even = (even + b - 1) / b * b;
        if (even < chunk) chunk = even;
    }
    if (chunk < b) chunk = b;
    p->chunk_rows = chunk;
    p->n_chunks = n_rows > 0 ? (n_rows + chunk - 1) / chunk : 0;
    p->concurrent = (int)(p->n_chunks < slots ? p->n_chunks : slots);
    if (p->concurrent < 1) p->concurrent = 1;
    p->task_seconds = (double)chunk / p->task_rate + o->startup_seconds;
    /* finishing the batch in hand on one core, then an fsync: ten batches' time, at least two minutes */
    double batch_s = (double)o->batch / o->rate;
    p->signal_seconds = (int)ceil(fmax(120.0, 10.0 * batch_s));
    /* ask for 1.5x the expected time (rates vary with the data and the node), plus the signal margin */
    p->time_limit = ceil((1.5 * p->task_seconds + p->signal_seconds) / 60.0) * 60.0;
    p->node_hours_compute = (double)n_rows / (o->rate * o->cores_per_node) / 3600.0;
    p->node_hours = p->node_hours_compute + (double)p->n_chunks * o->nodes_per_task * o->startup_seconds / 3600.0;
    p->wall_hours = p->node_hours / ((double)p->concurrent * o->nodes_per_task);
    return 0;
}

static void fmt_slurm_time(double s, char *buf, size_t len)
{
    long t = (long)ceil(s);
    long d = t / 86400, h = t / 3600 % 24, m = t / 60 % 60, sec = t % 60;
    if (d) snprintf(buf, len, "%ld-%02ld:%02ld:%02ld", d, h, m, sec);
    else snprintf(buf, len, "%02ld:%02ld:%02ld", h, m, sec);
}

void jobs_plan_print(FILE *f, const jobs_plan *p, const jobs_plan_opts *o)
{
    char tl[32];
    fmt_slurm_time(p->time_limit, tl, sizeof tl);
    fprintf(f, "plan: %lld galaxies at %.3g galaxies/s per core, %d cores per node\n", (long long)p->n_rows, o->rate,
            o->cores_per_node);
    fprintf(f, "  chunks: %lld of %lld rows (multiples of --batch %d), one array task each on %d node(s) "
               "(%d ranks)\n", (long long)p->n_chunks, (long long)p->chunk_rows, o->batch, o->nodes_per_task,
            o->nodes_per_task * o->cores_per_node);
    fprintf(f, "  per task: %.1f galaxies/s, %.2f h expected (%.0f s start-up); request --time=%s "
               "--signal=B:USR1@%d\n", p->task_rate, p->task_seconds / 3600.0, o->startup_seconds, tl,
            p->signal_seconds);
    fprintf(f, "  at once: %d task(s) on %d node(s): about %.2f h of wall time\n", p->concurrent,
            p->concurrent * o->nodes_per_task, p->wall_hours);
    fprintf(f, "  node-hours: %.2f (%.2f computing, %.2f start-up)\n", p->node_hours, p->node_hours_compute,
            p->node_hours - p->node_hours_compute);
    if (p->n_chunks > 1001)
        fprintf(f, "  note: %lld array tasks exceed Slurm's default MaxArraySize (1001): raise --task-hours, or "
                   "ask the site's limit\n", (long long)p->n_chunks);
}

/* Rows of the manifest into chunk files as they are read: chunk c holds rows [c * chunk_rows, ...). */
typedef struct {
    const char *dir;
    const jobs_plan *p;
    jobs_manifest_writer *w;
    int failed, more; /* a chunk file could not be written (err says why); more rows than counted */
    char *err;
} chunk_out;

static int chunk_row(void *ctx, int64_t index, int64_t line, const io_manifest_row *r)
{
    (void)line;
    chunk_out *c = ctx;
    if (index >= c->p->n_rows) return c->more = 1;
    if (index % c->p->chunk_rows == 0) {
        char path[4200];
        jobs_manifest_writer *w = c->w;
        c->w = NULL;
        if (jobs_manifest_writer_close(w, c->err)) return c->failed = 1;
        snprintf(path, sizeof path, "%s/chunks/chunk_%05lld.csv", c->dir, (long long)(index / c->p->chunk_rows));
        if (jobs_manifest_writer_open(path, &c->w, c->err)) return c->failed = 1;
    }
    jobs_manifest_writer_row(c->w, r);
    return 0;
}

int jobs_plan_write(const char *dir, const io_manifest_info *info, const jobs_plan *p, const jobs_plan_opts *o,
                    char *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/chunks", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return mc_fail(err, "%s: cannot create (%s)", dir, strerror(errno));
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return mc_fail(err, "%s: cannot create (%s)", path, strerror(errno));
    struct stat sb; /* the manifest is read a second time: a pipe would be empty by now */
    if (stat(info->path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode))
        return mc_fail(err, "%s: not a regular file or folder: plan --out reads the manifest twice (once to count "
                            "and check, once to write the chunks); save it to a file first", info->path);
    chunk_out co = {.dir = dir, .p = p, .err = err};
    io_manifest_info again;
    int rc = io_manifest_scan(info->path, NULL, chunk_row, &co, &again, err) || co.failed;
    if (!rc && (co.more || again.n != info->n || strcmp(again.sha256, info->sha256))) {
        jobs_manifest_writer_close(co.w, NULL);
        return mc_fail(err, "%s: changed while being planned (%lld rows, sha256 %.16s... when first read): plan it "
                            "again", info->path, (long long)info->n, info->sha256);
    }
    if (rc) {
        jobs_manifest_writer_close(co.w, NULL);
        return -1;
    }
    if (jobs_manifest_writer_close(co.w, err)) return -1;
    /* chunks.tsv, then plan.env last: a plan whose plan.env exists is whole */
    snprintf(path, sizeof path, "%s/chunks.tsv", dir);
    FILE *f = fopen(path, "w");
    if (!f) return mc_fail(err, "%s: cannot write (%s)", path, strerror(errno));
    fprintf(f, "chunk\tfirst_row\trows\n");
    for (int64_t c = 0; c < p->n_chunks; c++) {
        int64_t a = c * p->chunk_rows, b = a + p->chunk_rows < p->n_rows ? a + p->chunk_rows : p->n_rows;
        fprintf(f, "%lld\t%lld\t%lld\n", (long long)c, (long long)a, (long long)(b - a));
    }
    if (fclose(f) != 0) return mc_fail(err, "%s: write failed", path);
    char tl[32];
    fmt_slurm_time(p->time_limit, tl, sizeof tl);
    snprintf(path, sizeof path, "%s/plan.env", dir);
    f = fopen(path, "w");
    if (!f) return mc_fail(err, "%s: cannot write (%s)", path, strerror(errno));
    fprintf(f, "# written by morphcat plan; read by slurm/submit.sh and the sbatch scripts\n");
    fputs("MC_PLAN_MANIFEST='", f); /* single-quoted for sh, a quote inside as '\'' */
    for (const char *q = info->path; *q; q++) *q == '\'' ? (void)fputs("'\\''", f) : (void)fputc(*q, f);
    fprintf(f, "'\nMC_PLAN_MANIFEST_SHA256=%s\n", info->sha256);
    fprintf(f, "MC_PLAN_ROWS=%lld\nMC_PLAN_CHUNKS=%lld\nMC_PLAN_CHUNK_ROWS=%lld\nMC_PLAN_BATCH=%d\n", (long long)p->n_rows,
            (long long)p->n_chunks, (long long)p->chunk_rows, o->batch);
    fprintf(f, "MC_PLAN_ARRAY=0-%lld%%%d\n", (long long)(p->n_chunks > 0 ? p->n_chunks - 1 : 0), p->concurrent);
    fprintf(f, "MC_PLAN_NODES_PER_TASK=%d\nMC_PLAN_TASKS_PER_NODE=%d\nMC_PLAN_TIME=%s\nMC_PLAN_SIGNAL_SECONDS=%d\n",
            o->nodes_per_task, o->cores_per_node, tl, p->signal_seconds);
    fprintf(f, "MC_PLAN_RATE=%g\nMC_PLAN_NODE_HOURS=%.3f\n", o->rate, p->node_hours);
    if (fclose(f) != 0) return mc_fail(err, "%s: write failed", path);
    return 0;
}

int jobs_plan_read(const char *dir, int64_t **rows, int64_t *n_chunks, char *err)
{
    char path[4200], line[256];
    snprintf(path, sizeof path, "%s/chunks.tsv", dir);
    FILE *f = fopen(path, "r");
    if (!f) return mc_fail(err, "%s: cannot read (%s): is %s a morphcat plan folder?", path, strerror(errno), dir);
    int64_t cap = 64, n = 0;
    *rows = mc_malloc(sizeof(int64_t) * (size_t)cap);
    while (fgets(line, sizeof line, f)) {
        long long c, a, r;
        if (sscanf(line, "%lld\t%lld\t%lld", &c, &a, &r) != 3) continue; /* the header */
        if (c != n) {
            fclose(f);
            free(*rows);
            return mc_fail(err, "%s: chunk %lld out of order", path, c);
        }
        if (n == cap) *rows = mc_realloc(*rows, sizeof(int64_t) * (size_t)(cap *= 2));
        (*rows)[n++] = r;
    }
    fclose(f);
    *n_chunks = n;
    return 0;
}
