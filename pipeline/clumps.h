/* pipeline/clumps.h: giant star-forming clumps from a cutout, as Galaxy Zoo: Clump Scout's release finds
 * them: the cutout rendered to an RGB picture by the job's recipe (at its own resolution), torchvision's
 * Faster R-CNN (nn/nn.h), then the release's post-processing, each step configurable: class-agnostic NMS
 * at IoU 0.2, score >= 0.3, an optional crop of the input (Clump Scout trained on the central 200 px of
 * its 400 px images), and dropping detections at the galaxy's centre (the bulge). Shared by `morphcat
 * detect` and the catalogue job. */
#ifndef PIPELINE_CLUMPS_H
#define PIPELINE_CLUMPS_H

#include "io/cutout.h"
#include "io/preprocess.h"
#include "nn/nn.h"

typedef struct mc_clump_post {
    double nms;       /* class-agnostic NMS IoU over all labels; <= 0: off */
    double min_score; /* keep score >= this */
    double centre;    /* drop a detection whose box centre lies within this fraction of the image side from the
                       * image centre (0: off) */
    int crop[4];      /* x0, y0, x1, y1 in input pixels: detect on this part only (all 0: the whole image) */
    int max_clumps;   /* detections kept per galaxy (the catalogue's width) */
} mc_clump_post;

/* "clumpscout" (nms 0.2, score 0.3, centre 0.02, no crop, 20 per galaxy), "none" (torchvision's output as
 * it is, up to 100), or "key=value,..." over those defaults: nms, score, centre, crop=x0;y0;x1;y1, max. */
int mc_clump_post_parse(const char *spec, mc_clump_post *p, char *err);
void mc_clump_post_describe(const mc_clump_post *p, char *buf, size_t len);

/* The detector's input for a cutout: the recipe's colours at the cutout's own resolution (zoom 1, the
 * central square for non-square cutouts; a PNG/JPEG is its own pixels / 255), cropped as p says. Writes
 * 3 x h x w floats to *buf (grown as needed) and the picture's placement in the cutout: its pixel (0, 0)
 * is the cutout's pixel (x0, y0), rows run as the recipe's flip says. */
typedef struct mc_clump_view {
    int h, w, x0, y0, flip;
} mc_clump_view;
int mc_clump_render(const pp_recipe *r, const io_cutout *c, const mc_clump_post *p, pp_work *work, float **buf,
                    size_t *cap, mc_clump_view *v, char *err);

/* Detections of the view back in cutout pixels, then the post-processing; returns the count kept (<= max),
 * by decreasing score. dets holds n detections on entry. */
int mc_clump_post_apply(const mc_clump_post *p, const mc_clump_view *v, nn_detection *dets, int n);

/* Sky position (deg) of a detection's box centre through the cutout's WCS (NaN when w is NULL). Boxes are
 * in the cutout's plane pixels (x along a row, y along the stored rows, 0 at the first pixel's edge). */
void mc_clump_radec(const io_wcs *w, const nn_detection *d, double *ra, double *dec);

#endif
