/* jobs/jobs.h: survey-scale jobs around the catalogue: planning a manifest into chunks for Slurm array
 * tasks, reading what catalogues hold (status), merging per-job catalogues into one release catalogue, and
 * choosing what a data-release rerun must recompute. Everything here is serial (rank 0 or a plain process)
 * and reads catalogues read-only without HDF5 file locking, so it works beside a running job.
 * Not here: computing galaxies (pipeline/, `morphcat run`), submitting jobs (slurm/). */
#ifndef JOBS_JOBS_H
#define JOBS_JOBS_H

#include "io/catalog.h"
#include "io/manifest.h"
#include "mc.h"

/* ---- manifests ---------------------------------------------------------------------------------------- */
/* Write rows[0..n) of m (indices into m->rows, in that order) as a CSV manifest: id_str, file_loc, ra, dec,
 * hdu, morphcat_bad_row. Paths are written absolute (relative ones are resolved against the current folder,
 * as the job reading m would), so the file works from any folder; a bad row keeps its reason in
 * morphcat_bad_row and stays bad. Written to a temporary name and renamed: never half-written. */
int jobs_manifest_write(const char *path, const io_manifest *m, const int64_t *rows, int64_t n, char *err);
/* The same, one row at a time (plan chunks streamed from the source manifest): open, rows, close. Close
 * flushes, fsyncs and renames into place, or removes the temporary file and says why; it frees w. */
typedef struct jobs_manifest_writer jobs_manifest_writer;
int jobs_manifest_writer_open(const char *path, jobs_manifest_writer **w, char *err);
void jobs_manifest_writer_row(jobs_manifest_writer *w, const io_manifest_row *r);
int jobs_manifest_writer_close(jobs_manifest_writer *w, char *err);

/* ---- plan --------------------------------------------------------------------------------------------- */
typedef struct jobs_plan_opts {
    double rate;            /* measured galaxies/s per core (one rank, one BLAS thread) */
    int nodes;              /* nodes the survey may use at once */
    int cores_per_node;     /* ranks per node */
    int nodes_per_task;     /* nodes per array task (one MPI job per chunk) */
    double task_hours;      /* target compute time of one task */
    int64_t chunk_rows;     /* explicit rows per chunk (0: from task_hours) */
    int batch;              /* the job's --batch: chunks hold whole units, so values equal an unchunked run */
    double startup_seconds; /* per task: MPI start, model and manifest load, catalogue creation */
} jobs_plan_opts;

typedef struct jobs_plan {
    int64_t n_rows, chunk_rows, n_chunks;
    int concurrent;          /* array tasks running at once (the %N throttle) */
    double task_rate;        /* galaxies/s of one task */
    double task_seconds;     /* expected wall time of a full chunk, start-up included */
    double time_limit;       /* seconds to request per task (--time) */
    int signal_seconds;      /* --signal=B:USR1@this: time to finish a batch and commit */
    double node_hours;       /* compute plus start-up, all tasks */
    double node_hours_compute;
    double wall_hours;       /* with `concurrent` tasks at once */
} jobs_plan;

int jobs_plan_make(int64_t n_rows, const jobs_plan_opts *o, jobs_plan *p, char *err);
void jobs_plan_print(FILE *f, const jobs_plan *p, const jobs_plan_opts *o);
/* DIR/chunks/chunk_NNNNN.csv (the array tasks' manifests), DIR/chunks.tsv (index, first row, rows) and
 * DIR/plan.env (shell variables the sbatch scripts read). The chunks are written as the manifest is read
 * again (io_manifest_scan: memory independent of its rows); info is what the first reading found, and a
 * manifest that changed since (other bytes or rows) is refused. */
int jobs_plan_write(const char *dir, const io_manifest_info *info, const jobs_plan *p, const jobs_plan_opts *o,
                    char *err);
/* Rows per chunk of a written plan, from DIR/chunks.tsv; *rows is malloc'ed. */
int jobs_plan_read(const char *dir, int64_t **rows, int64_t *n_chunks, char *err);

/* ---- reading catalogues (serial, read-only, no file locking) ------------------------------------------ */
typedef struct jobs_cat jobs_cat;

int jobs_cat_open(const char *path, jobs_cat **out, char *err);
void jobs_cat_close(jobs_cat *c);
int64_t jobs_cat_rows(const jobs_cat *c);
const char *jobs_cat_path(const jobs_cat *c);
/* A root string attribute; -1 (buf "") when absent. */
int jobs_cat_attr(const jobs_cat *c, const char *name, char *buf, size_t len);
int jobs_cat_read_status(const jobs_cat *c, uint8_t *status, char *err);
/* A fixed-width string column (galaxies/id_str, galaxies/file_xxh3 ...): *buf holds rows() strings of
 * *width bytes each, NUL-terminated; malloc'ed. */
int jobs_cat_read_strings(const jobs_cat *c, const char *dataset, char **buf, size_t *width, char *err);

/* ---- status ------------------------------------------------------------------------------------------- */
typedef struct jobs_status {
    int64_t n_rows;
    int64_t counts[MC_ROW_NSTATUS];
    int creating;          /* the catalogue is still being created (marker file present) */
    int absent;            /* no catalogue yet (a planned chunk not started) */
    double age_seconds;    /* from created_utc to the file's last modification */
    char release[IO_CAT_RELEASE_LEN], model_arch[64], model_sha256[65];
} jobs_status;

int jobs_status_read(const char *path, jobs_status *s, char *err);

/* ---- merge -------------------------------------------------------------------------------------------- */
/* One output row: row `row` of input `input`. */
typedef struct jobs_pick {
    int32_t input;
    int64_t row;
} jobs_pick;

typedef struct jobs_merge_stats {
    int64_t rows_in, rows_out, duplicates, replaced_failed, pending_out, no_id;
} jobs_merge_stats;

/* Identity attributes that must be equal in every catalogue merged (same model, head, recipe and columns):
 * a mismatch is refused with one line. NULL-terminated. */
extern const char *const jobs_merge_ident[];

/* Merge catalogues into one: one row per id_str. When inputs overlap, the row kept is the one with the best
 * status (ok, then failed, then pending), and among equals the one from the later input. Output order: the
 * order in which ids first appear, inputs taken in the order given. Rows without an id_str (bad manifest
 * rows) are kept from every input. Pending rows are refused unless allow_pending. release: the release
 * catalogue's `release` attribute ("" keeps the last input's). */
int jobs_merge(const char *const *inputs, int n_inputs, const char *output, const char *release, int allow_pending,
               jobs_merge_stats *st, char *err);

/* The writer under jobs_merge and reruns: output row i is picks[i]. Every row-indexed dataset (first
 * dimension = the input's row count) is copied generically, virtual column views are remade, groups and
 * attributes are copied from the first input; root attributes in `set` override. Inputs must agree on
 * jobs_merge_ident and on their datasets. Written to OUTPUT.tmp, then renamed. */
int jobs_merge_picks(const char *const *inputs, int n_inputs, const jobs_pick *picks, int64_t n_out,
                     const char *output, const io_kv *set, int n_set, char *err);

/* ---- data-release reruns ------------------------------------------------------------------------------ */
typedef struct jobs_rerun_stats {
    int64_t rows, carried_ok, carried_failed, new_rows, changed, redo_pending, redo_bad_row, dropped;
} jobs_rerun_stats;

/* Decide, for each row of the new manifest m with its file checksums sums (m->n * IO_CAT_SUM_LEN, "" when
 * unreadable), whether the previous release catalogue's row can be carried: same id_str, same checksum
 * (both unreadable counts as the same for a missing_file row), a finished status other than
 * bad_manifest_row, and a usable new manifest row. carry[i] = previous row or -1 (recompute);
 * todo/n_todo (malloc'ed): the rows to recompute, in manifest order. */
int jobs_rerun_select(const char *previous, const io_manifest *m, const char *sums, int64_t *carry, int64_t **todo,
                      int64_t *n_todo, jobs_rerun_stats *st, char *err);

#endif
