/* report/report_internal.h: what the files of report/ share and nobody else sees: the catalogue reader's
 * chunk reads, and cairo helpers (labels, colours). Other folders include report/report.h only. */
#ifndef REPORT_INTERNAL_H
#define REPORT_INTERNAL_H

#include <cairo.h>
#include <hdf5.h>

#include "io/preprocess.h"
#include "report/report.h"

struct rpt_cat {
    hid_t file;
    char *path;
    int64_t n_rows;
    int n_answers;
    char **answers;
    int has_clumps, clump_k, n_classes;
    char **classes;
    pp_recipe recipe;
    int recipe_ok; /* the catalogue's `preprocessing` attribute parsed */
    char recipe_err[MC_ERR_LEN];
};

/* Width in bytes (+1 for a NUL) of a fixed-length string dataset; 0 when absent or not a fixed string. */
size_t rpt_cat_str_width(rpt_cat *c, const char *dataset);
/* Rows [row0, row0 + n) of dataset, every other dimension whole, converted to mem_type. -1 with a message. */
int rpt_cat_read(rpt_cat *c, const char *dataset, hid_t mem_type, int64_t row0, int64_t n, void *buf,
                 char *err);
/* Fixed-width strings: n strings of `width` bytes (from rpt_cat_str_width), NUL-terminated. */
int rpt_cat_read_strs(rpt_cat *c, const char *dataset, size_t width, int64_t row0, int64_t n, char *buf,
                      char *err);
int rpt_cat_has(rpt_cat *c, const char *dataset);

/* The largest `cap` values offered, ties to the earlier row: one pass over a catalogue of any size. */
typedef struct rpt_hent {
    float v;
    int64_t row;
} rpt_hent;
typedef struct rpt_heap {
    rpt_hent *e; /* cap entries, caller's memory */
    int n, cap;
} rpt_heap;
void rpt_heap_offer(rpt_heap *h, float v, int64_t row);
/* Sort the kept entries by decreasing value (ties: earlier row first). */
void rpt_heap_sort(rpt_heap *h);

/* A float32 as CSV text with 9 significant digits (strtof gives the same float back), trailing zeros dropped,
 * plain notation from 1e-5 to 1e9, "" for NaN; returns the length. Much faster than printf's %.9g. */
int rpt_csv_float(char *buf, float v);

/* Labels and colours. */
void rpt_font(cairo_t *cr, double px, int bold);
/* Colour of clump class k (1 clump, 2 odd clump, others cycle). */
void rpt_class_colour(int k, double rgb[3]);
/* Colour of series i of a chart. */
void rpt_series_colour(int i, double rgb[3]);
/* Write a surface as PNG; -1 with a message. */
int rpt_png_write(cairo_surface_t *s, const char *path, char *err);

#endif
