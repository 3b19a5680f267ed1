/* nn/amx.h: the bf16 matrix product on Intel AMX tiles, with fp32 accumulation and the same fused epilogue
 * as nn_gemm_fused (bias, residual, activation in fp32). Weights are packed once into the tiles' VNNI2
 * layout; activations arrive fp32 and are rounded to bf16 (RNE) tile by tile as they are read. Internal to
 * nn/. It decides no policy: which layers run here is the layer's and the plan's choice (docs/engine.md). */
#ifndef NN_AMX_H
#define NN_AMX_H

#include <stddef.h>
#include <stdint.h>

#include "nn/kernels.h"

/* W [N][K] (row stride ldw, the layout nn_gemm_fused takes) packed for TDPBF16PS: 32-column panels, each
 * a run of K/32 blocks of two 16x32 bf16 tiles; K and N zero-padded to multiples of 32. */
typedef struct nn_wpack {
    uint16_t *d;
    int n, k;   /* logical */
    int kp, np; /* padded to 32 */
    int split;  /* NN_SPLIT_*: how many bf16 terms stand for W and for A */
    int fp32_released; /* the fp32 weights this pack was made from are gone (bf16-only process) */
    int fp32_only;     /* never packed to bf16: the layer stays fp32 in bf16 plans (nn_conv_keep_fp32) */
    int fp32_panels;   /* the fp32 W now holds nn/gemm_packed.c's panels (nn_matmul_prepare switches it) */
} nn_wpack;

/* The terms of a product (chosen per layer by the precision policy, docs/engine.md):
 * NONE    A and W rounded to bf16, one product;
 * W       W kept to 16 bits as hi + lo bf16 packs, A rounded: two products (weight rounding, which is the same
 *         for every pixel and so does not average out, is gone);
 * W_AND_A W and A both as hi + lo: three products (hi*hi + hi*lo + lo*hi), about fp32's accuracy. */
enum { NN_SPLIT_NONE = 0, NN_SPLIT_W = 1, NN_SPLIT_W_AND_A = 2 };
void nn_wpack_init(nn_wpack *p, const float *W, int N, int K, int ldw, int split);
void nn_wpack_free(nn_wpack *p);

/* Whether this process may run AMX bf16 (CPU, OS state and the per-process permission). nn_amx_request
 * asks the kernel for the tile state; call it at the very start of main, before MPI_Init and before any
 * thread or sigaltstack exists (Linux Documentation/arch/x86/xstate.rst). MORPHCAT_AMX=0 in the
 * environment makes it answer no (to test the refusal path on AMX machines). Returns 1 or 0, reason in why. */
void nn_amx_request(void);
int nn_amx_usable(const char **why);

/* Scratch, in floats, that nn_gemm_bf16 needs for an M x K product with this split (bf16 copies of one row
 * tile of A). */
size_t nn_gemm_bf16_scratch(int M, int K, int split);

/* C[M,N] = act(A W^T + bias + res), or with accumulate C = act(C + A W^T + bias), A fp32 [M][lda]. Same
 * contract as nn_gemm_fused; scratch holds nn_gemm_bf16_scratch(M, K) floats, 64-byte aligned. */
void nn_gemm_bf16(int M, const float *A, int lda, const nn_wpack *W, const float *bias, const float *res, int ldr,
                  int accumulate, nn_act act, float *C, int ldc, float *scratch);

#endif
