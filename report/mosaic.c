/* report/mosaic.c: mosaics of cutouts. Each tile is the galaxy's file decoded (io/cutout.h) and rendered by
 * the catalogue's own recipe (its `preprocessing` attribute through io/preprocess.h: the view the model saw,
 * at the tile's size and in colour), labelled with its id and a value, optionally with the catalogue's clump
 * boxes mapped through the same view. Also the one-pass top-N selection behind `--answer --top`.
 * Not here: choosing galaxies for the report (report/page.c). */
#include <math.h>

#include "io/cutout.h"
#include "report/report_internal.h"

/* ---- top N, one pass, a min-heap of N (report/report_internal.h) ----------------------------------- */
/* a leaves the heap before b: lower value, or equal value and later row */
static int h_less(const rpt_hent *a, const rpt_hent *b)
{
    return a->v < b->v || (a->v == b->v && a->row > b->row);
}

static void h_swap(rpt_hent *a, rpt_hent *b)
{
    rpt_hent t = *a;
    *a = *b;
    *b = t;
}

void rpt_heap_offer(rpt_heap *h, float v, int64_t row)
{
    rpt_hent e = {v, row};
    if (h->n < h->cap) {
        int i = h->n++;
        h->e[i] = e;
        while (i > 0 && h_less(&h->e[i], &h->e[(i - 1) / 2]))
            h_swap(&h->e[i], &h->e[(i - 1) / 2]), i = (i - 1) / 2;
    } else if (h->cap > 0 && h_less(&h->e[0], &e)) {
        h->e[0] = e;
        for (int i = 0;;) {
            int l = 2 * i + 1, r = l + 1, m = i;
            if (l < h->n && h_less(&h->e[l], &h->e[m])) m = l;
            if (r < h->n && h_less(&h->e[r], &h->e[m])) m = r;
            if (m == i) break;
            h_swap(&h->e[i], &h->e[m]);
            i = m;
        }
    }
}

static int h_cmp_desc(const void *a, const void *b)
{
    const rpt_hent *x = a, *y = b;
    return h_less(x, y) ? 1 : h_less(y, x) ? -1 : 0;
}

void rpt_heap_sort(rpt_heap *h)
{
    qsort(h->e, (size_t)h->n, sizeof *h->e, h_cmp_desc);
}

int rpt_select_top(rpt_cat *c, const char *column, int n, int64_t *rows, float *values, int *found, char *err)
{
    *found = 0;
    char ds[600];
    snprintf(ds, sizeof ds, "columns/%s", column);
    if (!rpt_cat_has(c, ds)) snprintf(ds, sizeof ds, "columns/%s_fraction", column);
    if (!rpt_cat_has(c, ds))
        return mc_fail(err,
                       "%s: no column '%s' (give a column of the catalogue's columns/ group, e.g. "
                       "'%s_fraction', or an answer name)",
                       c->path, column, c->n_answers ? c->answers[0] : "answer");
    rpt_heap h = {.e = mc_malloc(sizeof(rpt_hent) * (size_t)(n > 0 ? n : 1)), .cap = n};
    float *v = mc_malloc(sizeof(float) * RPT_CHUNK_ROWS);
    uint8_t *s = mc_malloc(RPT_CHUNK_ROWS);
    int rc = 0;
    for (int64_t r0 = 0; r0 < c->n_rows && !rc; r0 += RPT_CHUNK_ROWS) {
        int64_t m = c->n_rows - r0 < RPT_CHUNK_ROWS ? c->n_rows - r0 : RPT_CHUNK_ROWS;
        if ((rc = rpt_cat_read(c, ds, H5T_NATIVE_FLOAT, r0, m, v, err)) ||
            (rc = rpt_cat_read(c, "galaxies/status", H5T_NATIVE_UINT8, r0, m, s, err)))
            break;
        for (int64_t i = 0; i < m; i++)
            if (s[i] == MC_ROW_OK && isfinite(v[i])) rpt_heap_offer(&h, v[i], r0 + i);
    }
    if (!rc) {
        rpt_heap_sort(&h);
        for (int i = 0; i < h.n; i++) rows[i] = h.e[i].row, values[i] = h.e[i].v;
        *found = h.n;
    }
    free(h.e), free(v), free(s);
    return rc;
}

/* ---- drawing ---------------------------------------------------------------------------------------- */
static void text_clipped(cairo_t *cr, double x, double y, double w, double h, const char *s)
{
    cairo_save(cr);
    cairo_rectangle(cr, x, y, w, h);
    cairo_clip(cr);
    cairo_move_to(cr, x + 2, y + h - 4);
    cairo_show_text(cr, s);
    cairo_restore(cr);
}

/* One galaxy's cutout through the catalogue's recipe into the tile at (tx, ty); its clump boxes when asked.
 * Returns MC_ROW_OK or a failure status with the reason in err. */
static int draw_tile(rpt_cat *c, int64_t row, const rpt_mosaic_opts *o, cairo_surface_t *surf, cairo_t *cr,
                     int tx, int ty, io_cutout *cut, pp_work *work, float *px, char *err)
{
    size_t wf = rpt_cat_str_width(c, "galaxies/file");
    char *file = mc_malloc(wf);
    if (rpt_cat_read_strs(c, "galaxies/file", wf, row, 1, file, err)) {
        free(file);
        return MC_ROW_CORRUPT;
    }
    char why[MC_ERR_LEN];
    int st = io_cutout_read(file, NULL, cut, why);
    if (st == MC_ROW_OK) {
        st = pp_apply(&c->recipe, cut, 3, o->size, work, px, why);
        if (st != MC_ROW_OK) {
            char tmp[MC_ERR_LEN];
            snprintf(tmp, sizeof tmp, "%s: %s", file, why);
            snprintf(why, sizeof why, "%s", tmp);
        }
    }
    free(file);
    if (st != MC_ROW_OK) {
        snprintf(err, MC_ERR_LEN, "%s", why);
        return st;
    }
    /* asinh gives [0, asinh(q)] (docs/preprocessing.md 4.3): shown scaled to [0, 1] */
    double scale = pp_recipe_resolve(&c->recipe, cut) == PP_ASINH ? 1.0 / asinh(c->recipe.asinh_q) : 1.0;
    cairo_surface_flush(surf);
    unsigned char *data = cairo_image_surface_get_data(surf);
    int stride = cairo_image_surface_get_stride(surf);
    int S = o->size;
    size_t plane = (size_t)S * S;
    for (int y = 0; y < S; y++) {
        uint32_t *dst = (uint32_t *)(data + (size_t)(ty + y) * stride) + tx;
        for (int x = 0; x < S; x++) {
            uint32_t rgb = 0;
            for (int k = 0; k < 3; k++) {
                double v = px[k * plane + (size_t)y * S + x] * scale;
                v = v < 0 ? 0 : v > 1 ? 1 : v;
                rgb = rgb << 8 | (uint32_t)floor(v * 255 + 0.5);
            }
            dst[x] = 0xff000000u | rgb;
        }
    }
    cairo_surface_mark_dirty(surf);
    if (!o->boxes || !c->has_clumps) return MC_ROW_OK;

    int K = c->clump_k;
    uint16_t count = 0;
    uint8_t *label = mc_malloc((size_t)K);
    float *score = mc_malloc(sizeof(float) * (size_t)K), *box = mc_malloc(sizeof(float) * 4 * (size_t)K);
    if (rpt_cat_read(c, "clumps/count", H5T_NATIVE_UINT16, row, 1, &count, err) ||
        rpt_cat_read(c, "clumps/label", H5T_NATIVE_UINT8, row, 1, label, err) ||
        rpt_cat_read(c, "clumps/score", H5T_NATIVE_FLOAT, row, 1, score, err) ||
        rpt_cat_read(c, "clumps/box", H5T_NATIVE_FLOAT, row, 1, box, err))
        count = 0;
    if (count > K) count = (uint16_t)K;
    /* the view's geometry (docs/preprocessing.md 6): the central square of side min(w, h)/zoom, resampled to
     * S pixels; rows flipped when the recipe flips. Boxes are in the stored cutout's pixels. */
    double side = fmin(cut->w, cut->h) / c->recipe.zoom;
    double bx = (cut->w - side) / 2, by = (cut->h - side) / 2, f = S / side;
    cairo_save(cr);
    cairo_rectangle(cr, tx, ty, S, S);
    cairo_clip(cr);
    rpt_font(cr, S >= 96 ? 10 : 8, 1);
    for (int s = count - 1; s >= 0; s--) { /* the best drawn last, on top */
        double x1 = (box[4 * s] - bx) * f, x2 = (box[4 * s + 2] - bx) * f;
        double y1 = (box[4 * s + 1] - by) * f, y2 = (box[4 * s + 3] - by) * f;
        if (c->recipe.flip) {
            double t = S - y2;
            y2 = S - y1;
            y1 = t;
        }
        double rgb[3];
        rpt_class_colour(label[s], rgb);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_set_line_width(cr, 1.5);
        cairo_rectangle(cr, tx + x1, ty + y1, x2 - x1, y2 - y1);
        cairo_stroke(cr);
        char sc[16];
        snprintf(sc, sizeof sc, "%.2f", (double)score[s]);
        cairo_move_to(cr, tx + x1 + 1, ty + (y1 > 10 ? y1 - 2 : y2 + 10));
        cairo_show_text(cr, sc);
    }
    cairo_restore(cr);
    free(label), free(score), free(box);
    return MC_ROW_OK;
}

int rpt_mosaic_write(rpt_cat *c, const int64_t *rows, const char *const *labels, int n,
                     const rpt_mosaic_opts *o, const char *png, int *n_bad, char *err)
{
    *n_bad = 0;
    if (!c->recipe_ok) return mc_fail(err, "%s", c->recipe_err);
    if (n < 1) return mc_fail(err, "%s: no galaxies to draw", png);
    int S = o->size, cols = n < RPT_MOSAIC_COLS ? n : RPT_MOSAIC_COLS, nrow = (n + cols - 1) / cols;
    int W = RPT_MOSAIC_PAD + cols * (S + RPT_MOSAIC_PAD);
    int H = RPT_MOSAIC_PAD + nrow * (S + RPT_MOSAIC_LABEL + RPT_MOSAIC_PAD);
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(surf);
        return mc_fail(
            err,
            "%s: cannot make a %dx%d picture (cairo's limit is 32767 pixels a side: fewer galaxies "
            "or a smaller --size)",
            png, W, H);
    }
    cairo_t *cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 0.12, 0.12, 0.14);
    cairo_paint(cr);
    io_cutout cut = {0};
    pp_work work = {0};
    float *px = mc_malloc_aligned(sizeof(float) * 3 * (size_t)S * S);
    size_t wid = rpt_cat_str_width(c, "galaxies/id_str");
    char *id = mc_malloc(wid);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        int tx = RPT_MOSAIC_PAD + (i % cols) * (S + RPT_MOSAIC_PAD);
        int ty = RPT_MOSAIC_PAD + (i / cols) * (S + RPT_MOSAIC_LABEL + RPT_MOSAIC_PAD);
        if ((rc = rpt_cat_read_strs(c, "galaxies/id_str", wid, rows[i], 1, id, err))) break;
        char why[MC_ERR_LEN];
        int st = draw_tile(c, rows[i], o, surf, cr, tx, ty, &cut, &work, px, why);
        if (st != MC_ROW_OK) {
            fprintf(stderr, "morphcat: mosaic: %s: %s: %s\n", id, mc_row_status_name(st), why);
            (*n_bad)++;
            cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
            cairo_rectangle(cr, tx, ty, S, S);
            cairo_fill(cr);
            cairo_set_source_rgb(cr, 1, 0.6, 0.6);
            rpt_font(cr, 10, 1);
            text_clipped(cr, tx, ty + S / 2 - 8, S, 16, mc_row_status_name(st));
        }
        char text[600];
        snprintf(text, sizeof text, "%s%s%s", id, labels && labels[i] && labels[i][0] ? "  " : "",
                 labels && labels[i] ? labels[i] : "");
        cairo_set_source_rgb(cr, 0.95, 0.95, 0.95);
        rpt_font(cr, S >= 96 ? 10 : 8, 0);
        text_clipped(cr, tx, ty + S, S, RPT_MOSAIC_LABEL, text);
    }
    cairo_destroy(cr);
    if (!rc) rc = rpt_png_write(surf, png, err);
    cairo_surface_destroy(surf);
    io_cutout_free(&cut);
    pp_work_free(&work);
    free(px), free(id);
    return rc;
}
