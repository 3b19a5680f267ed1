/* report/page.c: `morphcat report`: one static HTML page (no scripts, nothing fetched) with PNG figures drawn
 * by cairo: the job's identity and provenance, counts by status, the failed galaxies, per-question histograms
 * of the vote fractions, mosaics of the most confident galaxies for the main answers, and the clumps. One
 * streaming pass gathers everything: exact histograms and counts, the first failures (the total is always
 * given), top-N heaps for the mosaics; then only the galaxies shown are decoded. Not here: mosaic drawing
 * (report/mosaic.c). */
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <time.h>

#include "report/report_internal.h"

#define NBINS 20

typedef struct failure {
    int64_t row;
    uint8_t status;
    char *id, *msg;
} failure;

typedef struct main_answer {
    int a;
    rpt_heap heap;
} main_answer;

typedef struct gather {
    int64_t counts[MC_ROW_NSTATUS];
    failure *fail;
    int n_fail;
    int64_t total_fail;
    int64_t (*hist)[NBINS]; /* per answer, ok rows with a finite fraction */
    int64_t *hist_n;
    main_answer *mains;
    int n_mains;
    int64_t *clump_hist; /* galaxies with k clumps, k = 0..K, over rows whose detection ran */
    int64_t clumps_total, clump_rows, clump_failed;
    rpt_heap clump_heap;
} gather;

static void html_esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

/* question of an answer column: the part before the first '_' (Galaxy Zoo question names use hyphens) */
static size_t question_len(const char *answer)
{
    const char *u = strchr(answer, '_');
    return u ? (size_t)(u - answer) : strlen(answer);
}

static int starts_with(const char *s, const char *p)
{
    return !strncmp(s, p, strlen(p));
}

/* The main answers: every answer of the first question (smooth or featured), then the first question named
 * disk-edge-on*, has-spiral-arms* and bar* (their first answer: yes, yes, strong) and merging* (its last:
 * merger). A schema repeating questions per campaign (decals_all_campaigns) gives each once. */
static int pick_mains(const rpt_cat *c, int *out)
{
    int n = 0, A = c->n_answers;
    if (!A) return 0;
    size_t q0 = question_len(c->answers[0]);
    for (int a = 0;
         a < A && n < 56 && question_len(c->answers[a]) == q0 && !strncmp(c->answers[a], c->answers[0], q0);
         a++)
        out[n++] = a;
    static const char *const pref[] = {"disk-edge-on", "has-spiral-arms", "bar", "merging"};
    for (int p = 0; p < 4; p++)
        for (int a = 0; a < A; a++) {
            if (!starts_with(c->answers[a], pref[p])) continue;
            size_t ql = question_len(c->answers[a]);
            int last = a;
            while (last + 1 < A && question_len(c->answers[last + 1]) == ql &&
                   !strncmp(c->answers[last + 1], c->answers[a], ql))
                last++;
            out[n++] = p == 3 ? last : a;
            break;
        }
    return n;
}

static int gather_pass(rpt_cat *c, const rpt_report_opts *o, gather *g, char *err)
{
    int A = c->n_answers, K = c->clump_k;
    size_t wid = rpt_cat_str_width(c, "galaxies/id_str"), wmsg = rpt_cat_str_width(c, "galaxies/message");
    uint8_t *st = mc_malloc(RPT_CHUNK_ROWS);
    char *ids = mc_malloc(wid * RPT_CHUNK_ROWS), *msg = mc_malloc(wmsg * RPT_CHUNK_ROWS);
    float *frac = A ? mc_malloc(sizeof(float) * (size_t)A * RPT_CHUNK_ROWS) : NULL;
    float *asked = A ? mc_malloc(sizeof(float) * (size_t)A * RPT_CHUNK_ROWS) : NULL;
    uint16_t *cnt = K ? mc_malloc(sizeof(uint16_t) * RPT_CHUNK_ROWS) : NULL;
    uint8_t *cst = K ? mc_malloc(RPT_CHUNK_ROWS) : NULL;
    float *score = K ? mc_malloc(sizeof(float) * (size_t)K * RPT_CHUNK_ROWS) : NULL;
    int rc = 0;
    for (int64_t r0 = 0; r0 < c->n_rows && !rc; r0 += RPT_CHUNK_ROWS) {
        int64_t m = c->n_rows - r0 < RPT_CHUNK_ROWS ? c->n_rows - r0 : RPT_CHUNK_ROWS;
        if ((rc = rpt_cat_read(c, "galaxies/status", H5T_NATIVE_UINT8, r0, m, st, err))) break;
        int any_fail = 0;
        for (int64_t i = 0; i < m; i++) {
            g->counts[st[i] < MC_ROW_NSTATUS ? st[i] : 0]++;
            any_fail |= st[i] > MC_ROW_OK;
        }
        /* ids and messages only where failures still fit in the list */
        if (any_fail && g->n_fail < o->max_failures &&
            ((rc = rpt_cat_read_strs(c, "galaxies/id_str", wid, r0, m, ids, err)) ||
             (rc = rpt_cat_read_strs(c, "galaxies/message", wmsg, r0, m, msg, err))))
            break;
        for (int64_t i = 0; i < m; i++) {
            if (st[i] <= MC_ROW_OK) continue;
            g->total_fail++;
            if (g->n_fail < o->max_failures)
                g->fail[g->n_fail++] = (failure){r0 + i, st[i], mc_strdup(ids + (size_t)i * wid),
                                                 mc_strdup(msg + (size_t)i * wmsg)};
        }
        if (A) {
            if ((rc = rpt_cat_read(c, "morphology/fraction", H5T_NATIVE_FLOAT, r0, m, frac, err)) ||
                (rc = rpt_cat_read(c, "morphology/proportion_asked", H5T_NATIVE_FLOAT, r0, m, asked, err)))
                break;
            for (int64_t i = 0; i < m; i++) {
                if (st[i] != MC_ROW_OK) continue;
                const float *f = frac + (size_t)i * A, *q = asked + (size_t)i * A;
                for (int a = 0; a < A; a++) {
                    if (!isfinite(f[a])) continue;
                    int b = (int)(f[a] * NBINS);
                    b = b < 0 ? 0 : b >= NBINS ? NBINS - 1 : b;
                    g->hist[a][b]++;
                    g->hist_n[a]++;
                }
                /* confident = largest fraction among galaxies whose question most volunteers would be asked
                 */
                for (int k = 0; k < g->n_mains; k++) {
                    int a = g->mains[k].a;
                    if (isfinite(f[a]) && q[a] >= 0.5f) rpt_heap_offer(&g->mains[k].heap, f[a], r0 + i);
                }
            }
        }
        if (K) {
            if ((rc = rpt_cat_read(c, "clumps/count", H5T_NATIVE_UINT16, r0, m, cnt, err)) ||
                (rc = rpt_cat_read(c, "clumps/status", H5T_NATIVE_UINT8, r0, m, cst, err)) ||
                (rc = rpt_cat_read(c, "clumps/score", H5T_NATIVE_FLOAT, r0, m, score, err)))
                break;
            for (int64_t i = 0; i < m; i++) {
                if (cst[i] == 0) continue;
                if (cst[i] != MC_ROW_OK) {
                    g->clump_failed++;
                    continue;
                }
                int k = cnt[i] > K ? K : cnt[i];
                g->clump_hist[k]++;
                g->clump_rows++;
                g->clumps_total += k;
                /* examples: most clumps first, then the best first score */
                if (k > 0) rpt_heap_offer(&g->clump_heap, (float)k + 0.5f * score[(size_t)i * K], r0 + i);
            }
        }
    }
    free(st), free(ids), free(msg), free(frac), free(asked), free(cnt), free(cst), free(score);
    return rc;
}

/* ---- charts ----------------------------------------------------------------------------------------- */
#define CW 440
#define CH 240
#define ML 58
#define MR 12
#define MT 28
#define MB 40

static void axes(cairo_t *cr, const char *title, const char *xlabel, double ymax)
{
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    rpt_font(cr, 12, 1);
    cairo_move_to(cr, ML, 18);
    cairo_show_text(cr, title);
    rpt_font(cr, 10, 0);
    cairo_set_line_width(cr, 1);
    cairo_move_to(cr, ML + 0.5, MT);
    cairo_line_to(cr, ML + 0.5, CH - MB + 0.5);
    cairo_line_to(cr, CW - MR, CH - MB + 0.5);
    cairo_stroke(cr);
    for (int t = 0; t <= 4; t++) { /* y ticks */
        double y = CH - MB - (CH - MB - MT) * t / 4.0;
        char lab[32];
        double v = ymax * t / 4.0;
        snprintf(lab, sizeof lab, v >= 1e5 ? "%.2g" : "%.0f", v);
        cairo_text_extents_t e;
        cairo_text_extents(cr, lab, &e);
        cairo_move_to(cr, ML - 4 - e.width, y + 4);
        cairo_show_text(cr, lab);
        cairo_move_to(cr, ML - 3, y + 0.5);
        cairo_line_to(cr, ML, y + 0.5);
        cairo_stroke(cr);
    }
    cairo_text_extents_t e;
    cairo_text_extents(cr, xlabel, &e);
    cairo_move_to(cr, ML + (CW - ML - MR - e.width) / 2, CH - 8);
    cairo_show_text(cr, xlabel);
}

static double nice_max(int64_t v)
{
    if (v < 4) return 4;
    double p = pow(10, floor(log10((double)v))), r = v / p;
    return (r <= 2 ? 2 : r <= 4 ? 4 : r <= 5 ? 5 : 10) * p;
}

/* One question's answers as step lines of galaxies per fraction bin. */
static int chart_question(const char *path, const rpt_cat *c, const gather *g, int a0, int a1, char *err)
{
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, CW, CH);
    cairo_t *cr = cairo_create(s);
    int64_t mx = 0, n = 0;
    for (int a = a0; a < a1; a++) {
        if (g->hist_n[a] > n) n = g->hist_n[a];
        for (int b = 0; b < NBINS; b++)
            if (g->hist[a][b] > mx) mx = g->hist[a][b];
    }
    char title[300], q[256];
    size_t ql = question_len(c->answers[a0]);
    snprintf(q, sizeof q, "%.*s", (int)(ql < 200 ? ql : 200), c->answers[a0]);
    snprintf(title, sizeof title, "%s (%lld galaxies)", q, (long long)n);
    double ymax = nice_max(mx);
    axes(cr, title, "vote fraction (expected, Dirichlet mean)", ymax);
    double pw = CW - ML - MR, ph = CH - MB - MT;
    for (int t = 0; t <= 5; t++) { /* x ticks */
        char lab[8];
        snprintf(lab, sizeof lab, "%.1f", t / 5.0);
        double x = ML + pw * t / 5.0;
        cairo_move_to(cr, x - 7, CH - MB + 13);
        cairo_show_text(cr, lab);
    }
    cairo_set_line_width(cr, 1.8);
    for (int a = a0; a < a1; a++) {
        double rgb[3];
        rpt_series_colour(a - a0, rgb);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_move_to(cr, ML, CH - MB);
        for (int b = 0; b < NBINS; b++) {
            double y = CH - MB - ph * (double)g->hist[a][b] / ymax;
            cairo_line_to(cr, ML + pw * b / NBINS, y);
            cairo_line_to(cr, ML + pw * (b + 1) / NBINS, y);
        }
        cairo_line_to(cr, ML + pw, CH - MB);
        cairo_stroke(cr);
        /* legend: the answer's name after the question */
        int ly = MT + 4 + 13 * (a - a0);
        cairo_rectangle(cr, CW - MR - 130, ly, 10, 8);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        rpt_font(cr, 10, 0);
        cairo_move_to(cr, CW - MR - 116, ly + 8);
        cairo_show_text(cr, c->answers[a] + ql + (c->answers[a][ql] == '_'));
    }
    cairo_destroy(cr);
    int rc = rpt_png_write(s, path, err);
    cairo_surface_destroy(s);
    return rc;
}

static int chart_clumps(const char *path, const gather *g, int K, char *err)
{
    int kmax = 0;
    int64_t mx = 0;
    for (int k = 0; k <= K; k++)
        if (g->clump_hist[k]) {
            kmax = k;
            if (g->clump_hist[k] > mx) mx = g->clump_hist[k];
        }
    if (kmax < 5) kmax = 5;
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, CW, CH);
    cairo_t *cr = cairo_create(s);
    char title[128];
    snprintf(title, sizeof title, "clumps per galaxy (%lld galaxies)", (long long)g->clump_rows);
    double ymax = nice_max(mx);
    axes(cr, title, "clumps detected in the galaxy", ymax);
    double pw = CW - ML - MR, ph = CH - MB - MT, bw = pw / (kmax + 1);
    double rgb[3];
    rpt_series_colour(0, rgb);
    for (int k = 0; k <= kmax; k++) {
        double h = ph * (double)g->clump_hist[k] / ymax;
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_rectangle(cr, ML + k * bw + 1, CH - MB - h, bw - 2, h);
        cairo_fill(cr);
        if (kmax <= 30 || k % 5 == 0) {
            char lab[8];
            snprintf(lab, sizeof lab, "%d", k);
            cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
            cairo_move_to(cr, ML + k * bw + bw / 2 - 3, CH - MB + 13);
            cairo_show_text(cr, lab);
        }
    }
    cairo_destroy(cr);
    int rc = rpt_png_write(s, path, err);
    cairo_surface_destroy(s);
    return rc;
}

/* ---- the page --------------------------------------------------------------------------------------- */
static void kv_row(FILE *f, const char *k, const char *v)
{
    fputs("<tr><th>", f);
    html_esc(f, k);
    fputs("</th><td>", f);
    html_esc(f, v);
    fputs("</td></tr>\n", f);
}

static void attr_row(FILE *f, const rpt_cat *c, const char *label, const char *attr, const char *fallback)
{
    char buf[8192];
    if (rpt_cat_attr(c, attr, buf, sizeof buf)) {
        if (!fallback) return;
        snprintf(buf, sizeof buf, "%s", fallback);
    }
    kv_row(f, label, buf);
}

static void img(FILE *f, const char *src, const char *alt, int w, int h)
{
    fprintf(f, "<img src=\"%s\" width=\"%d\" height=\"%d\" alt=\"", src, w, h);
    html_esc(f, alt);
    fputs("\">\n", f);
}

static void png_size(int n, int S, int *w, int *h)
{
    int cols = n < RPT_MOSAIC_COLS ? n : RPT_MOSAIC_COLS, rows = (n + cols - 1) / cols;
    *w = RPT_MOSAIC_PAD + cols * (S + RPT_MOSAIC_PAD);
    *h = RPT_MOSAIC_PAD + rows * (S + RPT_MOSAIC_LABEL + RPT_MOSAIC_PAD);
}

static void sanitize(char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_'))
            *s = '_';
}

static int write_page(rpt_cat *c, const char *catalogue, const char *dir, const rpt_report_opts *o, gather *g,
                      char *err)
{
    char path[4400], html[4400], tmp[4500];
    snprintf(html, sizeof html, "%s/index.html", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", html);
    FILE *f = fopen(tmp, "w");
    if (!f) return mc_fail(err, "%s: cannot be written: %s", tmp, strerror(errno));
    const char *base = strrchr(catalogue, '/') ? strrchr(catalogue, '/') + 1 : catalogue;
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>morphcat report: ", f);
    html_esc(f, base);
    fputs("</title>\n<style>\nbody{font-family:'DejaVu Sans',sans-serif;margin:1.5em "
          "auto;max-width:1100px;color:#222}\n"
          "h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid "
          "#ccc;padding-bottom:.2em;margin-top:1.6em}\n"
          "table{border-collapse:collapse;font-size:.9em}th,td{border:1px solid #ddd;padding:.25em .6em;"
          "text-align:left;vertical-align:top}\nth{background:#f3f3f3}td.n{text-align:right}\n"
          ".figs img{margin:.3em;border:1px solid #ddd}.note{color:#555;font-size:.9em}\n"
          "td.msg{font-family:monospace;font-size:.85em;word-break:break-all}\n</style></head><body>\n",
          f);
    fputs("<h1>morphcat release report: ", f);
    html_esc(f, base);
    fputs("</h1>\n", f);

    fputs("<h2 id=\"provenance\">Identity and provenance</h2>\n<table>\n", f);
    kv_row(f, "catalogue", catalogue);
    char buf[256];
    snprintf(buf, sizeof buf, "%lld", (long long)c->n_rows);
    kv_row(f, "galaxies (rows)", buf);
    attr_row(f, c, "model", "model_arch", "unknown");
    attr_row(f, c, "model file", "model_path", NULL);
    attr_row(f, c, "model sha256", "model_sha256", NULL);
    attr_row(f, c, "model note", "model_note", NULL);
    attr_row(f, c, "head", "model_head", NULL);
    attr_row(f, c, "schema", "schema", NULL);
    attr_row(f, c, "precision", "precision", "fp32");
    attr_row(f, c, "recipe", "preprocessing", "unknown");
    attr_row(f, c, "input size", "input_size", NULL);
    attr_row(f, c, "embedding", "embedding_dtype", NULL);
    attr_row(f, c, "release", "release", "");
    attr_row(f, c, "software version (job)", "morphcat_version", "unknown");
    snprintf(buf, sizeof buf, "morphcat %s", MC_VERSION);
    kv_row(f, "software version (this report)", buf);
    attr_row(f, c, "created (UTC)", "created_utc", NULL);
    attr_row(f, c, "manifest", "manifest_path", NULL);
    attr_row(f, c, "manifest sha256", "manifest_sha256", NULL);
    attr_row(f, c, "BLAS", "blas", NULL);
    attr_row(f, c, "detector sha256", "detector_sha256", NULL);
    attr_row(f, c, "clump post-processing", "clump_postprocessing", NULL);
    attr_row(f, c, "merged from", "merged_from", NULL);
    attr_row(f, c, "rerun of", "rerun_of", NULL);
    fputs("</table>\n", f);

    fputs("<h2 id=\"status\">Galaxies by "
          "status</h2>\n<table>\n<tr><th>status</th><th>galaxies</th><th>share</th></tr>\n",
          f);
    for (int k = 0; k < MC_ROW_NSTATUS; k++) {
        if (!g->counts[k] && k != MC_ROW_OK) continue;
        fprintf(f, "<tr><td>%s</td><td class=\"n\">%lld</td><td class=\"n\">%.2f%%</td></tr>\n",
                mc_row_status_name(k), (long long)g->counts[k],
                c->n_rows ? 100.0 * g->counts[k] / c->n_rows : 0.0);
    }
    fputs("</table>\n", f);
    if (g->counts[MC_ROW_PENDING])
        fprintf(f,
                "<p class=\"note\">%lld rows are still pending: the job has not finished (rerun it to "
                "resume).</p>\n",
                (long long)g->counts[MC_ROW_PENDING]);

    fprintf(f, "<h2 id=\"failures\">Failed galaxies (%lld)</h2>\n", (long long)g->total_fail);
    if (g->total_fail > g->n_fail)
        fprintf(f,
                "<p class=\"note\">The first %d of %lld failed galaxies, in catalogue order; "
                "<code>morphcat export</code> lists them all.</p>\n",
                g->n_fail, (long long)g->total_fail);
    if (g->n_fail) {
        fputs("<table>\n<tr><th>row</th><th>id_str</th><th>status</th><th>message</th></tr>\n", f);
        for (int i = 0; i < g->n_fail; i++) {
            fprintf(f, "<tr><td class=\"n\">%lld</td><td>", (long long)g->fail[i].row);
            html_esc(f, g->fail[i].id);
            fprintf(f, "</td><td>%s</td><td class=\"msg\">", mc_row_status_name(g->fail[i].status));
            html_esc(f, g->fail[i].msg);
            fputs("</td></tr>\n", f);
        }
        fputs("</table>\n", f);
    } else {
        fputs("<p>None.</p>\n", f);
    }

    int rc = 0, A = c->n_answers;
    if (A) {
        fprintf(
            f,
            "<h2 id=\"confident\">Most confident galaxies</h2>\n<p class=\"note\">Per main answer, the %d ok "
            "galaxies with the largest vote fraction among those whose question at least half the "
            "volunteers would be asked, rendered by the catalogue's recipe.</p>\n",
            o->top);
        for (int k = 0; k < g->n_mains && !rc; k++) {
            main_answer *ma = &g->mains[k];
            rpt_heap_sort(&ma->heap);
            fputs("<h3>", f);
            html_esc(f, c->answers[ma->a]);
            fputs("_fraction</h3>\n", f);
            if (!ma->heap.n) {
                fputs("<p>No galaxy qualifies.</p>\n", f);
                continue;
            }
            int64_t rows[64];
            char lab[64][16];
            const char *labs[64];
            for (int i = 0; i < ma->heap.n; i++) {
                rows[i] = ma->heap.e[i].row;
                snprintf(lab[i], sizeof lab[i], "%.3f", (double)ma->heap.e[i].v);
                labs[i] = lab[i];
            }
            char name[300];
            snprintf(name, sizeof name, "top_%s.png", c->answers[ma->a]);
            sanitize(name + 4);
            memcpy(name + strlen(name) - 4, ".png", 4);
            snprintf(path, sizeof path, "%s/%s", dir, name);
            rpt_mosaic_opts mo = {.size = o->tile, .boxes = 0};
            int bad;
            if ((rc = rpt_mosaic_write(c, rows, labs, ma->heap.n, &mo, path, &bad, err))) break;
            int w, h;
            png_size(ma->heap.n, o->tile, &w, &h);
            img(f, name, c->answers[ma->a], w, h);
        }
    }
    if (c->has_clumps && !rc) {
        fputs("<h2 id=\"clumps\">Clumps</h2>\n", f);
        fprintf(
            f,
            "<p>%lld clumps in %lld galaxies whose detection ran (%.2f per galaxy); %lld galaxies could not "
            "be searched.</p>\n",
            (long long)g->clumps_total, (long long)g->clump_rows,
            g->clump_rows ? (double)g->clumps_total / g->clump_rows : 0.0, (long long)g->clump_failed);
        snprintf(path, sizeof path, "%s/clumps_per_galaxy.png", dir);
        if (!(rc = chart_clumps(path, g, c->clump_k, err))) {
            fputs("<div class=\"figs\">\n", f);
            img(f, "clumps_per_galaxy.png", "clumps per galaxy", CW, CH);
            fputs("</div>\n", f);
        }
        rpt_heap_sort(&g->clump_heap);
        if (!rc && g->clump_heap.n) {
            int64_t rows[64];
            char lab[64][16];
            const char *labs[64];
            for (int i = 0; i < g->clump_heap.n; i++) {
                rows[i] = g->clump_heap.e[i].row;
                snprintf(lab[i], sizeof lab[i], "%d clumps", (int)g->clump_heap.e[i].v);
                labs[i] = lab[i];
            }
            snprintf(path, sizeof path, "%s/clumps_examples.png", dir);
            /* larger tiles: the boxes and their scores need the room */
            rpt_mosaic_opts mo = {.size = o->tile * 2 > 512 ? 512 : o->tile * 2, .boxes = 1};
            int bad;
            if (!(rc = rpt_mosaic_write(c, rows, labs, g->clump_heap.n, &mo, path, &bad, err))) {
                fputs(
                    "<p class=\"note\">The galaxies with the most clumps, boxes in the class colours (yellow "
                    "clump, magenta odd clump) with their scores.</p>\n<div class=\"figs\">\n",
                    f);
                int w, h;
                png_size(g->clump_heap.n, mo.size, &w, &h);
                img(f, "clumps_examples.png", "galaxies with the most clumps, with their boxes", w, h);
                fputs("</div>\n", f);
            }
        }
    }
    if (A && !rc) {
        fputs("<h2 id=\"fractions\">Vote fractions by question</h2>\n<p class=\"note\">Histograms over every "
              "ok "
              "galaxy (exact, one pass), 20 bins of the expected vote fraction.</p>\n<div class=\"figs\">\n",
              f);
        for (int a0 = 0, qi = 0; a0 < A && !rc; qi++) {
            size_t ql = question_len(c->answers[a0]);
            int a1 = a0 + 1;
            while (a1 < A && question_len(c->answers[a1]) == ql &&
                   !strncmp(c->answers[a1], c->answers[a0], ql))
                a1++;
            char name[64];
            snprintf(name, sizeof name, "hist_%02d.png", qi);
            snprintf(path, sizeof path, "%s/%s", dir, name);
            rc = chart_question(path, c, g, a0, a1, err);
            char alt[300];
            snprintf(alt, sizeof alt, "vote fractions of %.*s", (int)(ql < 200 ? ql : 200), c->answers[a0]);
            img(f, name, alt, CW, CH);
            a0 = a1;
        }
        fputs("</div>\n", f);
    }
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    fprintf(
        f,
        "<p class=\"note\">Written by morphcat %s at %s. A static page: no scripts, nothing fetched.</p>\n"
        "</body></html>\n",
        MC_VERSION, buf);
    int bad = ferror(f);
    if (fclose(f) || bad) rc = rc ? rc : mc_fail(err, "%s: write failed (disk full?)", tmp);
    if (!rc && rename(tmp, html))
        rc = mc_fail(err, "%s: cannot be renamed into place: %s", html, strerror(errno));
    if (rc) remove(tmp);
    return rc;
}

int rpt_report_write(const char *catalogue, const char *dir, const rpt_report_opts *o, char *err)
{
    if (mkdir(dir, 0777) && errno != EEXIST)
        return mc_fail(err, "%s: cannot make the folder: %s", dir, strerror(errno));
    rpt_cat *c;
    if (rpt_cat_open(catalogue, &c, err)) return -1;
    if (!c->recipe_ok) {
        mc_fail(err, "%s", c->recipe_err);
        rpt_cat_close(c);
        return -1;
    }
    gather g = {0};
    int A = c->n_answers;
    g.fail = mc_calloc((size_t)(o->max_failures > 0 ? o->max_failures : 1), sizeof *g.fail);
    g.hist = mc_calloc((size_t)(A > 0 ? A : 1), sizeof *g.hist);
    g.hist_n = mc_calloc((size_t)(A > 0 ? A : 1), sizeof *g.hist_n);
    int mains[64];
    g.n_mains = pick_mains(c, mains);
    g.mains = mc_calloc((size_t)(g.n_mains > 0 ? g.n_mains : 1), sizeof *g.mains);
    for (int k = 0; k < g.n_mains; k++)
        g.mains[k] = (main_answer){mains[k], {mc_malloc(sizeof(rpt_hent) * (size_t)o->top), 0, o->top}};
    g.clump_hist = mc_calloc((size_t)c->clump_k + 1, sizeof *g.clump_hist);
    g.clump_heap = (rpt_heap){mc_malloc(sizeof(rpt_hent) * (size_t)o->top), 0, o->top};
    int rc = gather_pass(c, o, &g, err);
    if (!rc) rc = write_page(c, catalogue, dir, o, &g, err);
    for (int i = 0; i < g.n_fail; i++) free(g.fail[i].id), free(g.fail[i].msg);
    for (int k = 0; k < g.n_mains; k++) free(g.mains[k].heap.e);
    free(g.fail), free(g.hist), free(g.hist_n), free(g.mains), free(g.clump_hist), free(g.clump_heap.e);
    rpt_cat_close(c);
    return rc;
}
