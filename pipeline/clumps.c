/* pipeline/clumps.c: Clump Scout's use of the detector: rendering a cutout for it, the release's
 * post-processing, and sky positions of the detections (see pipeline/clumps.h). */
#include "pipeline/clumps.h"

#include <math.h>
#include <strings.h>

static void post_defaults(mc_clump_post *p)
{
    *p = (mc_clump_post){.nms = 0.2, .min_score = 0.3, .centre = 0.02, .max_clumps = 20};
}

int mc_clump_post_parse(const char *spec, mc_clump_post *p, char *err)
{
    post_defaults(p);
    if (!spec || !spec[0] || !strcmp(spec, "clumpscout")) return 0;
    if (!strcmp(spec, "none")) {
        *p = (mc_clump_post){.nms = 0, .min_score = 0, .centre = 0, .max_clumps = 100};
        return 0;
    }
    char buf[512];
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    for (char *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) return mc_fail(err, "clump post-processing '%s': '%s' is not key=value", spec, kv);
        *eq = 0;
        const char *k = kv, *v = eq + 1;
        char *end = NULL;
        if (!strcmp(k, "crop")) {
            int n = sscanf(v, "%d;%d;%d;%d", &p->crop[0], &p->crop[1], &p->crop[2], &p->crop[3]);
            if (n != 4 || p->crop[0] < 0 || p->crop[1] < 0 || p->crop[2] <= p->crop[0] || p->crop[3] <= p->crop[1])
                return mc_fail(err, "clump post-processing '%s': crop must be x0;y0;x1;y1 with x0 < x1, y0 < y1", spec);
            continue;
        }
        double x = strtod(v, &end);
        if (!end || *end || end == v) return mc_fail(err, "clump post-processing '%s': %s=%s is not a number", spec, k, v);
        if (!strcmp(k, "nms") && x >= 0 && x <= 1) p->nms = x;
        else if (!strcmp(k, "score") && x >= 0 && x <= 1) p->min_score = x;
        else if (!strcmp(k, "centre") && x >= 0 && x <= 1) p->centre = x;
        else if (!strcmp(k, "max") && x >= 1 && x <= 1000 && x == floor(x)) p->max_clumps = (int)x;
        else
            return mc_fail(err, "clump post-processing '%s': unknown key or value out of range '%s=%s' (known: nms, "
                           "score, centre in [0, 1]; max 1..1000; crop=x0;y0;x1;y1)", spec, k, v);
    }
    return 0;
}

void mc_clump_post_describe(const mc_clump_post *p, char *buf, size_t len)
{
    snprintf(buf, len, "nms=%g,score=%g,centre=%g,crop=%d;%d;%d;%d,max=%d", p->nms, p->min_score, p->centre,
             p->crop[0], p->crop[1], p->crop[2], p->crop[3], p->max_clumps);
}

int mc_clump_render(const pp_recipe *r, const io_cutout *c, const mc_clump_post *p, pp_work *work, float **buf,
                    size_t *cap, mc_clump_view *v, char *err)
{
    pp_recipe rr = *r;
    rr.zoom = 1.0;
    int side = c->w < c->h ? c->w : c->h;
    size_t need = (size_t)3 * side * side;
    if (*cap < need) {
        free(*buf);
        *buf = mc_malloc_aligned(need * sizeof(float));
        *cap = need;
    }
    int st = pp_apply(&rr, c, 3, side, work, *buf, err);
    if (st != MC_ROW_OK) return st;
    *v = (mc_clump_view){.h = side, .w = side, .x0 = (c->w - side) / 2, .y0 = (c->h - side) / 2, .flip = rr.flip};
    if (p->crop[2] > 0) {
        if (p->crop[2] > side || p->crop[3] > side) {
            mc_fail(err, "the crop (%d,%d,%d,%d) does not fit in the %dx%d picture", p->crop[0], p->crop[1],
                    p->crop[2], p->crop[3], side, side);
            return MC_ROW_BAD_SHAPE;
        }
        int cw = p->crop[2] - p->crop[0], ch = p->crop[3] - p->crop[1];
        float *o = *buf;
        for (int k = 0; k < 3; k++)
            for (int y = 0; y < ch; y++)
                memmove(o + ((size_t)k * ch + y) * cw, *buf + ((size_t)k * side + p->crop[1] + y) * side + p->crop[0],
                        sizeof(float) * (size_t)cw);
        /* the crop is in the picture's rows; in a flipped picture they run against the cutout's */
        v->x0 += p->crop[0];
        v->y0 += v->flip ? side - p->crop[3] : p->crop[1];
        v->h = ch;
        v->w = cw;
    }
    return MC_ROW_OK;
}

int mc_clump_post_apply(const mc_clump_post *p, const mc_clump_view *v, nn_detection *d, int n)
{
    if (p->nms > 0) n = nn_detections_nms(d, n, p->nms);
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!((double)d[i].score >= p->min_score)) continue;
        double cx = 0.5 * (d[i].x1 + d[i].x2) / v->w - 0.5, cy = 0.5 * (d[i].y1 + d[i].y2) / v->h - 0.5;
        if (p->centre > 0 && sqrt(cx * cx + cy * cy) < p->centre) continue;
        nn_detection e = d[i];
        e.x1 += (float)v->x0;
        e.x2 += (float)v->x0;
        if (v->flip) { /* picture row y is cutout row y0 + h - 1 - y: edges map to y0 + h - y */
            float y1 = (float)(v->y0 + v->h) - d[i].y2, y2 = (float)(v->y0 + v->h) - d[i].y1;
            e.y1 = y1;
            e.y2 = y2;
        } else {
            e.y1 += (float)v->y0;
            e.y2 += (float)v->y0;
        }
        d[k++] = e;
        if (k == p->max_clumps) break;
    }
    return k;
}

void mc_clump_radec(const io_wcs *w, const nn_detection *d, double *ra, double *dec)
{
    /* continuous plane coordinate u (0 at the first pixel's edge) is FITS pixel u + 0.5 */
    double x = 0.5 * ((double)d->x1 + d->x2) + 0.5, y = 0.5 * ((double)d->y1 + d->y2) + 0.5;
    if (io_wcs_pix2sky(w, x, y, ra, dec)) *ra = *dec = NAN;
}
