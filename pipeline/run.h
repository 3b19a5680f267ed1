/* pipeline/run.h: the catalogue job's parts inside pipeline/: configuration, work sharing between MPI
 * ranks, and the cutout loader thread. Internal to pipeline/; the command is `morphcat run`. */
#ifndef PIPELINE_RUN_H
#define PIPELINE_RUN_H

#include <mpi.h>
#include <pthread.h>

#include "io/catalog.h"
#include "io/cutout.h"
#include "io/manifest.h"
#include "io/preprocess.h"
#include "mc.h"
#include "nn/nn.h"
#include "pipeline/clumps.h"

/* ---- configuration --------------------------------------------------------------------------------- */
typedef struct mc_job {
    char manifest[4096], model[4096], output[4096];
    char schema[256];   /* Galaxy Zoo schema name or JSON path; "" = chosen from the head size */
    char recipe[256];   /* preprocessing recipe spec (io/preprocess.h); "auto" by default */
    char hdu[72];       /* default HDU for FITS cutouts; "" = first image HDU */
    char pca[4096], pca_mean[4096]; /* PCA components (K, D) .npy and optional mean (D) .npy */
    char model_note[512];           /* recorded in the catalogue (e.g. "untrained stand-in") */
    char release[64];               /* data-release name recorded in every row (e.g. "dr10") */
    char detector[4096];            /* clump detector weights; "" = no clumps */
    char clumps[256];               /* clump post-processing spec (pipeline/clumps.h) */
    double det_bn_eps;              /* the detector's frozen batch-norm epsilon */
    nn_precision precision;         /* of the encoder and the detector (part of the catalogue's identity) */
    char config_text[8192];         /* the effective configuration, recorded in the catalogue */
    int batch;                      /* galaxies per work unit = per forward pass */
    int size;                       /* model input side, pixels */
    int embed;                      /* 0 none, 1 float32, 2 float16 */
    double commit_seconds;          /* how often results are made durable (fsync, then statuses) */
    double progress_seconds;        /* how often progress lines are printed */
    int max_messages;               /* per-galaxy failure lines printed per rank before going quiet */
    double lock_stale_after;        /* another host's lock without a heartbeat this long is stale (s) */
} mc_job;

/* Fill job from `morphcat run` arguments (and an INI file given with --config). Returns 0, 1 for --help
 * (usage printed), or -1 with a message. */
int mc_job_parse(int argc, char **argv, mc_job *job, char *err);
/* `morphcat run` with MPI already initialised (morphcat rerun runs its delta job this way): the exit status. */
int mc_run_args(int argc, char **argv);

/* ---- work sharing ---------------------------------------------------------------------------------- */
/* Units (a fixed run of `batch` manifest rows) are handed out dynamically: rank 0 keeps the list of units
 * still to do and answers requests between its own batches; every rank keeps a few units queued so it
 * never waits on rank 0 in steady state. Chunks shrink as the work runs out (guided scheduling). */
typedef struct mc_work mc_work;

typedef struct mc_progress {
    double rows_done, rows_failed, units_done; /* this rank's, or (rank 0) everybody's latest */
} mc_progress;

/* Collective. todo/n_todo: the units to do, in order (used on rank 0 only). */
mc_work *mc_work_init(MPI_Comm comm, const int64_t *todo, int64_t n_todo);
/* Next unit for this rank, or -1 when there is none left (or stop was requested). Reports this rank's
 * progress to rank 0 on the way. */
int64_t mc_work_next(mc_work *w, const mc_progress *mine);
/* Rank 0: answer requests waiting now (call between batches). Others: no-op. */
void mc_work_serve(mc_work *w);
/* Stop handing out units (a signal asked the job to finish its batch and exit). */
void mc_work_stop(mc_work *w);
/* Rank 0: everybody's progress as last reported (its own included). */
mc_progress mc_work_global(const mc_work *w, const mc_progress *mine);
int64_t mc_work_total(const mc_work *w);
/* What the queue measured so far (bench/bench_queue.c reports it). Latencies compare the requesting rank's
 * clock with rank 0's: meaningful when both run on one host. */
#define MC_WORK_HIST 24
typedef struct mc_work_stats {
    double requests;                   /* rank 0: requests answered */
    double latency_sum, latency_max;   /* rank 0: seconds from a request's sending to its answer */
    double latency_hist[MC_WORK_HIST]; /* rank 0: bin 0 < 10 us, bin b in [10 us * 2^(b-1), 10 us * 2^b) */
    double serve_seconds;              /* rank 0: time spent receiving and answering requests */
    double waits, wait_seconds;        /* others: times (and seconds) blocked in mc_work_next on an answer */
} mc_work_stats;
void mc_work_stats_get(const mc_work *w, mc_work_stats *out);
/* Collective: serve until every rank has been told there is no more work, then free. */
void mc_work_finish(mc_work *w);

/* ---- loader ---------------------------------------------------------------------------------------- */
/* One slot holds a unit being loaded or computed: the model inputs of its good rows (compacted, in row
 * order) and every row's status, message and sky position. */
typedef struct mc_slot {
    int64_t unit, row0;
    int n;                 /* rows in the unit */
    int n_ok;              /* rows whose input is in x */
    int *ok_rows;          /* indices (within the unit) of the rows in x, in order */
    float *x;              /* n_ok * chans * size * size */
    uint8_t *status;       /* per row */
    char *message;         /* per row, IO_CAT_MSG_LEN each */
    char *sum;             /* per row, IO_CAT_SUM_LEN each: XXH3-128 of the file's bytes, "" when unread */
    double *ra, *dec;
    uint8_t *radec_src;
    /* the clump detector's input per row (when the job has a detector): an RGB picture and where it sits in
     * the cutout, and the cutout's WCS (owned by the slot until the row is computed); det_status is the
     * rendering's status (MC_ROW_OK, else the row's detection is skipped and its message says why; the
     * row's own status stays ok) */
    float **det_img;
    size_t *det_cap;
    mc_clump_view *det_view;
    io_wcs **wcs;
    uint8_t *det_status;
    int state;             /* 0 free, 1 loading, 2 ready */
} mc_slot;

typedef struct mc_loader mc_loader;

/* post: the clump post-processing when the job runs the detector (its crop applies when rendering), else
 * NULL. */
mc_loader *mc_loader_init(const io_manifest *m, const pp_recipe *recipe, const char *hdu, int batch, int chans,
                          int size, int nslots, const mc_clump_post *post);
/* Give the next free slot to the loader thread to load unit u; returns 0, or -1 when no slot is free. */
int mc_loader_submit(mc_loader *l, int64_t unit);
/* Block until the oldest submitted slot is ready and return it (NULL when none is outstanding). */
mc_slot *mc_loader_wait(mc_loader *l);
void mc_loader_release(mc_loader *l, mc_slot *s);
int mc_loader_free_slots(mc_loader *l);
void mc_loader_free(mc_loader *l);

#endif
