/* science/science.h: the seed paper's tasks on a catalogue's embeddings (Walmsley et al. 2022, MNRAS 513,
 * 1581): streamed PCA (MPI ranks combine sums), exact nearest neighbours, an isolation forest, a Gaussian
 * process with expected improvement, and linear heads (multinomial logistic, ridge) on frozen features.
 * Everything reads the catalogue in chunks of rows (never the whole table); only the ok rows are used.
 * Not here: the command lines (pipeline/cmd_pca.c ...), writing catalogues (io/, jobs/). docs/science.md. */
#ifndef SCIENCE_SCIENCE_H
#define SCIENCE_SCIENCE_H

#include <mpi.h>

#include "mc.h"

/* ---- catalogues: embeddings (float32 or float16) by chunks of rows ------------------------------------ */
typedef struct sci_cat sci_cat;

/* Open read-only (no file locking). Refuses a file that is not a morphcat catalogue or has no
 * embedding/features, with one line naming the file. */
int sci_cat_open(const char *path, sci_cat **out, char *err);
void sci_cat_close(sci_cat *c);
int64_t sci_cat_rows(const sci_cat *c);
int sci_cat_dim(const sci_cat *c);
size_t sci_cat_id_width(const sci_cat *c); /* bytes per id_str, NUL included */
const char *sci_cat_path(const sci_cat *c);
/* Rows [row0, row0+n): any of feat (n*dim float32), status (n), ids (n*id_width) may be NULL. */
int sci_cat_read(sci_cat *c, int64_t row0, int64_t n, float *feat, uint8_t *status, char *ids, char *err);

/* ---- PCA ---------------------------------------------------------------------------------------------- */
typedef struct sci_pca {
    int k, d;
    float *components; /* (k, d), rows by decreasing variance */
    float *mean;       /* (d) */
    float *variance;   /* (k): explained variance (denominator n - 1, as sklearn) */
    double fit_seconds;
    int64_t n_rows; /* rows the fit used */
} sci_pca;

/* Fit on the ok rows of every catalogue; the rows of each are split across comm's ranks, which combine
 * their sums (MPI_Allreduce). Every rank gets the result. */
int sci_pca_fit(MPI_Comm comm, sci_cat *const *cats, int n_cats, int k, sci_pca *p, char *err);
/* DIR/components.npy, DIR/mean.npy, DIR/explained_variance.npy (float32). */
int sci_pca_write(const char *dir, const sci_pca *p, char *err);
int sci_pca_load(const char *dir, sci_pca *p, char *err);
/* Is p usable on c's embeddings? (one line naming both when the dimensions differ) */
int sci_pca_check(const sci_pca *p, const char *dir, const sci_cat *c, char *err);
void sci_pca_free(sci_pca *p);
/* y (n, k) = (x - mean) @ components.T */
void sci_pca_project(const sci_pca *p, const float *x, int64_t n, float *y);
/* A projected catalogue (pca apply): the ok rows' id_str, status 1 and embedding/features (n, k) float32,
 * readable by sci_cat_open (so every command takes it as --catalogue). */
int sci_pca_apply(sci_cat *c, const sci_pca *p, const char *pca_dir, const char *out, int64_t *n_out,
                  char *err);

/* ---- streaming the ok rows ---------------------------------------------------------------------------- */
typedef struct sci_stream {
    sci_cat *cat;
    const sci_pca *pca; /* NULL: raw embeddings */
    int dim;            /* features per row as delivered (pca ? pca->k : catalogue dim) */
    int want_ids;
    int64_t next_row, end_row, chunk;
    /* the current chunk: its ok rows only */
    int64_t n;    /* ok rows in it */
    int64_t *row; /* their catalogue rows */
    float *x;     /* (n, dim) */
    char *ids;    /* (n, id_width) when want_ids */
    size_t id_width;
    float *raw; /* (chunk, catalogue dim) */
    uint8_t *status;
    char *raw_ids;
} sci_stream;

/* Rows [first, end) of c (end < 0: all). */
void sci_stream_open(sci_stream *s, sci_cat *c, const sci_pca *pca, int want_ids, int64_t first, int64_t end);
/* 1: a chunk is loaded (possibly with n == 0), 0: the end, -1: error. */
int sci_stream_next(sci_stream *s, char *err);
void sci_stream_close(sci_stream *s);
/* Ok rows of c, from the status column in chunks. */
int sci_cat_count_ok(sci_cat *c, int64_t *n_ok, char *err);

/* ---- id lookup and label files ------------------------------------------------------------------------ */
typedef struct sci_idset sci_idset;
sci_idset *sci_idset_init(int64_t expected);
/* Adds id (copied); returns its index, or -1 when it was already present. */
int64_t sci_idset_add(sci_idset *s, const char *id);
int64_t sci_idset_find(const sci_idset *s, const char *id); /* -1 when absent */
int64_t sci_idset_size(const sci_idset *s);
const char *sci_idset_key(const sci_idset *s, int64_t i);
void sci_idset_free(sci_idset *s);

/* Labels CSV with a header `id_str,<column>`: ids (in file order, unique) and their values as text. */
typedef struct sci_labels {
    sci_idset *ids;
    char **value;
    int64_t *line; /* line number of each label, for messages */
    int64_t n;
} sci_labels;
int sci_labels_read(const char *path, sci_labels *l, char *err);
void sci_labels_free(sci_labels *l);
/* Find every label's ok row in c (row[i]) and read its features into x (n, dim; stream's features).
 * A label naming no ok row is an error naming the id and the line. */
int sci_labels_gather(const sci_labels *l, const char *label_path, sci_cat *c, const sci_pca *pca,
                      int64_t *row, float *x, char *err);

/* Write an id as one CSV field: as it is, or quoted (RFC 4180) when it holds a comma, quote or line break. */
void sci_csv_id(FILE *f, const char *id);

/* ---- ranked output ------------------------------------------------------------------------------------ */
/* Write `rank,id_str,score` lines (rank from 1) for rows sorted by score, highest first (ties by row):
 * ids are filled from the id column in passes of a million ranks. Besides the caller's arrays (16 bytes
 * a row) the sort takes 16 bytes a row and each pass one block of ids. Sorts row/score in place. */
int sci_rank_write(FILE *f, sci_cat *c, int64_t *row, double *score, int64_t n, char *err);

/* ---- nearest neighbours ------------------------------------------------------------------------------- */
typedef enum { SCI_METRIC_EUCLIDEAN, SCI_METRIC_COSINE, SCI_METRIC_MANHATTAN } sci_metric;
typedef struct sci_neighbour {
    double dist;
    int64_t row;
    int self;
    char *id;
} sci_neighbour;
/* Exact k nearest ok rows of each query (q features, nq x dim), in one pass; query_row[i] is the query's own
 * row (listed first). out: nq * k entries, best first (fewer when the catalogue is smaller: *found). */
int sci_neighbours(sci_cat *c, const sci_pca *pca, sci_metric m, const float *q, const int64_t *query_row,
                   int nq, int k, sci_neighbour *out, int *found, char *err);

/* ---- isolation forest (Liu, Ting & Zhou 2008, as sklearn's IsolationForest) --------------------------- */
/* Anomaly score s = 2^(-E[h(x)]/c(psi)) of every ok row (higher: more anomalous), psi = min(256, n). */
int sci_iforest_scores(sci_cat *c, const sci_pca *pca, int trees, uint64_t seed, int64_t **row,
                       double **score, int64_t *n, char *err);

/* ---- Gaussian process: RationalQuadratic + WhiteKernel (sklearn's GaussianProcessRegressor) ----------- */
typedef struct sci_gp {
    int n, d;
    double length_scale, alpha, noise; /* the kernel's hyperparameters */
    double lml;                        /* log marginal likelihood at them */
    double *x, *y;                     /* training features (standardised), labels */
    double *L, *a;                     /* Cholesky factor of K, K^-1 y */
    double *mu, *sd;                   /* standardisation of the features (StandardScaler on all ok rows) */
} sci_gp;
/* Fit to n labelled rows (x: n x d raw features, standardised with mu/sd). optimise: maximise the log
 * marginal likelihood from the given hyperparameters (L-BFGS in log space, bounds 1e-5..1e5, as sklearn). */
int sci_gp_fit(sci_gp *g, const float *x, const double *y, int n, int d, const double *mu, const double *sd,
               int optimise, char *err);
/* Mean and standard deviation (noise included, as sklearn's predict(return_std=True)) of m raw rows. */
void sci_gp_predict(const sci_gp *g, const float *x, int64_t m, double *mean, double *sd);
void sci_gp_free(sci_gp *g);
/* modAL's expected improvement: (mu - best - xi) Phi(z) + sd phi(z), z = (mu - best - xi) / sd */
double sci_expected_improvement(double mu, double sd, double best, double xi);
/* Mean and population standard deviation of every feature over the ok rows (one streamed pass). */
int sci_feature_moments(sci_cat *c, const sci_pca *pca, double *mu, double *sd, int64_t *n_ok, char *err);

/* ---- linear heads ------------------------------------------------------------------------------------- */
typedef struct sci_linear {
    int regression; /* 0: logistic, 1: ridge */
    int n_classes;  /* logistic: classes; ridge: 1 */
    int d;
    double C;
    double *coef;      /* (rows, d): rows = 1 for binary and ridge, else n_classes */
    double *intercept; /* (rows) */
    int rows;
} sci_linear;
/* Fit on n rows (x: n x d, y: class index 0..n_classes-1, or the value for ridge). Logistic: minimise
 * 0.5 |W|^2 + C sum -log p(y_i) (binary: one weight vector, as sklearn; intercept not penalised). Ridge:
 * |y - Xw - b|^2 + |w|^2 / C. */
int sci_linear_fit(sci_linear *h, const float *x, const double *y, int64_t n, int d, int n_classes,
                   int regression, double C, char *err);
/* Probabilities (m x n_classes) or values (m). */
void sci_linear_predict(const sci_linear *h, const float *x, int64_t m, double *out);
void sci_linear_free(sci_linear *h);

/* ---- numerics ----------------------------------------------------------------------------------------- */
/* Minimise f over x (n) within [lo, hi] (NULL: unbounded) by L-BFGS (projected for the bounds). fg returns
 * f and writes the gradient. Returns iterations used. */
typedef double (*sci_objective)(const double *x, double *grad, void *ctx);
int sci_lbfgs(sci_objective fg, void *ctx, double *x, int n, const double *lo, const double *hi, int max_iter,
              double gtol, double *fmin);

/* A seeded generator (splitmix64), so forests are reproducible for a seed. */
typedef struct sci_rng {
    uint64_t s;
} sci_rng;
uint64_t sci_rng_next(sci_rng *r);
double sci_rng_uniform(sci_rng *r); /* [0, 1) */

#endif
