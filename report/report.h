/* report/report.h: what astronomers open from a catalogue: mosaics of cutouts rendered by the catalogue's own
 * recipe (with the clump boxes), the release report page (static HTML with PNG figures drawn by cairo) and
 * FITS/CSV exports with Zoobot's column names. Everything reads the catalogue serially and read-only, in
 * chunks of rows, so memory does not grow with the catalogue (10 million rows and more).
 * Not here: computing morphology or clumps (pipeline/), writing catalogues (io/, jobs/). */
#ifndef REPORT_REPORT_H
#define REPORT_REPORT_H

#include "mc.h"

/* Rows read per chunk by every streaming pass. */
#define RPT_CHUNK_ROWS 16384

/* ---- the catalogue, read in chunks ------------------------------------------------------------------- */
typedef struct rpt_cat rpt_cat;

/* Open read-only without file locking (safe beside a running job); -1 with one line when the file is not
 * a morphcat catalogue. */
int rpt_cat_open(const char *path, rpt_cat **out, char *err);
void rpt_cat_close(rpt_cat *c);
int64_t rpt_cat_rows(const rpt_cat *c);
int rpt_cat_n_answers(const rpt_cat *c);             /* 0 without a morphology group */
const char *rpt_cat_answer(const rpt_cat *c, int a); /* "smooth-or-featured-dr5_smooth" */
int rpt_cat_has_clumps(const rpt_cat *c);
/* A root string attribute into buf; -1 (buf "") when absent. */
int rpt_cat_attr(const rpt_cat *c, const char *name, char *buf, size_t len);
/* The row of each of ids[0..n) (first occurrence), one pass over id_str; -1 naming the first id absent. */
int rpt_cat_find_ids(rpt_cat *c, const char *const *ids, int n, int64_t *rows, char *err);

/* ---- mosaics ----------------------------------------------------------------------------------------- */
typedef struct rpt_mosaic_opts {
    int size;  /* tile side in pixels (the recipe's view resampled to size x size) */
    int boxes; /* draw the catalogue's clumps: class colours, scores */
} rpt_mosaic_opts;

/* Tile geometry (documented in docs/report.md so tests and users can cut tiles out again): at most
 * RPT_MOSAIC_COLS tiles a row, RPT_MOSAIC_PAD pixels around and between tiles, a label strip of
 * RPT_MOSAIC_LABEL pixels under each tile. */
#define RPT_MOSAIC_COLS 8
#define RPT_MOSAIC_PAD 4
#define RPT_MOSAIC_LABEL 16

/* A grid of rows[0..n) in that order, each tile labelled with its id_str and labels[i] (may be NULL),
 * written as a PNG. A galaxy whose cutout cannot be rendered gets a grey tile saying why and a line on
 * stderr; *n_bad counts them. -1 with one line for whole-command failures (unwritable output). */
int rpt_mosaic_write(rpt_cat *c, const int64_t *rows, const char *const *labels, int n,
                     const rpt_mosaic_opts *o, const char *png, int *n_bad, char *err);

/* The n galaxies with the largest value of a per-answer column (COLUMN is `columns/COLUMN` of the
 * catalogue, or an answer name, which means its _fraction), among ok rows with a finite value; one pass,
 * a heap of n. rows/values (n each) by decreasing value, ties by row; *found <= n. */
int rpt_select_top(rpt_cat *c, const char *column, int n, int64_t *rows, float *values, int *found,
                   char *err);

/* ---- the report page --------------------------------------------------------------------------------- */
typedef struct rpt_report_opts {
    int max_failures; /* failed galaxies listed (their total is always given) */
    int top;          /* galaxies per "most confident" mosaic */
    int tile;         /* mosaic tile size, pixels */
} rpt_report_opts;

/* DIR/index.html and its PNG figures, from one streaming pass over the catalogue plus the cutouts of the
 * galaxies shown. Prints nothing; -1 with one line on failure. */
int rpt_report_write(const char *catalogue, const char *dir, const rpt_report_opts *o, char *err);

/* ---- exports ----------------------------------------------------------------------------------------- */
typedef enum { RPT_EXPORT_FITS, RPT_EXPORT_CSV } rpt_export_format;

typedef struct rpt_export_stats {
    int64_t rows, clumps, columns;
    char clumps_path[4200]; /* CSV: where the clump table went ("" when the catalogue has none) */
} rpt_export_stats;

/* One row per galaxy (id_str, ra, dec, status, message, release, then per answer Zoobot's `_fraction`,
 * `_90pc-lower`, `_90pc-upper`, `_proportion-asked`, `_dirichlet`), and one row per clump in a second FITS
 * extension or a second CSV (FILE's name with `_clumps` before the extension). friendly: fractions whose
 * question fewer than half the volunteers would be asked are blank (NaN), as zoobot's friendly table. Written
 * to FILE.tmp and renamed, chunk by chunk. */
int rpt_export(const char *catalogue, rpt_export_format fmt, const char *output, int friendly,
               rpt_export_stats *st, char *err);

#endif
