/* io/catalog.h: the morphcat catalogue, one HDF5 file written by every MPI rank through parallel HDF5.
 * Row i is manifest row i. The layout (docs/catalogue.md) is created collectively, with every chunk
 * allocated and all metadata flushed before any galaxy is computed; afterwards ranks only write raw data
 * into their own rows (independent I/O), so a rank killed at any moment leaves a file that reopens. A
 * row's status is written after its values and only after they were fsync'ed: a row whose status is not
 * pending is complete, which is what resume trusts; a catalogue without pending rows is complete. No
 * metadata is written after creation (not even at close), so no moment of the job is unsafe to kill.
 * Not here: computing anything, deciding who does which rows (pipeline/). */
#ifndef IO_CATALOG_H
#define IO_CATALOG_H

#include <mpi.h>

#include "mc.h"

#define IO_CAT_MSG_LEN 256    /* bytes per status message, NUL included */
#define IO_CAT_SUM_LEN 33     /* hex XXH3-128 checksum of a cutout file, NUL included */
#define IO_CAT_RELEASE_LEN 64 /* data-release name, NUL included */
#define IO_CAT_LAYOUT "morphcat-catalogue-1"

typedef struct io_catalog io_catalog;

typedef struct io_kv {
    const char *key, *value;
} io_kv;

typedef struct io_catalog_spec {
    int64_t n_rows;
    int unit_rows;       /* rows per work unit: chunks hold whole units, so no two ranks share a chunk row */
    int id_len, path_len; /* fixed string widths of id_str and file, NUL included */
    int n_answers;       /* 0: no morphology group (encoder without a head) */
    const char *const *answer_cols; /* n_answers names, "question_answer" */
    int embed_dim;       /* 0: no embedding */
    int embed_half;      /* store the embedding as float16 */
    int pca_dim;         /* 0: no PCA projection */
    int clump_max;       /* 0: no clumps group; else detections kept per galaxy (the arrays' width) */
    int n_clump_classes; /* class names of the detector, background first */
    const char *const *clump_classes;
    const char *release; /* data-release name written into every row's release column at creation */
    /* Written at creation. `ident` attributes must match on reopen (manifest, model, schema, recipe ...)
     * or the open is refused; `info` attributes are informational (configuration text, times). */
    int n_ident, n_info;
    const io_kv *ident, *info;
} io_catalog_spec;

/* Manifest columns, written once at creation: each rank writes a slice. Arrays cover rows [row0, row0+n). */
typedef struct io_catalog_ids {
    int64_t row0;
    int64_t n;
    const char *const *id_str;
    const char *const *file;
    const double *ra, *dec; /* NAN when the manifest has none */
} io_catalog_ids;

/* Computed values for rows [row0, row0+n) of one unit. NULL members are not written. */
typedef struct io_catalog_rows {
    int64_t row0;
    int n;
    const double *ra, *dec;     /* when the WCS supplied them (radec_source 2), else NULL */
    const uint8_t *radec_source; /* 0 none, 1 manifest, 2 WCS */
    const char *message;        /* n * IO_CAT_MSG_LEN */
    const char *file_checksum;  /* n * IO_CAT_SUM_LEN: XXH3-128 of each cutout file's bytes ("" unread) */
    const float *conc, *frac, *lo90, *hi90, *asked; /* n * n_answers each (asked repeated per answer) */
    const float *embed;         /* n * embed_dim, float32 (converted when stored as float16) */
    const float *pca;           /* n * pca_dim */
    /* clumps (when the catalogue has them): per row a count and status, per slot (clump_max a row) a label
     * (0 empty), a score and sky position (NaN empty) and a box (4 floats, NaN empty) */
    const uint16_t *clump_count;
    const uint8_t *clump_status, *clump_label;
    const float *clump_score, *clump_box;
    const double *clump_ra, *clump_dec;
} io_catalog_rows;

/* Collective. Create `path` with spec's layout, or reopen it when it exists and is a morphcat catalogue
 * whose ident attributes equal spec's (*reopened = 1). A leftover of an interrupted creation (marker file
 * `path.creating`) is removed and made again. ids_slice: this rank's slice of the manifest columns, written
 * at creation only. Whole-run problems (unwritable folder, a different job's catalogue, not HDF5) return -1
 * with one line in err; every rank gets the same result. */
int io_catalog_open(MPI_Comm comm, const char *path, const io_catalog_spec *spec, const io_catalog_ids *ids_slice,
                    int *reopened, io_catalog **out, char *err);

/* Independent: this rank's rows. */
int io_catalog_write(io_catalog *c, const io_catalog_rows *r, char *err);
/* Independent: fsync the file's data (so statuses written after it describe durable rows). */
int io_catalog_sync(io_catalog *c, char *err);
int io_catalog_write_status(io_catalog *c, int64_t row0, int n, const uint8_t *status, char *err);
/* Independent: the whole status column, n_rows bytes. */
int io_catalog_read_status(io_catalog *c, uint8_t *status, char *err);

/* Collective. Close; writes nothing new (metadata never changes after creation). On a file system gone
 * read-only the file is left unclosed (as a killed job leaves it) and -1 returned, as when closing fails. */
int io_catalog_close(io_catalog *c, char *err);
/* 1 once a catalogue of this process was left unclosed or failed to close: HDF5 1.10 would then crash in its
 * clean-up at exit (MPI_Finalize), so the process must end with _exit after flushing its output. */
int io_catalog_abandoned(void);
/* For a reopened catalogue: does it have no pending row? Such a catalogue is open read-only (rerunning a
 * finished job must not touch the file): only io_catalog_close may follow. */
int io_catalog_is_complete(const io_catalog *c);
/* A float as IEEE binary16 bits, rounded to nearest even (numpy's astype(float16), GCC's _Float16); NaN stays a
 * quiet NaN with its top payload bits. In plain C: clang 14 has no _Float16 on x86 without AVX512-FP16. */
uint16_t io_catalog_half(float f);

#endif
