/* pipeline/cmd_rerun.c: `morphcat rerun`, a data-release rerun in three resumable stages kept in OUTPUT.rerun/:
 * (1) select: every rank checksums its slice of the new manifest's files, rank 0 compares them with the
 *     previous release catalogue (jobs/rerun.c) and writes the rows to recompute as todo.csv (plus carry.i64,
 *     then select.stamp last);
 * (2) run: the ordinary catalogue job on todo.csv into delta.h5 under the new release (resumable as ever);
 * (3) merge: rank 0 writes OUTPUT in the new manifest's order, carried rows copied from the previous catalogue
 *     with their release, the rest from delta.h5 (jobs/merge.c), then writes done.
 * Rerunning the same command after any interruption continues from the first unfinished stage. */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobs/jobs.h"
#include "pipeline/cli.h"
#include "pipeline/lock.h"
#include "pipeline/run.h"

static void rerun_usage(FILE *f)
{
    fprintf(f,
            "usage: [mpirun -n N] morphcat rerun --previous OLD.h5 --manifest NEW.csv --release NAME\n"
            "                     --output NEW.h5 --model PATH [morphcat run options]\n\n"
            "A data-release rerun: computes only the galaxies of NEW.csv that OLD.h5 lacks or whose cutout\n"
            "file changed (XXH3-128 of its bytes against OLD.h5's file_xxh3), and writes NEW.h5 with every row\n"
            "of NEW.csv in its order: unchanged finished rows copied from OLD.h5 keeping the release that\n"
            "computed them, the others computed now under --release NAME. Galaxies of OLD.h5 absent from\n"
            "NEW.csv are left out. The model, recipe, size, embedding and PCA must be OLD.h5's (refused\n"
            "otherwise). Work files live in NEW.h5.rerun/ (the list to recompute and its catalogue); rerun\n"
            "the same command after an interruption to continue. Other options are morphcat run's.\n\n"
            "Exit status: 0 done; 1 nothing done (one line on stderr); 4 stopped by a signal: rerun to resume.\n");
}

typedef struct rerun_args {
    const char *previous, *manifest, *output, *release;
    char **fwd; /* the run options passed through */
    int n_fwd;
} rerun_args;

static int take_value(int argc, char **argv, int *i, const char *name, const char **out)
{
    size_t n = strlen(name);
    if (!strncmp(argv[*i], name, n) && argv[*i][n] == '=') {
        *out = argv[*i] + n + 1;
        return 1;
    }
    if (!strcmp(argv[*i], name) && *i + 1 < argc) {
        *out = argv[++*i];
        return 1;
    }
    return 0;
}

static void parse_args(int argc, char **argv, rerun_args *a)
{
    memset(a, 0, sizeof *a);
    a->fwd = mc_malloc(sizeof(char *) * (size_t)(argc + 8));
    for (int i = 1; i < argc; i++) {
        if (take_value(argc, argv, &i, "--previous", &a->previous)) continue;
        if (take_value(argc, argv, &i, "--manifest", &a->manifest)) continue;
        if (take_value(argc, argv, &i, "--output", &a->output)) continue;
        if (take_value(argc, argv, &i, "--release", &a->release)) continue;
        a->fwd[a->n_fwd++] = argv[i];
    }
}

/* The identity attributes this job would give its catalogue, compared with the previous release's. */
static int check_compatible(const mc_job *job, const char *previous, char *err)
{
    jobs_cat *c;
    if (jobs_cat_open(previous, &c, err)) return -1;
    nn_model *model = NULL;
    char sha[65] = "", want[2048], have[2048];
    int rc = nn_model_load(job->model, &model, err);
    if (!rc) rc = nn_file_sha256(nn_model_info_of(model)->weight_path, sha, err);
    pp_recipe recipe;
    if (!rc) rc = pp_recipe_parse(job->recipe, &recipe, err);
    struct {
        const char *key;
        char value[1024];
    } ids[8];
    int n = 0;
    if (!rc) {
        snprintf(ids[n].value, sizeof ids[n].value, "%s", sha);
        ids[n++].key = "model_sha256";
        pp_recipe_describe(&recipe, ids[n].value, sizeof ids[n].value);
        ids[n++].key = "preprocessing";
        snprintf(ids[n].value, sizeof ids[n].value, "%d", job->size);
        ids[n++].key = "input_size";
        snprintf(ids[n].value, sizeof ids[n].value, "%s", job->embed == 2 ? "float16" : job->embed ? "float32" : "none");
        ids[n++].key = "embedding_dtype";
        if (job->pca[0]) rc = nn_file_sha256(job->pca, ids[n].value, err);
        else snprintf(ids[n].value, sizeof ids[n].value, "none");
        ids[n++].key = "pca_sha256";
        snprintf(ids[n].value, sizeof ids[n].value, "%s", nn_precision_name(job->precision));
        ids[n++].key = "precision";
        /* the clump detector: the same weights and post-processing, or none on both sides (a catalogue made
         * without a detector has no such attributes) */
        if (!rc && job->detector[0]) {
            nn_det_config dc;
            nn_det_config_default(&dc);
            dc.precision = job->precision;
            mc_clump_post post;
            nn_detector *det = NULL;
            rc = mc_clump_post_parse(job->clumps, &post, err);
            if (!rc) rc = nn_detector_load(job->detector, &dc, &det, err);
            if (!rc) rc = nn_file_sha256(nn_detector_info_of(det)->weight_path, ids[n].value, err);
            nn_detector_free(det);
            ids[n++].key = "detector_sha256";
            mc_clump_post_describe(&post, ids[n].value, sizeof ids[n].value);
            ids[n++].key = "clump_postprocessing";
        } else if (!rc) {
            jobs_cat_attr(c, "detector_sha256", have, sizeof have);
            if (have[0] && strcmp(have, "none"))
                rc = mc_fail(err, "%s: was made with a clump detector (detector_sha256 %.64s) but this rerun has none: "
                                  "give the same --detector and --clumps", previous, have);
        }
    }
    for (int i = 0; i < n && !rc; i++) {
        snprintf(want, sizeof want, "%s", ids[i].value);
        jobs_cat_attr(c, ids[i].key, have, sizeof have);
        if (strcmp(want, have))
            rc = mc_fail(err, "%s: its %s is '%.200s' but this rerun's is '%.200s': a release rerun must use the "
                              "previous release's model and options (or start a new catalogue with morphcat run)",
                         previous, ids[i].key, have, want);
    }
    nn_model_free(model);
    jobs_cat_close(c);
    return rc;
}

static int write_file(const char *path, const void *data, size_t n, char *err)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return mc_fail(err, "%s: cannot write (%s)", tmp, strerror(errno));
    int bad = fwrite(data, 1, n, f) != n;
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return mc_fail(err, "%s: write failed (disk full?)", path);
    }
    return 0;
}

/* Whole small file into a NUL-terminated buffer, or NULL. */
static char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = mc_malloc((size_t)(len > 0 ? len : 0) + 1);
    size_t got = len > 0 ? fread(b, 1, (size_t)len, f) : 0;
    fclose(f);
    b[got] = 0;
    if (n) *n = got;
    return b;
}

static int rerun_job(const rerun_args *a)
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char err[MC_ERR_LEN] = "", work[4200], path[4400], stamp_path[4400], done_path[4400];
    int rc = 0;
    /* the run options, checked now: a typo must not cost a checksum pass */
    char **argv2 = mc_malloc(sizeof(char *) * (size_t)(a->n_fwd + 16));
    int argc2 = 0;
    argv2[argc2++] = "run";
    for (int i = 0; i < a->n_fwd; i++) argv2[argc2++] = a->fwd[i];
    snprintf(work, sizeof work, "%s.rerun", a->output);
    char todo_path[4400], delta_path[4400], carry_path[4400];
    snprintf(todo_path, sizeof todo_path, "%s/todo.csv", work);
    snprintf(delta_path, sizeof delta_path, "%s/delta.h5", work);
    snprintf(carry_path, sizeof carry_path, "%s/carry.i64", work);
    snprintf(stamp_path, sizeof stamp_path, "%s/select.stamp", work);
    snprintf(done_path, sizeof done_path, "%s/done", work);
    argv2[argc2++] = "--manifest";
    argv2[argc2++] = todo_path;
    argv2[argc2++] = "--output";
    argv2[argc2++] = delta_path;
    argv2[argc2++] = "--release";
    argv2[argc2++] = (char *)a->release;
    argv2[argc2] = NULL;
    mc_job job;
    if (mc_job_parse(argc2, argv2, &job, err)) {
        if (rank == 0) fprintf(stderr, "morphcat: rerun: %s\n", err);
        free(argv2);
        return MC_EXIT_USAGE;
    }
    /* ---- the new manifest and what identifies this rerun ---- */
    io_manifest m = {0};
    rc = io_manifest_read(a->manifest, &m, err);
    char stamp[8192] = "";
    if (!rc) {
        struct stat st;
        if (stat(a->previous, &st) != 0) rc = mc_fail(err, "%s: %s", a->previous, strerror(errno));
        int len = snprintf(stamp, sizeof stamp, "manifest_sha256 %s\nprevious %s %lld %lld\nrelease %s\noptions",
                           m.sha256, a->previous, (long long)st.st_size, (long long)st.st_mtime, a->release);
        for (int i = 0; i < a->n_fwd && len < (int)sizeof stamp - 200; i++)
            len += snprintf(stamp + len, sizeof stamp - (size_t)len, " %s", a->fwd[i]);
        snprintf(stamp + len, sizeof stamp - (size_t)len, "\n");
    }
    int stage = 0; /* 0 select, 1 run, 2 merge, 3 done */
    if (rank == 0 && !rc) {
        char *s = read_file(done_path, NULL);
        struct stat st;
        if (s && !strcmp(s, stamp) && stat(a->output, &st) == 0) stage = 3;
        free(s);
        if (stage < 3) {
            s = read_file(stamp_path, NULL);
            if (s && !strcmp(s, stamp)) stage = 1;
            free(s);
        }
        if (stage == 0) rc = check_compatible(&job, a->previous, err);
        if (!rc && stage == 0 && mkdir(work, 0755) != 0 && errno != EEXIST)
            rc = mc_fail(err, "%s: cannot create (%s)", work, strerror(errno));
    }
    int bad = rc != 0;
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Bcast(err, MC_ERR_LEN, MPI_CHAR, 0, MPI_COMM_WORLD);
    MPI_Bcast(&stage, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (bad) {
        if (rank == 0) fprintf(stderr, "morphcat: rerun: %s\n", err);
        io_manifest_free(&m);
        free(argv2);
        return MC_EXIT_FAIL;
    }
    if (stage == 3) {
        if (rank == 0) printf("morphcat: rerun: %s is complete: nothing to do\n", a->output);
        io_manifest_free(&m);
        free(argv2);
        return MC_EXIT_OK;
    }
    /* ---- (1) select: checksums in parallel, the decision on rank 0 ---- */
    int64_t *carry = NULL, n_todo = 0;
    if (stage == 0) {
        double t0 = mc_now();
        int64_t s0 = m.n * rank / size, s1 = m.n * (rank + 1) / size;
        char *mine = mc_calloc((size_t)(s1 - s0 + 1), IO_CAT_SUM_LEN), cerr[MC_ERR_LEN];
        for (int64_t i = s0; i < s1; i++)
            if (!m.rows[i].bad && io_file_checksum(m.rows[i].path, mine + (size_t)(i - s0) * IO_CAT_SUM_LEN, cerr))
                mine[(size_t)(i - s0) * IO_CAT_SUM_LEN] = 0;
        int *counts = NULL, *displs = NULL, cnt = (int)((s1 - s0) * IO_CAT_SUM_LEN);
        char *sums = NULL;
        if (rank == 0) {
            counts = mc_malloc(sizeof(int) * (size_t)size);
            displs = mc_malloc(sizeof(int) * (size_t)size);
            sums = mc_calloc((size_t)(m.n + 1), IO_CAT_SUM_LEN);
        }
        MPI_Gather(&cnt, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (rank == 0)
            for (int r = 0, off = 0; r < size; r++) {
                displs[r] = off;
                off += counts[r];
            }
        MPI_Gatherv(mine, cnt, MPI_CHAR, sums, counts, displs, MPI_CHAR, 0, MPI_COMM_WORLD);
        free(mine);
        if (rank == 0) {
            jobs_rerun_stats st;
            int64_t *todo = NULL;
            carry = mc_malloc(sizeof(int64_t) * (size_t)(m.n + 1));
            rc = jobs_rerun_select(a->previous, &m, sums, carry, &todo, &n_todo, &st, err);
            if (!rc) {
                /* a stale delta of an earlier selection would be refused by the run: start it afresh */
                unlink(delta_path);
                snprintf(path, sizeof path, "%s.creating", delta_path);
                unlink(path);
                unlink(done_path);
                rc = jobs_manifest_write(todo_path, &m, todo, n_todo, err);
            }
            if (!rc) rc = write_file(carry_path, carry, sizeof(int64_t) * (size_t)m.n, err);
            if (!rc) rc = write_file(stamp_path, stamp, strlen(stamp), err);
            if (!rc)
                printf("morphcat: rerun: %lld galaxies in %s (checksums on %d rank(s) in %.1f s): carried from %s: "
                       "%lld ok, %lld failed; to compute under %s: %lld new, %lld changed, %lld unfinished before, "
                       "%lld bad manifest rows; %lld of the previous catalogue's galaxies are not in the new "
                       "manifest\n", (long long)st.rows, a->manifest, size, mc_now() - t0, a->previous,
                       (long long)st.carried_ok, (long long)st.carried_failed, a->release, (long long)st.new_rows,
                       (long long)st.changed, (long long)st.redo_pending, (long long)st.redo_bad_row,
                       (long long)st.dropped);
            fflush(stdout);
            free(todo);
        }
        free(sums);
        free(counts);
        free(displs);
        bad = rc != 0;
        MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (bad) {
            if (rank == 0) fprintf(stderr, "morphcat: rerun: %s\n", err);
            free(carry);
            io_manifest_free(&m);
            free(argv2);
            return MC_EXIT_FAIL;
        }
    }
    /* ---- (2) run: the ordinary job on the rows to recompute ---- */
    if (rank == 0) {
        size_t nb = 0;
        free(carry);
        carry = (int64_t *)read_file(carry_path, &nb);
        rc = !carry || nb != sizeof(int64_t) * (size_t)m.n ? mc_fail(err, "%s: unreadable or of the wrong size: "
                                                                          "remove %s and rerun", carry_path, work)
                                                          : 0;
        n_todo = 0;
        for (int64_t i = 0; !rc && i < m.n; i++) n_todo += carry[i] < 0;
    }
    bad = rc != 0;
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Bcast(&n_todo, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
    int exit_code = MC_EXIT_OK;
    if (bad) {
        if (rank == 0) fprintf(stderr, "morphcat: rerun: %s\n", err);
        exit_code = MC_EXIT_FAIL;
    } else if (n_todo > 0) {
        exit_code = mc_run_args(argc2, argv2);
    }
    /* ---- (3) merge on rank 0: the new manifest's order, carried rows first-hand from the previous release ---- */
    if (exit_code == MC_EXIT_OK && rank == 0) {
        double t0 = mc_now();
        jobs_pick *picks = mc_malloc(sizeof(jobs_pick) * (size_t)(m.n + 1));
        int64_t k = 0;
        for (int64_t i = 0; i < m.n; i++) picks[i] = carry[i] >= 0 ? (jobs_pick){0, carry[i]} : (jobs_pick){1, k++};
        const char *inputs[2] = {a->previous, delta_path};
        /* the delta's rows must be the manifest's recomputed rows, in order */
        if (n_todo > 0) {
            jobs_cat *c;
            char *ids = NULL;
            size_t w = 0;
            rc = jobs_cat_open(delta_path, &c, err);
            if (!rc) {
                rc = jobs_cat_read_strings(c, "galaxies/id_str", &ids, &w, err);
                jobs_cat_close(c);
            }
            for (int64_t i = 0, j = 0; !rc && i < m.n; i++)
                if (carry[i] < 0 && strcmp(ids + (size_t)(j++) * w, m.rows[i].id_str ? m.rows[i].id_str : ""))
                    rc = mc_fail(err, "%s does not hold the rows of %s: remove %s and rerun", delta_path, todo_path,
                                 work);
            free(ids);
        }
        char nrows[32], created[32], summary[256];
        snprintf(nrows, sizeof nrows, "%lld", (long long)m.n);
        mc_utc_now(created, sizeof created);
        snprintf(summary, sizeof summary, "%lld carried from the previous catalogue, %lld computed under %s",
                 (long long)(m.n - n_todo), (long long)n_todo, a->release);
        io_kv set[] = {{"n_rows", nrows},           {"release", a->release},   {"manifest_sha256", m.sha256},
                       {"manifest_path", a->manifest}, {"created_utc", created}, {"rerun_of", a->previous},
                       {"rerun_summary", summary}};
        if (!rc)
            rc = jobs_merge_picks(inputs, n_todo > 0 ? 2 : 1, picks, m.n, a->output, set,
                                  (int)(sizeof set / sizeof set[0]), err);
        if (!rc) rc = write_file(done_path, stamp, strlen(stamp), err);
        if (!rc)
            printf("morphcat: rerun: %s: %lld galaxies (%s) in %.1f s\n", a->output, (long long)m.n, summary,
                   mc_now() - t0);
        else
            fprintf(stderr, "morphcat: rerun: %s\n", err);
        fflush(stdout);
        free(picks);
        if (rc) exit_code = MC_EXIT_FAIL;
    }
    MPI_Bcast(&exit_code, 1, MPI_INT, 0, MPI_COMM_WORLD);
    free(carry);
    io_manifest_free(&m);
    free(argv2);
    return exit_code;
}

int cmd_rerun(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        rerun_usage(stdout);
        return MC_EXIT_OK;
    }
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    rerun_args a;
    parse_args(argc, argv, &a);
    int rc;
    if (!a.previous || !a.manifest || !a.output || !a.release || !a.release[0]) {
        if (rank == 0) fprintf(stderr, "morphcat: rerun: --previous, --manifest, --output and --release are required "
                                       "(morphcat rerun --help)\n");
        rc = MC_EXIT_USAGE;
    } else if (!strcmp(a.previous, a.output)) {
        if (rank == 0) fprintf(stderr, "morphcat: rerun: --output must differ from --previous (the previous release "
                                       "stays as it is)\n");
        rc = MC_EXIT_USAGE;
    } else {
        /* one rerun per output; its delta job then locks delta.h5 as any run does */
        double stale = MC_LOCK_STALE_DEFAULT;
        for (int i = 0; i + 1 < a.n_fwd; i++)
            if (!strcmp(a.fwd[i], "--lock-stale-after") && atof(a.fwd[i + 1]) > 0) stale = atof(a.fwd[i + 1]);
        mc_lock *lock;
        if (mc_lock_acquire_all(MPI_COMM_WORLD, a.output, "rerun", stale, &lock, "rerun: ")) {
            rc = MC_EXIT_FAIL;
        } else {
            rc = rerun_job(&a);
            mc_lock_release(lock);
        }
    }
    free(a.fwd);
    MPI_Finalize();
    return rc;
}
