/* nn/detect_ops.c: torchvision 0.14's detection image and box operations in float32, operation by
 * operation as torch evaluates them (see nn/detect_ops.h). Built with -ffp-contract=off (Makefile). */
#include "nn/detect_ops.h"

#include <math.h>

void nn_det_resize_size(int h, int w, int min_size, int max_size, int *oh, int *ow)
{
    /* torch: scale = min(800.0 / min_side, 1333.0 / max_side) on float32 tensors, where python / tensor
     * is tensor.reciprocal() * python; then F.interpolate's floor(double(side) * scale). */
    float short_side = (float)(h < w ? h : w), long_side = (float)(h < w ? w : h);
    volatile float r1 = 1.0f / short_side, r2 = 1.0f / long_side;
    float s1 = (float)min_size * r1, s2 = (float)max_size * r2;
    float s = s1 < s2 ? s1 : s2;
    *oh = (int)floor((double)h * (double)s);
    *ow = (int)floor((double)w * (double)s);
}

/* Source index and weights of one output coordinate (aten upsample, align_corners=False). */
static void lin_coef(int dst, int in, float scale, int *i0, int *i1, float *l0, float *l1)
{
    /* torch 1.13 on CPU: the float scale in/out, the source position and its fraction in double
     * (checked on impulse images: weights bit-equal) */
    double src = (double)scale * ((double)dst + 0.5) - 0.5;
    if (src < 0) src = 0;
    int i = (int)src;
    if (i > in - 1) i = in - 1;
    double l = src - (double)i;
    l = l < 0 ? 0 : l > 1 ? 1 : l;
    *i0 = i;
    *i1 = i + (i < in - 1);
    *l1 = (float)l;
    *l0 = 1.0f - *l1;
}

void nn_det_transform(const float *chw, int h, int w, const float mean[3], const float std[3], int oh, int ow,
                      int ph, int pw, float *out)
{
    MC_ASSERT(oh <= ph && ow <= pw && oh > 0 && ow > 0);
    size_t hw = (size_t)h * w;
    memset(out, 0, sizeof(float) * (size_t)ph * pw * 3);
    float sy = (float)h / (float)oh, sx = (float)w / (float)ow;
    for (int y = 0; y < oh; y++) {
        int y0, y1;
        float wy0, wy1;
        lin_coef(y, h, sy, &y0, &y1, &wy0, &wy1);
        float *o = out + (size_t)y * pw * 3;
        for (int x = 0; x < ow; x++) {
            int x0, x1;
            float wx0, wx1;
            lin_coef(x, w, sx, &x0, &x1, &wx0, &wx1);
            /* torch 1.13's channels-last bilinear kernel (the layout PIL images arrive in): float weights
             * wy * wx, the four taps summed in double, rounded once (checked bit-equal on real images) */
            const float w00 = wy0 * wx0, w01 = wy0 * wx1, w10 = wy1 * wx0, w11 = wy1 * wx1;
            for (int c = 0; c < 3; c++) {
                const float *r0 = chw + c * hw + (size_t)y0 * w, *r1 = chw + c * hw + (size_t)y1 * w;
                const float m = mean[c], s = std[c];
                double acc = (double)((r0[x0] - m) / s) * w00 + (double)((r0[x1] - m) / s) * w01 +
                             (double)((r1[x0] - m) / s) * w10 + (double)((r1[x1] - m) / s) * w11;
                o[x * 3 + c] = (float)acc;
            }
        }
    }
}

void nn_det_cell_anchors(float size, const float *ratios, int n_ratios, float *out)
{
    for (int r = 0; r < n_ratios; r++) {
        float hr = sqrtf(ratios[r]), wr = 1.0f / hr;
        float ws = wr * size, hs = hr * size;
        out[r * 4 + 0] = rintf(-ws / 2);
        out[r * 4 + 1] = rintf(-hs / 2);
        out[r * 4 + 2] = rintf(ws / 2);
        out[r * 4 + 3] = rintf(hs / 2);
    }
}

nn_box nn_box_decode(const float d[4], nn_box ref, const float wt[4], float clip)
{
    float w = ref.x2 - ref.x1, h = ref.y2 - ref.y1;
    float cx = ref.x1 + 0.5f * w, cy = ref.y1 + 0.5f * h;
    float dx = d[0] / wt[0], dy = d[1] / wt[1], dw = d[2] / wt[2], dh = d[3] / wt[3];
    if (dw > clip) dw = clip;
    if (dh > clip) dh = clip;
    float pcx = dx * w + cx, pcy = dy * h + cy;
    float pw = expf(dw) * w, ph = expf(dh) * h;
    float hw = 0.5f * pw, hh = 0.5f * ph;
    return (nn_box){pcx - hw, pcy - hh, pcx + hw, pcy + hh};
}

static int scored_cmp(const void *a, const void *b)
{
    const nn_scored *x = a, *y = b;
    if (x->s > y->s) return -1;
    if (x->s < y->s) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

void nn_scored_sort(nn_scored *a, int n)
{
    qsort(a, (size_t)n, sizeof *a, scored_cmp);
}

int nn_scored_top(nn_scored *a, int n, int k)
{
    if (k > n) k = n;
    if (k <= 0) return 0;
    /* quickselect the k best to the front, then sort them */
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        nn_scored pivot = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (scored_cmp(&a[i], &pivot) < 0) i++;
            while (scored_cmp(&a[j], &pivot) > 0) j--;
            if (i <= j) {
                nn_scored t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
    nn_scored_sort(a, k);
    return k;
}

size_t nn_nms_work_floats(int n)
{
    /* order (2 floats), shifted box (4), area (1), two byte arrays (rounded up) */
    return (size_t)n * 7 + (size_t)(2 * n + 3) / 4 + 16;
}

void nn_nms_work_init(nn_nms_work *w, int n, float *mem)
{
    w->order = (nn_scored *)mem;
    w->shifted = (nn_box *)(mem + 2 * (size_t)n);
    w->area = mem + 6 * (size_t)n;
    w->dead = (unsigned char *)(mem + 7 * (size_t)n);
    w->keep_mask = w->dead + n;
}

/* Greedy suppression over w->order[0..n); with group != NULL only within equal groups. */
static int nms_core(const nn_box *b, const int *group, int n, double thresh, nn_nms_work *w, int *keep)
{
    for (int i = 0; i < n; i++) {
        w->area[i] = (b[i].x2 - b[i].x1) * (b[i].y2 - b[i].y1);
        w->dead[i] = 0;
    }
    int nk = 0;
    for (int a = 0; a < n; a++) {
        int i = w->order[a].i;
        if (w->dead[i]) continue;
        keep[nk++] = i;
        nn_box bi = b[i];
        float ai = w->area[i];
        for (int c = a + 1; c < n; c++) {
            int j = w->order[c].i;
            if (w->dead[j] || (group && group[j] != group[i])) continue;
            float xx1 = bi.x1 > b[j].x1 ? bi.x1 : b[j].x1, yy1 = bi.y1 > b[j].y1 ? bi.y1 : b[j].y1;
            float xx2 = bi.x2 < b[j].x2 ? bi.x2 : b[j].x2, yy2 = bi.y2 < b[j].y2 ? bi.y2 : b[j].y2;
            float iw = xx2 - xx1, ih = yy2 - yy1;
            iw = iw > 0 ? iw : 0;
            ih = ih > 0 ? ih : 0;
            float inter = iw * ih;
            float ovr = inter / (ai + w->area[j] - inter);
            if ((double)ovr > thresh) w->dead[j] = 1;
        }
    }
    return nk;
}

int nn_nms(const nn_box *b, const float *s, int n, double thresh, nn_nms_work *w, int *keep)
{
    for (int i = 0; i < n; i++) w->order[i] = (nn_scored){s[i], i};
    nn_scored_sort(w->order, n); /* torchvision's kernel sorts stably, descending */
    return nms_core(b, NULL, n, thresh, w, keep);
}

int nn_batched_nms(const nn_box *b, const float *s, const int *group, int n, double thresh, nn_nms_work *w, int *keep)
{
    if (n == 0) return 0;
    for (int i = 0; i < n; i++) w->order[i] = (nn_scored){s[i], i};
    nn_scored_sort(w->order, n);
    if ((long)n * 4 > 4000) /* per group; the kept set comes out in score order already */
        return nms_core(b, group, n, thresh, w, keep);
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        const float *c = &b[i].x1;
        for (int k = 0; k < 4; k++) mx = c[k] > mx ? c[k] : mx;
    }
    for (int i = 0; i < n; i++) {
        float off = (float)group[i] * (mx + 1.0f);
        w->shifted[i] = (nn_box){b[i].x1 + off, b[i].y1 + off, b[i].x2 + off, b[i].y2 + off};
    }
    return nms_core(w->shifted, NULL, n, thresh, w, keep);
}

int nn_roi_level(nn_box b, int k_min, int k_max)
{
    float area = (b.x2 - b.x1) * (b.y2 - b.y1);
    float s = sqrtf(area);
    float lvl = floorf((4.0f + log2f(s / 224.0f)) + 1e-6f);
    if (!(lvl >= (float)k_min)) lvl = (float)k_min; /* NaN (empty box) goes to the finest level, as the clamp */
    if (lvl > (float)k_max) lvl = (float)k_max;
    return (int)lvl - k_min;
}

void nn_roi_align(const float *f, int H, int W, int C, float ss, nn_box roi, int ph, int pw, int sr, float *out)
{
    float x1 = roi.x1 * ss, y1 = roi.y1 * ss, x2 = roi.x2 * ss, y2 = roi.y2 * ss;
    float rw = x2 - x1, rh = y2 - y1;
    if (rw < 1.0f) rw = 1.0f;
    if (rh < 1.0f) rh = 1.0f;
    float bw = rw / (float)pw, bh = rh / (float)ph;
    const int count = sr * sr > 1 ? sr * sr : 1;
    for (int py = 0; py < ph; py++) {
        for (int px = 0; px < pw; px++) {
            float *o = out + ((size_t)py * pw + px) * C;
            for (int c = 0; c < C; c++) o[c] = 0.0f;
            for (int iy = 0; iy < sr; iy++) {
                const float yy = y1 + (float)py * bh + (float)(iy + .5f) * bh / (float)sr;
                for (int ix = 0; ix < sr; ix++) {
                    const float xx = x1 + (float)px * bw + (float)(ix + .5f) * bw / (float)sr;
                    float y = yy, x = xx;
                    if (y < -1.0f || y > (float)H || x < -1.0f || x > (float)W) continue; /* adds zero */
                    if (y <= 0) y = 0;
                    if (x <= 0) x = 0;
                    int yl = (int)y, xl = (int)x, yh, xh;
                    if (yl >= H - 1) {
                        yh = yl = H - 1;
                        y = (float)yl;
                    } else {
                        yh = yl + 1;
                    }
                    if (xl >= W - 1) {
                        xh = xl = W - 1;
                        x = (float)xl;
                    } else {
                        xh = xl + 1;
                    }
                    float ly = y - (float)yl, lx = x - (float)xl, hy = 1.0f - ly, hx = 1.0f - lx;
                    float w1 = hy * hx, w2 = hy * lx, w3 = ly * hx, w4 = ly * lx;
                    const float *p1 = f + ((size_t)yl * W + xl) * C, *p2 = f + ((size_t)yl * W + xh) * C;
                    const float *p3 = f + ((size_t)yh * W + xl) * C, *p4 = f + ((size_t)yh * W + xh) * C;
                    for (int c = 0; c < C; c++) o[c] += w1 * p1[c] + w2 * p2[c] + w3 * p3[c] + w4 * p4[c];
                }
            }
            for (int c = 0; c < C; c++) o[c] /= (float)count;
        }
    }
}
