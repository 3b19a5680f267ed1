/* nn/kernels_attn.h: kernels the attention networks (MaxViT) and the TF-ported convolutions need beyond
 * nn/kernels.h: tanh-GELU, row softmax, asymmetric zero padding, 2x2 average pooling, and multi-head
 * attention over token sets gathered from an NHWC map (window and grid partitions). Policy-free like
 * nn/kernels.h; every matrix product goes through nn_gemm_fused so a faster GEMM path reaches these too. */
#ifndef NN_KERNELS_ATTN_H
#define NN_KERNELS_ATTN_H

#include <stddef.h>

/* In place: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), torch's gelu(approximate='tanh'). */
void nn_gelu_tanh_apply(float *x, size_t n);

/* In place, each of rows rows of n values: softmax with the row maximum subtracted first (as torch). */
void nn_softmax_rows(float *x, long rows, int n);

/* y (h+top+bottom, w+left+right, c) = x (h, w, c) with zeros around it, one image, NHWC. */
void nn_pad_nhwc(const float *x, int h, int w, int c, int top, int left, int bottom, int right, float *y);

/* 2x2 average pooling, stride 2, one image NHWC (h, w even): y (h/2, w/2, c). */
void nn_avgpool2(const float *x, int h, int w, int c, float *y);

/* Window and grid partitions of an h x w map into p x p token sets, as timm 0.9.10 maxxvit's
 * window_partition / grid_partition order them: pix[s * p*p + t] = pixel index (row-major in the map) of
 * token t (row-major in the p x p set) of set s. Window: set (wy, wx) holds the contiguous tile at rows
 * wy*p.., cols wx*p..; grid: set (gy, gx) holds rows a*(h/p)+gy, cols b*(w/p)+gx. h, w multiples of p. */
void nn_partition_window(int h, int w, int p, int *pix);
void nn_partition_grid(int h, int w, int p, int *pix);

/* Multi-head attention of every token set of one image. qkv: (pixels, 3*heads*dh) rows, as the qkv Linear
 * writes them; head_first: per head [q k v] blocks of dh (timm head_first=True, the rw models), else
 * [q heads][k heads][v heads] (the tf models). bias: [heads][ntok][ntok] added to the scaled q.k^T (query
 * row, key column). out: (pixels, heads*dh), channel h*dh+d, written at the set's pixels.
 * scratch: nn_attn_scratch(ntok, heads, dh) floats. */
size_t nn_attn_scratch(int ntok, int heads, int dh);
void nn_attn_sets(const float *qkv, int nsets, int ntok, const int *pix, int heads, int dh, int head_first,
                  const float *bias, float *scratch, float *out);

#endif
