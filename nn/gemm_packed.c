/* nn/gemm_packed.c: the fp32 product of the dense convolutions that are not Winograd's (1x1, strided, the
 * stems) and of the linear layers behind nn_matmul, C = act(A W^T + bias + res), on nn/panel.h's kernel with W
 * packed into the kernel's panels by the first fp32 plan (in place of the [N][K] copy, so the model holds no
 * second one: nn/layers.c's fp32_layout).
 *
 * Against sgemm (OpenBLAS 0.3.21) this saves what surrounds its kernel: sgemm repacks W on every call and
 * has no epilogue, so the bias (and residual) had to be written into C before it and the activation applied
 * in a pass after it, each a trip over C that was all memory stalls. Here the bias, the residual and ReLU go
 * into the accumulators as they are stored. Blocking: MB rows x NB columns of C (about 256 KB, in the
 * second-level cache across the runs of KC channels), the KC x NB floats of W of a run (128 KB at most)
 * beside it; each MR-row panel of A copied once per run and column block. */
#include <cpuid.h>

#include "mc.h"
#include "nn/kernels.h"
#include "nn/panel.h"

#define NB 256 /* columns of C per block */

/* AMD family 19h with AVX-512 (Zen 4): its 512-bit operations run on 256-bit units in two passes */
static int cpu_zen4(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d) || b != 0x68747541u) return 0; /* "AuthenticAMD" */
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    unsigned family = (a >> 8) & 0xf;
    if (family == 0xf) family += (a >> 20) & 0xff;
    return family == 0x19;
}

/* On Intel's AVX-512 cores, 14 x 32 blocks (28 accumulators) beat sgemm with its bias and activation passes
 * by 6-13% on ResNet's 1x1 shapes and ResNet-50 by 10-20% whole. On AMD Zen 4 the same kernel runs at
 * OpenBLAS's rate shape by shape (0.94-1.09x, 2026-12-03) but the whole models came out slower than on sgemm
 * (images per CPU second at batch 8 against sgemm, alternating: ResNet-50 0.91-0.99x in 6 of 6 pairs,
 * ConvNeXt-nano 0.77-1.16x, slower in 5 of 6, EfficientNet-B0 and MaxViT slower in 3 of 4, the detector
 * even), so Zen 4 keeps sgemm. On AVX2 the 6 x 16 blocks only matched OpenBLAS's Haswell
 * kernel (0.8-1.1x by shape), so AVX2 builds keep sgemm too. */
int nn_pgemm_native(int any_cpu)
{
    return VA == 16 && (any_cpu || !cpu_zen4()); /* asked once per plan */
}

int nn_pgemm_padded(int N)
{
    return (N + NR - 1) / NR * NR;
}

size_t nn_pgemm_floats(int N, int K)
{
    return (size_t)nn_pgemm_padded(N) * (size_t)K;
}

/* panel j / NR: K rows of NR floats, columns j.. of W^T (zeros from N on) */
void nn_pgemm_pack(const float *w, int N, int K, float *wp)
{
    const int np = nn_pgemm_padded(N);
    for (int j = 0; j < np; j += NR) {
        float *p = wp + (size_t)j * K;
        for (int k = 0; k < K; k++)
            for (int l = 0; l < NR; l++) p[(size_t)k * NR + l] = j + l < N ? w[(size_t)(j + l) * K + k] : 0.0f;
    }
}

void nn_pgemm_unpack(const float *wp, int N, int K, float *w)
{
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) w[(size_t)n * K + k] = wp[(size_t)(n / NR * NR) * K + (size_t)k * NR + n % NR];
}

void nn_pgemm(int M, int N, int K, const float *A, int lda, const float *wp, const float *bias, const float *res,
              int ldr, nn_act act, float *C, int ldc)
{
    float pa[MR * KC] __attribute__((aligned(64)));
    const int nb_max = nn_pgemm_padded(N) < NB ? nn_pgemm_padded(N) : NB;
    int mb_max = (1 << 16) / nb_max / MR * MR;
    if (mb_max < MR) mb_max = MR;
    const int relu_in = act == NN_ACT_RELU;
    for (int m0 = 0; m0 < M; m0 += mb_max) {
        const int mb = M - m0 < mb_max ? M - m0 : mb_max;
        for (int n0 = 0; n0 < N; n0 += NB) {
            const int n1 = N - n0 < NB ? N : n0 + NB;
            for (int k0 = 0; k0 < K; k0 += KC) {
                const int kc = K - k0 < KC ? K - k0 : KC, first = k0 == 0, last = k0 + kc >= K;
                const float *bs = first ? bias : NULL;
                const int relu = last && relu_in;
                for (int t = 0; t < mb; t += MR) {
                    const int mr = mb - t < MR ? mb - t : MR;
                    const size_t row = (size_t)m0 + (size_t)t;
                    panel_copy(mr, kc, A + row * (size_t)lda + k0, (size_t)lda, pa);
                    float *c = C + row * (size_t)ldc;
                    const float *rs = first && res ? res + row * (size_t)ldr : NULL;
                    const int ahead = t + 2 * MR <= mb; /* the block has a whole panel row after this one */
                    panel_ahead ah = {0};
                    if (ahead)
                        ah = (panel_ahead){A + (row + MR) * (size_t)lda + k0, first ? c + (size_t)MR * ldc : NULL,
                                           rs ? rs + (size_t)MR * ldr : NULL, (size_t)lda};
                    if (mr == MR)
                        panel_row(MR, kc, pa, wp, K, k0, n0, n1, N, c, (size_t)ldc, !first, t == 0, bs, rs,
                                  (size_t)ldr, relu, ahead ? &ah : NULL);
                    else
                        panel_tail(mr, kc, pa, wp, K, k0, n0, n1, N, c, (size_t)ldc, !first, bs, rs, (size_t)ldr,
                                   relu);
                }
            }
            if (act != NN_ACT_NONE && !relu_in)
                for (int r = 0; r < mb; r++) nn_act_apply(C + ((size_t)m0 + r) * (size_t)ldc + n0, (size_t)(n1 - n0), act);
        }
    }
}
