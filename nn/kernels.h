/* nn/kernels.h: the compute kernels of the engine. Policy-free: a kernel takes pointers, shapes and
 * strides; the layer (nn/layers.c) decides layout, tiling and fusion. All activations are NHWC float32
 * (channels contiguous), so pointwise convolutions are plain GEMMs and per-pixel work vectorises over C. */
#ifndef NN_KERNELS_H
#define NN_KERNELS_H

#include <stddef.h>

typedef enum {
    NN_ACT_NONE = 0,
    NN_ACT_RELU,
    NN_ACT_SILU,    /* x * sigmoid(x) (timm 'swish') */
    NN_ACT_GELU,    /* exact erf form, as torch.nn.functional.gelu's default */
    NN_ACT_SIGMOID,
} nn_act;

/* C[M,N] = act(A W^T + bias + res), or with accumulate C = act(C + A W^T + bias). Bias and residual are
 * written into C before a beta=1 sgemm, so sgemm never zeroes C and only the activation reads C again.
 * bias, res may be NULL. */
void nn_gemm_fused(int M, int N, int K, const float *A, int lda, const float *W, int ldw, const float *bias,
                   const float *res, int ldr, int accumulate, nn_act act, float *C, int ldc);

/* fp32 C[M x N] = act(A W^T + bias + res) with W ([N][K]) packed once by nn_pgemm_pack into
 * nn_pgemm_floats(N, K) floats (nn/gemm_packed.c). bias: nn_pgemm_padded(N) floats (zeros past N) or NULL;
 * res (rows ldr apart) may be NULL. act applied in the kernel for ReLU, over each finished block otherwise. */
/* whether this build's vector width (and, unless any_cpu, this CPU: nn/gemm_packed.c) makes the packed product
 * worth taking over sgemm */
int nn_pgemm_native(int any_cpu);
int nn_pgemm_padded(int N);
size_t nn_pgemm_floats(int N, int K);
void nn_pgemm_pack(const float *w, int N, int K, float *wp);
void nn_pgemm_unpack(const float *wp, int N, int K, float *w);
void nn_pgemm(int M, int N, int K, const float *A, int lda, const float *wp, const float *bias, const float *res,
              int ldr, nn_act act, float *C, int ldc);

/* 3x3 stride-1 dense convolution by Winograd F(m x m, 3x3), m = 2 or 4 (nn/winograd.c), NHWC. nn_wino_pick:
 * the m for a layer's channel counts (multiples of 8, at least 16), 0 where it does not apply. nn_wino_sizes:
 * for nn_wino_tiles tiles (m x m output blocks), the tiles per block T and the floats of each buffer. u: the
 * transformed weights from nn_wino_weights (w is [cout][3][3][cin]), in the layout of nn/winograd.c's own
 * GEMM kernel; v, mm: one block's transformed input and products; scr: an edge tile's patch and one tile's
 * outputs. y = act(conv + bias + res); bias, res may be NULL. */
int nn_wino_pick(int cin, int cout);
void nn_wino_weights(int m, const float *w, int cout, int cin, float *u);
long nn_wino_tiles(int m, int n, int oh, int ow);
typedef struct {
    int T;                /* tiles per block */
    size_t u, v, mm, scr; /* floats of the transformed weights, V, M and the scratch */
} nn_wino_size;
void nn_wino_sizes(int m, int cin, int cout, long tiles, nn_wino_size *z);
void nn_wino_conv(int m, const float *x, int n, int h, int w, int cin, const float *u, int cout, int pad, int oh,
                  int ow, const float *bias, const float *res, nn_act act, float *y, int T, float *v, float *mm,
                  float *scr);

/* In-place activation on n contiguous values. */
void nn_act_apply(float *x, size_t n, nn_act act);

/* Scalar, vectorisable math used by the kernels (max relative error ~2e-7 in float). */
float nn_expf(float x);

/* im2col for an NHWC image batch: output rows p in [p0, p1) of the (n*oh*ow) x (kh*kw*c) patch matrix,
 * each row laid out [kh][kw][c] (zero where the window leaves the image), written at out (ld = kh*kw*c). */
void nn_im2col(const float *x, int h, int w, int c, int kh, int kw, int stride, int pad, int oh, int ow,
               long p0, long p1, float *out);

/* Depthwise convolution, NHWC, one image: y[oh,ow,c] = act(b[c] + sum x[ih,iw,c] * k[kh][kw][c]).
 * If csum is not NULL it receives the per-channel sum of y over the image (for squeeze-excite). */
void nn_dwconv(const float *x, int h, int w, int c, const float *k, const float *b, int kh, int kw, int stride,
               int pad, int oh, int ow, nn_act act, float *y, float *csum);

/* LayerNorm over the last dimension of rows x c (biased variance, as torch). weight/bias may be NULL. _to:
 * into y (which may be x). */
void nn_layernorm(float *x, long rows, int c, float eps, const float *weight, const float *bias);
void nn_layernorm_to(const float *x, float *y, long rows, int c, float eps, const float *weight, const float *bias);

/* Max pooling, NHWC, one image; padding counts as -inf (torch). */
void nn_maxpool(const float *x, int h, int w, int c, int k, int stride, int pad, int oh, int ow, float *y);

/* Mean over the hw pixels of each channel: y[c] = mean_p x[p*c + c]. */
void nn_mean_pixels(const float *x, long hw, int c, float *y);

/* Multiply every pixel's channel vector by s[c] (squeeze-excite gate), in place. */
void nn_scale_channels(float *x, long hw, int c, const float *s);

#endif
