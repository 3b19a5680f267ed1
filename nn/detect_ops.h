/* nn/detect_ops.h: the image and box operations of torchvision's two-stage detectors (0.14, CPU, float32):
 * the GeneralizedRCNNTransform resize, anchor tables, box decoding and clipping, NMS and batched NMS, the
 * RoI level mapper and RoIAlign (aligned=False). Each follows torchvision's float32 arithmetic in the same
 * order (facts: ../shared/notes/frcnn.md section 2), and this file is compiled without FMA contraction so
 * box coordinates round as torch's separate tensor operations do. Policy-free: no thresholds of its own,
 * no allocation; callers pass scratch. Used by nn/detect.c; a future detector reuses them as they are. */
#ifndef NN_DETECT_OPS_H
#define NN_DETECT_OPS_H

#include "mc.h"

typedef struct nn_box {
    float x1, y1, x2, y2;
} nn_box;

/* Size GeneralizedRCNNTransform resizes an h x w image to: scale = min(min_size / short, max_size / long)
 * computed as torch does (float32 reciprocal times the size), output floor(side * scale). */
void nn_det_resize_size(int h, int w, int min_size, int max_size, int *oh, int *ow);

/* (x - mean[c]) / std[c] on a CHW image (3 planes of h x w), then bilinear resampling (align_corners=False,
 * no antialias) to oh x ow, written NHWC into a ph x pw x 3 buffer whose remaining pixels are zero
 * (the padding to a multiple of 32). Each tap is normalised as it is read: the same values as torch's
 * normalise-then-resize without a normalised copy. */
void nn_det_transform(const float *chw, int h, int w, const float mean[3], const float std[3], int oh, int ow,
                      int ph, int pw, float *out);

/* Cell anchors of one size at each aspect ratio (h/w), centred on 0, rounded half-to-even: out[r*4 + 0..3]. */
void nn_det_cell_anchors(float size, const float *ratios, int n_ratios, float *out);

/* torchvision BoxCoder.decode_single for one box: deltas d (dx, dy, dw, dh) divided by weights wt,
 * dw and dh clamped at clip (log(1000/16)), applied to ref. */
nn_box nn_box_decode(const float d[4], nn_box ref, const float wt[4], float clip);
static inline nn_box nn_box_clip(nn_box b, float w, float h)
{
    b.x1 = b.x1 < 0 ? 0 : b.x1 > w ? w : b.x1;
    b.x2 = b.x2 < 0 ? 0 : b.x2 > w ? w : b.x2;
    b.y1 = b.y1 < 0 ? 0 : b.y1 > h ? h : b.y1;
    b.y2 = b.y2 < 0 ? 0 : b.y2 > h ? h : b.y2;
    return b;
}

/* A (score, index) pair; sorting puts higher scores first and breaks ties by lower index, so results are
 * deterministic where torch's unstable sort is not (the only expected difference from torchvision). */
typedef struct nn_scored {
    float s;
    int i;
} nn_scored;
void nn_scored_sort(nn_scored *a, int n);
/* The k best of a[0..n) moved to a[0..k), sorted; returns k (<= n). */
int nn_scored_top(nn_scored *a, int n, int k);

/* Scratch for NMS over up to n boxes. */
typedef struct nn_nms_work {
    nn_scored *order;
    nn_box *shifted;
    float *area;
    unsigned char *dead, *keep_mask;
} nn_nms_work;
size_t nn_nms_work_floats(int n); /* floats of scratch nn_nms_work_init needs */
void nn_nms_work_init(nn_nms_work *w, int n, float *mem);

/* torchvision.ops.nms: indices (into b and s) of the kept boxes, by decreasing score; a box is suppressed
 * when its IoU with a kept box, a float, is strictly greater than thresh, a double (as in torchvision's
 * kernel: 0.7 and 0.7f differ). Returns the count. */
int nn_nms(const nn_box *b, const float *s, int n, double thresh, nn_nms_work *w, int *keep);
/* torchvision.ops.batched_nms: NMS independently within each group value. Like torchvision 0.14 on CPU it
 * runs per group when there are more than 1000 boxes and otherwise offsets each group's coordinates by
 * group * (max coordinate + 1) and runs one NMS (the same kept set up to float rounding of the IoU).
 * Returns the count of kept indices, by decreasing score. */
int nn_batched_nms(const nn_box *b, const float *s, const int *group, int n, double thresh, nn_nms_work *w, int *keep);

/* LevelMapper: floor(k0 + log2(sqrt(area) / s0) + 1e-6) clamped to [k_min, k_max], minus k_min. */
int nn_roi_level(nn_box b, int k_min, int k_max);

/* RoIAlign (aligned=False) of one box on an NHWC feature map f (H x W x C), spatial_scale ss, to
 * out[ph][pw][C], sampling_ratio sr > 0 points per bin side, averaged. */
void nn_roi_align(const float *f, int H, int W, int C, float ss, nn_box roi, int ph, int pw, int sr, float *out);

#endif
