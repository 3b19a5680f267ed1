/* pipeline/cmd_run.c: `morphcat run`, the catalogue job. Every rank loads the model and the manifest,
 * the catalogue is created (or reopened) collectively, then units of `batch` consecutive manifest rows are
 * shared out dynamically (pipeline/work.c); each rank's loader thread reads and preprocesses the next unit
 * while the current one runs through the encoder. Results are written into the unit's rows at once; every
 * --commit-seconds the rank fsyncs and only then writes those rows' statuses, so a row with a status is a
 * finished row, and a rerun redoes exactly the units that still have pending rows. A unit is always one
 * forward pass over the same galaxies, so redone rows get bit-identical values. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "io/npy.h"
#include "pipeline/cli.h"
#include "pipeline/lock.h"
#include "pipeline/run.h"

static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig)
{
    stop_signal = sig;
}

/* Collective verdict: every rank returns -1 when any failed; rank 0 prints the lowest failing rank's
 * message once. */
static int fail_all(MPI_Comm comm, int rc, char *err)
{
    int bad = rc != 0, any, rank;
    MPI_Comm_rank(comm, &rank);
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm);
    if (!any) return 0;
    int mine = bad ? rank : 1 << 30, first;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    MPI_Bcast(err, MC_ERR_LEN, MPI_CHAR, first, comm);
    if (rank == 0) fprintf(stderr, "morphcat: %s\n", err);
    return -1;
}

static void fmt_duration(double s, char *buf, size_t len)
{
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, len, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, len, "%lds", t);
}

/* The head's schema: named, or the one built-in schema whose answer count equals the head's. */
static int pick_schema(const mc_job *job, int head_dim, nn_schema **out, char *err)
{
    if (job->schema[0]) {
        if (nn_schema_load(job->schema, out, err)) return -1;
        if (nn_schema_n_answers(*out) != head_dim) {
            int n = nn_schema_n_answers(*out);
            nn_schema_free(*out);
            *out = NULL;
            return mc_fail(err, "%s: the model's head has %d outputs but schema %s has %d answers", job->model,
                           head_dim, job->schema, n);
        }
        return 0;
    }
    char names[1024], found[1024] = "";
    snprintf(names, sizeof names, "%s", nn_schema_names());
    int matches = 0;
    for (char *tok = strtok(names, ", "); tok; tok = strtok(NULL, ", ")) {
        nn_schema *s;
        if (nn_schema_load(tok, &s, err)) return -1;
        if (nn_schema_n_answers(s) == head_dim) {
            if (matches++ == 0) *out = s;
            else nn_schema_free(s);
            snprintf(found + strlen(found), sizeof found - strlen(found), "%s%s", matches > 1 ? ", " : "", tok);
        } else {
            nn_schema_free(s);
        }
    }
    if (matches == 1) return 0;
    if (matches > 1) {
        nn_schema_free(*out);
        *out = NULL;
        return mc_fail(err, "%s: the head has %d outputs, which fits several schemas (%s): choose one with --schema",
                       job->model, head_dim, found);
    }
    return mc_fail(err, "%s: the head has %d outputs and no built-in schema has that many answers; give --schema "
                        "FILE.json", job->model, head_dim);
}

typedef struct pending_unit {
    int64_t row0;
    int n;
    uint8_t *status;
} pending_unit;

typedef struct run_state {
    const mc_job *job;
    MPI_Comm comm;
    int rank, size;
    nn_model *model;
    const nn_model_info *mi;
    nn_schema *schema;
    int A, Q, D, K;
    float *pca_c, *pca_m; /* (K, D), (D) */
    io_manifest man;
    io_catalog *cat;
    mc_file_id cat_id; /* the catalogue file this rank opened: writes stop if the path becomes another file */
    mc_lock *lock;     /* rank 0: the output's lock; writes stop if another job broke it */
    nn_plan *plan;
    /* per-unit output rows */
    float *head, *embed, *conc, *frac, *lo, *hi, *asked, *emb_rows, *pca_rows, *q_asked;
    /* statuses written but not yet committed */
    pending_unit *pend;
    int n_pend, cap_pend;
    double last_commit, last_progress, t0;
    int64_t counts[MC_ROW_NSTATUS]; /* rows finished by this rank in this run, by status */
    int messages_printed;
    double compute_cpu; /* CPU seconds of this thread in the encoder (and detector) */
    /* the clump detector (NULL without one) and its per-unit output rows, CK slots a galaxy */
    nn_detector *det;
    mc_clump_post post;
    int CK, det_cap;
    nn_detection *dets;
    uint16_t *cl_count;
    uint8_t *cl_status, *cl_label;
    float *cl_score, *cl_box;
    double *cl_ra, *cl_dec;
    int64_t clumps_found, clump_failed;
} run_state;

static const char *const clump_classes[] = {"background", "clump", "odd_clump"};

/* Clumps for the unit's good rows. A row whose picture could not be made or detected on keeps its
 * morphology; its clump status and message say why. */
static void detect_slot(run_state *r, mc_slot *s)
{
    const int n = s->n, CK = r->CK;
    char err[MC_ERR_LEN];
    for (int i = 0; i < n * CK; i++) {
        r->cl_label[i] = 0;
        r->cl_score[i] = NAN;
        r->cl_ra[i] = r->cl_dec[i] = NAN;
    }
    for (int i = 0; i < n * CK * 4; i++) r->cl_box[i] = NAN;
    for (int i = 0; i < n; i++) {
        r->cl_count[i] = 0;
        r->cl_status[i] = MC_ROW_PENDING;
        if (s->status[i] != MC_ROW_OK) continue;
        int st = s->det_status[i], nd = 0; /* a picture that could not be made has its message already */
        if (st == MC_ROW_OK) {
            st = nn_detect(r->det, s->det_img[i], s->det_view[i].h, s->det_view[i].w, r->dets, r->det_cap, &nd, NULL,
                           NULL, err);
            if (st != MC_ROW_OK)
                snprintf(s->message + (size_t)i * IO_CAT_MSG_LEN, IO_CAT_MSG_LEN, "%s: no clumps: %s",
                         r->man.rows[s->row0 + i].id_str, err);
        }
        r->cl_status[i] = (uint8_t)st;
        if (st != MC_ROW_OK) {
            r->clump_failed++;
        } else {
            nd = mc_clump_post_apply(&r->post, &s->det_view[i], r->dets, nd);
            r->cl_count[i] = (uint16_t)nd;
            r->clumps_found += nd;
            for (int k = 0; k < nd; k++) {
                const nn_detection *d = &r->dets[k];
                size_t o = (size_t)i * CK + k;
                r->cl_label[o] = (uint8_t)d->label;
                r->cl_score[o] = d->score;
                float *b = r->cl_box + o * 4;
                b[0] = d->x1, b[1] = d->y1, b[2] = d->x2, b[3] = d->y2;
                mc_clump_radec(s->wcs[i], d, &r->cl_ra[o], &r->cl_dec[o]);
            }
        }
        io_wcs_free(s->wcs[i]);
        s->wcs[i] = NULL;
    }
}

static int commit(run_state *r, char *err)
{
    if (r->n_pend == 0) return 0;
    if (mc_file_id_check(r->job->output, &r->cat_id, err)) return -1;
    if (mc_lock_lost(r->lock))
        return mc_fail(err, "%s.lock: another job broke this job's lock (judged stale): stopping so that only one "
                            "job writes", r->job->output);
    /* a folder made read-only: the file still takes writes, but the job could not remove its lock at the end */
    if (mc_output_dir_check(r->job->output, err)) return -1;
    /* values first, made durable; only then the statuses that declare them finished */
    if (io_catalog_sync(r->cat, err)) return -1;
    for (int i = 0; i < r->n_pend; i++)
        if (io_catalog_write_status(r->cat, r->pend[i].row0, r->pend[i].n, r->pend[i].status, err)) return -1;
    r->n_pend = 0;
    r->last_commit = mc_now();
    return 0;
}

static double cpu_seconds(clockid_t which)
{
    struct timespec ts;
    if (clock_gettime(which, &ts)) return 0;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int process_slot(run_state *r, mc_slot *s, char *err)
{
    const int n = s->n, A = r->A, D = r->D, K = r->K;
    const double c0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
    if (s->n_ok > 0) nn_forward(r->plan, s->x, s->n_ok, r->embed, A ? r->head : NULL);
    if (r->det) detect_slot(r, s);
    r->compute_cpu += cpu_seconds(CLOCK_THREAD_CPUTIME_ID) - c0;
    /* scatter the good rows' results back into unit order; failed rows get NaN */
    for (int i = 0; i < n * A; i++) r->conc[i] = r->frac[i] = r->lo[i] = r->hi[i] = r->asked[i] = NAN;
    for (int i = 0; i < n * D; i++) r->emb_rows[i] = NAN;
    for (int i = 0; i < n * K; i++) r->pca_rows[i] = NAN;
    for (int k = 0; k < s->n_ok; k++) {
        int i = s->ok_rows[k];
        const float *e = r->embed + (size_t)k * r->mi->embed_dim;
        if (D) memcpy(r->emb_rows + (size_t)i * D, e, sizeof(float) * (size_t)D);
        if (A) {
            float *c = r->conc + (size_t)i * A;
            memcpy(c, r->head + (size_t)k * A, sizeof(float) * (size_t)A);
            nn_schema_summarise(r->schema, c, r->frac + (size_t)i * A, r->lo + (size_t)i * A, r->hi + (size_t)i * A,
                                r->q_asked);
            for (int a = 0; a < A; a++) r->asked[(size_t)i * A + a] = r->q_asked[nn_schema_question_of(r->schema, a)];
        }
        for (int j = 0; j < K; j++) { /* PCA: (e - mean) . component_j, in double */
            double acc = 0;
            for (int d = 0; d < r->mi->embed_dim; d++)
                acc += ((double)e[d] - (r->pca_m ? r->pca_m[d] : 0.0)) * r->pca_c[(size_t)j * r->mi->embed_dim + d];
            r->pca_rows[(size_t)i * K + j] = (float)acc;
        }
    }
    io_catalog_rows rows = {.row0 = s->row0,
                            .n = n,
                            .ra = s->ra,
                            .dec = s->dec,
                            .radec_source = s->radec_src,
                            .message = s->message,
                            .file_checksum = s->sum,
                            .conc = A ? r->conc : NULL,
                            .frac = A ? r->frac : NULL,
                            .lo90 = A ? r->lo : NULL,
                            .hi90 = A ? r->hi : NULL,
                            .asked = A ? r->asked : NULL,
                            .embed = D ? r->emb_rows : NULL,
                            .pca = K ? r->pca_rows : NULL,
                            .clump_count = r->det ? r->cl_count : NULL,
                            .clump_status = r->cl_status,
                            .clump_label = r->cl_label,
                            .clump_score = r->cl_score,
                            .clump_box = r->cl_box,
                            .clump_ra = r->cl_ra,
                            .clump_dec = r->cl_dec};
    if (io_catalog_write(r->cat, &rows, err)) return -1;
    if (r->n_pend == r->cap_pend) {
        r->cap_pend = r->cap_pend ? 2 * r->cap_pend : 64;
        r->pend = mc_realloc(r->pend, sizeof(pending_unit) * (size_t)r->cap_pend);
        for (int i = r->n_pend; i < r->cap_pend; i++) r->pend[i].status = mc_malloc((size_t)r->job->batch);
    }
    pending_unit *p = &r->pend[r->n_pend++];
    p->row0 = s->row0;
    p->n = n;
    memcpy(p->status, s->status, (size_t)n);
    for (int i = 0; i < n; i++) {
        r->counts[s->status[i]]++;
        if (s->status[i] != MC_ROW_OK) {
            if (r->messages_printed < r->job->max_messages)
                fprintf(stderr, "morphcat: rank %d: %s: %s\n", r->rank, mc_row_status_name(s->status[i]),
                        s->message + (size_t)i * IO_CAT_MSG_LEN);
            else if (r->messages_printed == r->job->max_messages)
                fprintf(stderr, "morphcat: rank %d: further failures are recorded in the catalogue only\n", r->rank);
            r->messages_printed++;
        }
    }
    return 0;
}

static void progress(run_state *r, mc_work *w, int64_t rows_todo, int final)
{
    double now = mc_now();
    if (!final && now - r->last_progress < r->job->progress_seconds) return;
    r->last_progress = now;
    double el = now - r->t0;
    mc_progress mine = {0, 0, 0};
    for (int s = 1; s < MC_ROW_NSTATUS; s++) mine.rows_done += (double)r->counts[s];
    mine.rows_failed = mine.rows_done - (double)r->counts[MC_ROW_OK];
    if (r->size <= 16)
        fprintf(stderr, "[morphcat rank %d] %.0f galaxies (%.0f failed), %.1f galaxies/s\n", r->rank, mine.rows_done,
                mine.rows_failed, el > 0 ? mine.rows_done / el : 0.0);
    if (r->rank == 0) {
        mc_progress g = mc_work_global(w, &mine);
        double rate = el > 0 ? g.rows_done / el : 0;
        char eta[32];
        fmt_duration(rate > 0 ? (rows_todo - g.rows_done) / rate : -1, eta, sizeof eta);
        fprintf(stderr, "[morphcat] %.0f of %lld galaxies this run (%.1f%%), %.0f failed, %.1f galaxies/s on %d ranks, "
                        "ETA %s\n", g.rows_done, (long long)rows_todo, rows_todo ? 100.0 * g.rows_done / rows_todo : 100.0,
                g.rows_failed, rate, r->size, eta);
    }
}

static int load_pca(run_state *r, char *err)
{
    const mc_job *job = r->job;
    if (!job->pca[0]) return 0;
    io_npy a;
    if (io_npy_open(job->pca, &a, err)) return -1;
    if (a.ndim != 2 || a.shape[1] != r->mi->embed_dim || a.shape[0] < 1) {
        io_npy_close(&a);
        return mc_fail(err, "%s: PCA components must be (K, %d) for %s's embedding", job->pca, r->mi->embed_dim,
                       r->mi->arch);
    }
    r->K = (int)a.shape[0];
    r->pca_c = mc_malloc(sizeof(float) * (size_t)r->K * r->mi->embed_dim);
    int rc = io_npy_read_rows(&a, 0, r->K, r->pca_c, err);
    io_npy_close(&a);
    if (rc || !job->pca_mean[0]) return rc;
    if (io_npy_open(job->pca_mean, &a, err)) return -1;
    if (a.ndim != 1 || a.shape[0] != r->mi->embed_dim) {
        io_npy_close(&a);
        return mc_fail(err, "%s: PCA mean must be (%d,)", job->pca_mean, r->mi->embed_dim);
    }
    r->pca_m = mc_malloc(sizeof(float) * (size_t)r->mi->embed_dim);
    a.row_floats = 1;
    rc = io_npy_read_rows(&a, 0, r->mi->embed_dim, r->pca_m, err);
    io_npy_close(&a);
    return rc;
}

static int run_job(const mc_job *job)
{
    run_state R = {0}, *r = &R;
    r->job = job;
    r->comm = MPI_COMM_WORLD;
    MPI_Comm_rank(r->comm, &r->rank);
    MPI_Comm_size(r->comm, &r->size);
    r->t0 = mc_now();
    nn_init();
    char err[MC_ERR_LEN] = "", sha[65] = "", pca_sha[65] = "";
    int exit_code = MC_EXIT_FAIL, rc;
    pp_recipe recipe;
    mc_loader *loader = NULL;
    mc_work *work = NULL;
    uint8_t *status = NULL;
    int64_t *todo = NULL;
    mc_lock *lock = NULL;

    /* ---- one job per catalogue: refused before anything is loaded or written ---- */
    if (mc_lock_acquire_all(r->comm, job->output, "run", job->lock_stale_after, &lock, "")) return MC_EXIT_FAIL;
    r->lock = lock;

    /* ---- everything that can fail the whole run fails here, before any galaxy ---- */
    rc = nn_model_load(job->model, &r->model, err);
    if (fail_all(r->comm, rc, err)) goto out;
    r->mi = nn_model_info_of(r->model);
    rc = 0;
    if (r->mi->head_kind == NN_HEAD_DIRICHLET) rc = pick_schema(job, r->mi->head_dim, &r->schema, err);
    else if (job->schema[0])
        rc = mc_fail(err, "%s: --schema given but %s has no Galaxy Zoo decision-tree head", job->model, r->mi->arch);
    if (fail_all(r->comm, rc, err)) goto out;
    r->A = r->schema ? nn_schema_n_answers(r->schema) : 0;
    r->Q = r->schema ? nn_schema_n_questions(r->schema) : 0;
    r->D = job->embed ? r->mi->embed_dim : 0;
    rc = pp_recipe_parse(job->recipe, &recipe, err);
    if (fail_all(r->comm, rc, err)) goto out;
    rc = load_pca(r, err);
    if (fail_all(r->comm, rc, err)) goto out;
    if (r->K && !job->embed) {
        rc = mc_fail(err, "--pca needs the embedding (not --embedding none)");
        if (fail_all(r->comm, rc, err)) goto out;
    }
    if (job->precision == NN_PREC_BF16) nn_model_bf16_only(r->model); /* the job's one plan is bf16 */
    rc = nn_plan_init(r->model, job->batch, job->size, job->size, job->precision, &r->plan, err);
    if (fail_all(r->comm, rc, err)) goto out;
    char det_sha[65] = "none", post_desc[256] = "none";
    if (job->detector[0]) {
        rc = mc_clump_post_parse(job->clumps, &r->post, err);
        if (!rc) {
            nn_det_config dc;
            nn_det_config_default(&dc);
            dc.bn_eps = (float)job->det_bn_eps;
            dc.precision = job->precision;
            if (r->post.max_clumps > dc.detections_per_img) dc.detections_per_img = r->post.max_clumps;
            r->det_cap = dc.detections_per_img;
            rc = nn_detector_load(job->detector, &dc, &r->det, err);
        }
        if (!rc && nn_detector_info_of(r->det)->n_classes != 3)
            rc = mc_fail(err, "%s: the detector has %d classes (background included); Clump Scout's has 3 "
                              "(background, clump, odd clump)", job->detector, nn_detector_info_of(r->det)->n_classes);
        if (!rc && r->rank == 0) rc = nn_file_sha256(nn_detector_info_of(r->det)->weight_path, det_sha, err);
        if (fail_all(r->comm, rc, err)) goto out;
        MPI_Bcast(det_sha, sizeof det_sha, MPI_CHAR, 0, r->comm);
        r->CK = r->post.max_clumps;
        mc_clump_post_describe(&r->post, post_desc, sizeof post_desc);
    }
    rc = io_manifest_read(job->manifest, &r->man, err);
    if (fail_all(r->comm, rc, err)) goto out;
    if (r->rank == 0) {
        rc = nn_file_sha256(r->mi->weight_path, sha, err);
        if (!rc && job->pca[0]) rc = nn_file_sha256(job->pca, pca_sha, err);
    }
    if (fail_all(r->comm, rc, err)) goto out;
    MPI_Bcast(sha, sizeof sha, MPI_CHAR, 0, r->comm);
    MPI_Bcast(pca_sha, sizeof pca_sha, MPI_CHAR, 0, r->comm);

    /* ---- the catalogue ---- */
    const int64_t N = r->man.n;
    const int64_t n_units = (N + job->batch - 1) / job->batch;
    char recipe_desc[1024], created[32], sizebuf[32], batchbuf[32], nrank[32], rowsbuf[32];
    pp_recipe_describe(&recipe, recipe_desc, sizeof recipe_desc);
    mc_utc_now(created, sizeof created);
    snprintf(sizebuf, sizeof sizebuf, "%d", job->size);
    snprintf(batchbuf, sizeof batchbuf, "%d", job->batch);
    snprintf(nrank, sizeof nrank, "%d", r->size);
    snprintf(rowsbuf, sizeof rowsbuf, "%lld", (long long)N);
    const char *emb = job->embed == 2 ? "float16" : job->embed ? "float32" : "none";
    io_kv ident[] = {{"manifest_sha256", r->man.sha256},
                     {"n_rows", rowsbuf},
                     {"model_sha256", sha},
                     {"model_arch", r->mi->arch},
                     {"schema", r->schema ? nn_schema_name(r->schema) : "none"},
                     {"preprocessing", recipe_desc},
                     {"input_size", sizebuf},
                     {"unit_rows", batchbuf},
                     {"embedding_dtype", emb},
                     {"pca_sha256", job->pca[0] ? pca_sha : "none"},
                     {"precision", nn_precision_name(job->precision)},
                     {"release", job->release},
                     /* the clump detector's entries exist only when the job has one (last, so they can be left
                      * out and older catalogues still reopen) */
                     {"detector_sha256", det_sha},
                     {"clump_postprocessing", post_desc}};
    io_kv info[] = {{"morphcat_version", MC_VERSION},
                    {"created_utc", created},
                    {"manifest_path", job->manifest},
                    {"model_path", job->model},
                    {"model_weight_file", r->mi->weight_path},
                    {"model_file_kind", r->mi->file_kind},
                    {"model_head", nn_head_kind_name(r->mi->head_kind)},
                    {"model_note", job->model_note},
                    {"job_configuration", job->config_text},
                    {"blas", nn_blas_describe()},
                    {"ranks_at_creation", nrank}};
    io_catalog_spec spec = {.n_rows = N,
                            .unit_rows = job->batch,
                            .id_len = r->man.max_id_len + 1,
                            .path_len = r->man.max_path_len + 1,
                            .n_answers = r->A,
                            .embed_dim = r->D,
                            .embed_half = job->embed == 2,
                            .pca_dim = r->K,
                            .release = job->release,
                            .clump_max = r->CK,
                            .n_clump_classes = 3,
                            .clump_classes = clump_classes,
                            .n_ident = (int)(sizeof ident / sizeof ident[0]) - (r->det ? 0 : 2),
                            .n_info = (int)(sizeof info / sizeof info[0]),
                            .ident = ident,
                            .info = info};
    const char **cols = NULL;
    if (r->A) {
        cols = mc_malloc(sizeof(char *) * (size_t)r->A);
        for (int a = 0; a < r->A; a++) cols[a] = nn_schema_answer_col(r->schema, a);
        spec.answer_cols = cols;
    }
    /* this rank's slice of the manifest columns, written only if the catalogue is new */
    int64_t s0 = N * r->rank / r->size, s1 = N * (r->rank + 1) / r->size;
    const char **ids = mc_malloc(sizeof(char *) * (size_t)(s1 - s0 + 1)), **files = mc_malloc(sizeof(char *) * (size_t)(s1 - s0 + 1));
    double *ra = mc_malloc(sizeof(double) * (size_t)(s1 - s0 + 1)), *dec = mc_malloc(sizeof(double) * (size_t)(s1 - s0 + 1));
    for (int64_t i = s0; i < s1; i++) {
        ids[i - s0] = r->man.rows[i].id_str;
        files[i - s0] = r->man.rows[i].path ? r->man.rows[i].path : "";
        ra[i - s0] = r->man.rows[i].ra;
        dec[i - s0] = r->man.rows[i].dec;
    }
    io_catalog_ids slice = {s0, s1 - s0, ids, files, ra, dec};
    int reopened = 0;
    rc = io_catalog_open(r->comm, job->output, &spec, &slice, &reopened, &r->cat, err);
    free(ids);
    free(files);
    free(ra);
    free(dec);
    free(cols);
    if (rc) { /* io_catalog_open agrees across ranks itself */
        if (r->rank == 0) fprintf(stderr, "morphcat: %s\n", err);
        goto out;
    }
    rc = mc_file_id_get(job->output, &r->cat_id, err);
    if (fail_all(r->comm, rc, err)) goto out;
    if (io_catalog_is_complete(r->cat)) {
        if (r->rank == 0)
            printf("morphcat: %s is complete (%lld galaxies): nothing to do\n", job->output, (long long)N);
        io_catalog_close(r->cat, err);
        r->cat = NULL;
        exit_code = MC_EXIT_OK;
        goto out;
    }

    /* ---- what is left to do: units with a pending row ---- */
    int64_t n_todo = 0, rows_todo = 0;
    if (r->rank == 0) {
        status = mc_malloc((size_t)(N > 0 ? N : 1));
        rc = reopened ? io_catalog_read_status(r->cat, status, err) : (memset(status, 0, (size_t)N), 0);
        todo = mc_malloc(sizeof(int64_t) * (size_t)(n_units > 0 ? n_units : 1));
        for (int64_t u = 0; u < n_units && !rc; u++) {
            int64_t a = u * job->batch, b = a + job->batch < N ? a + job->batch : N;
            int pend = 0;
            for (int64_t i = a; i < b; i++) pend |= status[i] == MC_ROW_PENDING;
            if (pend) {
                todo[n_todo++] = u;
                rows_todo += b - a;
            }
        }
        if (reopened && !rc)
            fprintf(stderr, "morphcat: resuming %s: %lld of %lld galaxies already done, %lld to do\n", job->output,
                    (long long)(N - rows_todo), (long long)N, (long long)rows_todo);
        else if (!rc)
            fprintf(stderr, "morphcat: %lld galaxies from %s, %s on %d rank(s); %s\n", (long long)N, job->manifest,
                    r->mi->arch, r->size, nn_blas_describe());
        if (!rc && nn_blas_advice()) fprintf(stderr, "morphcat: note: %s\n", nn_blas_advice());
    }
    if (fail_all(r->comm, rc, err)) goto out;
    MPI_Bcast(&rows_todo, 1, MPI_INT64_T, 0, r->comm);

    /* ---- the loop ---- */
    const size_t B = (size_t)job->batch;
    r->head = mc_malloc(sizeof(float) * B * (r->mi->head_dim > 0 ? r->mi->head_dim : 1));
    r->embed = mc_malloc(sizeof(float) * B * r->mi->embed_dim);
    r->conc = mc_malloc(sizeof(float) * B * (r->A ? r->A : 1));
    r->frac = mc_malloc(sizeof(float) * B * (r->A ? r->A : 1));
    r->lo = mc_malloc(sizeof(float) * B * (r->A ? r->A : 1));
    r->hi = mc_malloc(sizeof(float) * B * (r->A ? r->A : 1));
    r->asked = mc_malloc(sizeof(float) * B * (r->A ? r->A : 1));
    r->q_asked = mc_malloc(sizeof(float) * (r->Q ? r->Q : 1));
    r->emb_rows = mc_malloc(sizeof(float) * B * (r->D ? r->D : 1));
    r->pca_rows = mc_malloc(sizeof(float) * B * (r->K ? r->K : 1));
    if (r->det) {
        const size_t CK = (size_t)r->CK;
        r->dets = mc_malloc(sizeof(nn_detection) * (size_t)r->det_cap);
        r->cl_count = mc_malloc(sizeof(uint16_t) * B);
        r->cl_status = mc_malloc(B);
        r->cl_label = mc_malloc(B * CK);
        r->cl_score = mc_malloc(sizeof(float) * B * CK);
        r->cl_box = mc_malloc(sizeof(float) * B * CK * 4);
        r->cl_ra = mc_malloc(sizeof(double) * B * CK);
        r->cl_dec = mc_malloc(sizeof(double) * B * CK);
    }
    loader = mc_loader_init(&r->man, &recipe, job->hdu, job->batch, r->mi->in_chans, job->size, 2,
                            r->det ? &r->post : NULL);
    work = mc_work_init(r->comm, todo, n_todo);
    struct sigaction sa = {0};
    sa.sa_handler = on_stop_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    r->last_commit = r->last_progress = mc_now();
    MPI_Barrier(r->comm);
    const double t_loop = mc_now(); /* steady-state rate: from the first unit to the last commit */
    const double cpu_loop = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
    int no_more = 0, stopped = 0;
    rc = 0;
    for (;;) {
        if (stop_signal && !stopped) {
            stopped = 1;
            mc_work_stop(work);
            fprintf(stderr, "morphcat: rank %d: signal %d: finishing the current batch, committing, exiting\n",
                    r->rank, (int)stop_signal);
        }
        while (!no_more && !stopped && mc_loader_free_slots(loader) > 0) {
            mc_progress mine = {(double)(r->counts[MC_ROW_OK]), 0, 0};
            for (int s = 2; s < MC_ROW_NSTATUS; s++) mine.rows_failed += (double)r->counts[s];
            mine.rows_done = mine.rows_failed + mine.rows_done;
            int64_t u = mc_work_next(work, &mine);
            if (u < 0) no_more = 1;
            else mc_loader_submit(loader, u);
        }
        mc_slot *s = mc_loader_wait(loader);
        if (!s) break;
        rc = process_slot(r, s, err);
        mc_loader_release(loader, s);
        if (rc) break;
        mc_work_serve(work);
        if (mc_now() - r->last_commit >= job->commit_seconds && (rc = commit(r, err))) break;
        progress(r, work, rows_todo, 0);
    }
    if (!rc) rc = commit(r, err);
    double loop_seconds = mc_now() - t_loop, max_loop = 0;
    /* where the loop's CPU went, all ranks together: the encoder (and detector) against the rest (decoding, recipes,
     * catalogue writes, MPI), measured in the same run, so a noisy machine does not change the split much */
    double cpu_mine[2] = {cpu_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu_loop, r->compute_cpu}, cpu_tot[2] = {0, 0};
    if (rc) {
        /* a write failed (disk full?): this rank stops taking work; what it committed stays */
        fprintf(stderr, "morphcat: rank %d: %s\n", r->rank, err);
        mc_work_stop(work);
        for (mc_slot *s; (s = mc_loader_wait(loader));) mc_loader_release(loader, s);
    }
    progress(r, work, rows_todo, 1);
    mc_work_finish(work); /* rank 0 serves the others until each has been told there is no more */
    work = NULL;

    /* ---- summary ---- */
    MPI_Allreduce(&loop_seconds, &max_loop, 1, MPI_DOUBLE, MPI_MAX, r->comm);
    int64_t tot[MC_ROW_NSTATUS];
    MPI_Reduce(r->counts, tot, MC_ROW_NSTATUS, MPI_INT64_T, MPI_SUM, 0, r->comm);
    int64_t mine_rows = 0, cl_mine[2] = {r->clumps_found, r->clump_failed}, cl_tot[2] = {0, 0};
    for (int s = 1; s < MC_ROW_NSTATUS; s++) mine_rows += r->counts[s];
    MPI_Reduce(cl_mine, cl_tot, 2, MPI_INT64_T, MPI_SUM, 0, r->comm);
    MPI_Reduce(cpu_mine, cpu_tot, 2, MPI_DOUBLE, MPI_SUM, 0, r->comm);
    double wall = mc_now() - r->t0, my_rate = loop_seconds > 0 ? mine_rows / loop_seconds : 0;
    double *rates = r->rank == 0 ? mc_malloc(sizeof(double) * (size_t)r->size) : NULL;
    MPI_Gather(&my_rate, 1, MPI_DOUBLE, rates, 1, MPI_DOUBLE, 0, r->comm);
    int any_rc = rc != 0, all_rc = 0, any_stop = stopped, all_stop = 0;
    MPI_Allreduce(&any_rc, &all_rc, 1, MPI_INT, MPI_MAX, r->comm);
    MPI_Allreduce(&any_stop, &all_stop, 1, MPI_INT, MPI_MAX, r->comm);
    /* catalogue-wide state after this run: the status column itself */
    MPI_Barrier(r->comm);
    int64_t cat_counts[MC_ROW_NSTATUS] = {0};
    if (r->rank == 0) {
        if (io_catalog_read_status(r->cat, status, err) == 0)
            for (int64_t i = 0; i < N; i++) cat_counts[status[i] < MC_ROW_NSTATUS ? status[i] : 0]++;
        else
            cat_counts[0] = N;
    }
    MPI_Bcast(cat_counts, MC_ROW_NSTATUS, MPI_INT64_T, 0, r->comm);
    int complete = cat_counts[MC_ROW_PENDING] == 0;
    char counts_txt[512] = "";
    for (int s = 0; s < MC_ROW_NSTATUS; s++)
        snprintf(counts_txt + strlen(counts_txt), sizeof counts_txt - strlen(counts_txt), "%s%s %lld", s ? ", " : "",
                 mc_row_status_name(s), (long long)cat_counts[s]);
    /* after a failed write the line above said why; closing then fails for the same reason */
    if (io_catalog_close(r->cat, err) && r->rank == 0 && !all_rc) fprintf(stderr, "morphcat: %s\n", err);
    r->cat = NULL;
    if (r->rank == 0) {
        int64_t run_rows = 0;
        for (int s = 1; s < MC_ROW_NSTATUS; s++) run_rows += tot[s];
        printf("morphcat: this run: %lld galaxies in %.1f s (%.1f galaxies/s on %d rank(s); steady %.1f galaxies/s "
               "after start-up):", (long long)run_rows, wall, wall > 0 ? run_rows / wall : 0.0, r->size,
               max_loop > 0 ? run_rows / max_loop : 0.0);
        for (int s = 1; s < MC_ROW_NSTATUS; s++)
            if (tot[s]) printf(" %s %lld", mc_row_status_name(s), (long long)tot[s]);
        if (r->det)
            printf("\nmorphcat: clumps: %lld found, %lld galaxies without a detection pass (reasons in their messages)",
                   (long long)cl_tot[0], (long long)cl_tot[1]);
        if (cpu_tot[0] > 0)
            printf("\nmorphcat: CPU after start-up: %.1f s, %.1f s (%.1f%%) of it in the %s; the rest decoding, recipes "
                   "and catalogue writes", cpu_tot[0], cpu_tot[1], 100 * cpu_tot[1] / cpu_tot[0],
                   r->det ? "encoder and detector" : "encoder");
        printf("\nmorphcat: per rank galaxies/s:");
        for (int i = 0; i < r->size && i < 64; i++) printf(" %.1f", rates[i]);
        printf("%s\nmorphcat: catalogue %s: %s%s\n", r->size > 64 ? " ..." : "", job->output, counts_txt,
               complete ? " (complete)" : " (incomplete: rerun the same command to resume)");
        fflush(stdout);
    }
    free(rates);
    exit_code = all_rc ? MC_EXIT_FAIL : (all_stop && !complete) ? MC_EXIT_STOPPED : MC_EXIT_OK;
out:
    if (work) mc_work_finish(work);
    mc_loader_free(loader);
    if (r->cat) io_catalog_close(r->cat, err);
    for (int i = 0; i < r->cap_pend; i++) free(r->pend[i].status);
    free(r->pend);
    free(status);
    free(todo);
    free(r->head);
    free(r->embed);
    free(r->conc);
    free(r->frac);
    free(r->lo);
    free(r->hi);
    free(r->asked);
    free(r->q_asked);
    free(r->emb_rows);
    free(r->pca_rows);
    free(r->pca_c);
    free(r->pca_m);
    nn_plan_free(r->plan);
    io_manifest_free(&r->man);
    nn_schema_free(r->schema);
    nn_model_free(r->model);
    nn_detector_free(r->det);
    free(r->dets);
    free(r->cl_count);
    free(r->cl_status);
    free(r->cl_label);
    free(r->cl_score);
    free(r->cl_box);
    free(r->cl_ra);
    free(r->cl_dec);
    if (mc_lock_release(lock) && exit_code != MC_EXIT_FAIL)
        fprintf(stderr, "morphcat: warning: %s.lock: cannot remove the lock file (%s): the next job on this output "
                        "breaks it as stale\n", job->output, strerror(errno));
    return exit_code;
}

int mc_run_args(int argc, char **argv)
{
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    mc_job job;
    char err[MC_ERR_LEN];
    int rc = mc_job_parse(argc, argv, &job, err);
    if (rc == 0) {
        rc = run_job(&job);
    } else if (rc == 1) {
        rc = MC_EXIT_OK;
    } else {
        if (rank == 0) fprintf(stderr, "morphcat: %s\n", err);
        rc = MC_EXIT_USAGE;
    }
    return rc;
}

int cmd_run(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    int rc = mc_run_args(argc, argv);
    /* a catalogue left unclosed (its file system went read-only): HDF5 1.10's clean-up in MPI_Finalize would
     * crash on it, so every rank ends here, its output flushed, as a stopped job */
    int abandoned = io_catalog_abandoned(), any = 0;
    MPI_Allreduce(&abandoned, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any) {
        fflush(NULL);
        _exit(rc ? rc : MC_EXIT_FAIL);
    }
    MPI_Finalize();
    return rc;
}
