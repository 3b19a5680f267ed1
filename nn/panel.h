/* nn/panel.h: the register-blocked fp32 kernel shared by the Winograd products (nn/winograd.c) and the
 * packed GEMM of the dense convolutions (nn/gemm_packed.c). Neither caller has sgemm pack its operands on
 * every call: the right-hand side lies in panels of k x NR floats (NR output channels side by side per input
 * channel, the last panel zero-padded), written once in that layout; MR rows of the left-hand side are copied
 * per run of KC channels into a panel of MR x KC floats in the first-level cache, blocks of KL channels row
 * after row, and multiplied by every panel of the right. MR rows x NR columns per call: MR x 2 vector
 * accumulators (28 of the 32 registers on AVX-512, 12 of 16 on AVX2). Included by those two files only. */
#ifndef NN_PANEL_H
#define NN_PANEL_H

#include <string.h>

#include "mc.h"
#include "nn/vec.h"

#define NR (2 * VA)
#if VA == 16
#define MR 14
#else
#define MR 6
#endif
#define KC 128 /* channels summed per pass of the kernel: runs of 128, fewer roundings in a row */
#define KL 16  /* channels per cache line of a row of the left-hand side */

/* the left-hand panel: rows src, src + lds, ... (mr of them, kc channels each) in the kernel's order */
static inline void panel_copy(int mr, int kc, const float *src, size_t lds, float *pa)
{
    for (int kb = 0; kb < kc; kb += KL) { /* block kb holds the mr rows' channels kb.. */
        const int kn = kc - kb < KL ? kc - kb : KL;
        float *dst = pa + (size_t)kb * mr;
        if (kn == KL)
            for (int r = 0; r < mr; r++) memcpy(dst + r * KL, src + (size_t)r * lds + kb, sizeof(float) * KL);
        else
            for (int r = 0; r < mr; r++) memcpy(dst + r * KL, src + (size_t)r * lds + kb, sizeof(float) * kn);
    }
}

/* kn (1..KL) steps of the sum over channels, from ab (a block of the left panel: the MR rows' KL values of
 * one cache line's worth of channels, row after row) and b (rows of NR). With pf, the first pass over a
 * right-hand panel, which comes from the last-level cache or memory: fetched 16 steps ahead. */
__attribute__((always_inline)) static inline void kernel_steps(const int mr, const int kn, const float *ab,
                                                               const float *b, vfa acc[MR][2], const int pf)
{
#pragma GCC unroll 4
    for (int kk = 0; kk < kn; kk++) {
        if (pf) {
            __builtin_prefetch(b + (size_t)(kk + 16) * NR);
            __builtin_prefetch(b + (size_t)(kk + 16) * NR + VA);
        }
        const vfa b0 = vload(b + (size_t)kk * NR), b1 = vload(b + (size_t)kk * NR + VA);
#pragma GCC unroll 14
        for (int r = 0; r < mr; r++) {
            const float s = ab[r * KL + kk];
            acc[r][0] += s * b0;
            acc[r][1] += s * b1;
        }
    }
}

/* c[mr x nc] (rows ldc apart) = the left panel pa (mr rows, k channels) times the right panel b (k rows of
 * NR), plus c when add is set, plus bias (NR floats) and the rows of res (ldr apart) where given, then
 * max(., 0) when relu is set */
__attribute__((always_inline)) static inline void kernel_rows(const int mr, int k, const float *pa, const float *b,
                                                              float *c, size_t ldc, int nc, int add, const int pf,
                                                              const float *bias, const float *res, size_t ldr,
                                                              int relu)
{
    vfa acc[MR][2];
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = (vfa){0};
    int kb = 0;
    for (; kb + KL <= k; kb += KL) kernel_steps(mr, KL, pa + (size_t)kb * mr, b + (size_t)kb * NR, acc, pf);
    if (kb < k) kernel_steps(mr, k - kb, pa + (size_t)kb * mr, b + (size_t)kb * NR, acc, 0);
    for (int r = 0; r < mr; r++) {
        float *cr = c + (size_t)r * ldc, part[NR];
        float *dst = cr;
        if (nc < NR) { /* the last panel of a width that is not a multiple of NR: through a full-width copy */
            memset(part, 0, sizeof part);
            if (add) memcpy(part, cr, sizeof(float) * (size_t)nc);
            dst = part;
        }
        if (add) {
            acc[r][0] += vload(dst);
            acc[r][1] += vload(dst + VA);
        }
        if (bias) {
            acc[r][0] += vload(bias);
            acc[r][1] += vload(bias + VA);
        }
        if (res) {
            const float *rr = res + (size_t)r * ldr;
            float rp[NR];
            if (nc < NR) {
                memset(rp, 0, sizeof rp);
                memcpy(rp, rr, sizeof(float) * (size_t)nc);
                rr = rp;
            }
            acc[r][0] += vload(rr);
            acc[r][1] += vload(rr + VA);
        }
        if (relu) {
            acc[r][0] = vselect(acc[r][0] > 0.0f, acc[r][0], (vfa){0});
            acc[r][1] = vselect(acc[r][1] > 0.0f, acc[r][1], (vfa){0});
        }
        vstore(dst, acc[r][0]);
        vstore(dst + VA, acc[r][1]);
        if (nc < NR) memcpy(cr, part, sizeof(float) * (size_t)nc);
    }
}

/* The next MR rows, fetched into the cache while a panel row runs, a few lines per right-hand panel: of the
 * left-hand side (from the memory or the last-level cache, where the hardware's prefetchers miss it: the rows
 * are read a line at a time, lda apart), this run's channels at a (spread over the panels); and, on the first
 * run of channels, the lines of the outputs c (for writing: the read for ownership) and of the residual r
 * (NULL: none) at each panel's columns. Without it the copy of the next left-hand panel and the first stores
 * of each panel row stalled on memory: the detector's 1x1 layers in sequence 1.07-1.08x faster with it, its
 * Winograd layers 1.04-1.13x (alternating in one process). */
typedef struct {
    const float *a, *c, *r;
    size_t lda;
} panel_ahead;

/* one left panel of mr rows (fewer than MR only at the end of a block) against the right-hand panels of
 * columns j0..j1 (multiples of NR but for a last j1 = n): u holds panels of ldk x NR, this run's channels
 * from k0; c, bias and res point at column 0; ah (or NULL) the rows to fetch ahead */
__attribute__((always_inline)) static inline void panel_row(const int mr, int kc, const float *pa, const float *u,
                                                            int ldk, int k0, int j0, int j1, int n, float *c,
                                                            size_t ldc, int add, int first, const float *bias,
                                                            const float *res, size_t ldr, int relu,
                                                            const panel_ahead *ah)
{
    const int lines = (kc + KL - 1) / KL, per = ah ? (lines * NR + (j1 - j0) - 1) / (j1 - j0) : 0;
    for (int j = j0; j < j1; j += NR) {
        if (ah) {
            const int l0 = (j - j0) / NR * per, l1 = l0 + per < lines ? l0 + per : lines;
            for (int r = 0; r < MR; r++)
                for (int l = l0; l < l1; l++) __builtin_prefetch(ah->a + (size_t)r * ah->lda + (size_t)l * KL, 0, 3);
            for (int r = 0; ah->c && r < MR; r++) {
                __builtin_prefetch(ah->c + (size_t)r * ldc + j, 1, 3);
                __builtin_prefetch(ah->c + (size_t)r * ldc + j + VA, 1, 3);
            }
            for (int r = 0; ah->r && r < MR; r++) {
                __builtin_prefetch(ah->r + (size_t)r * ldr + j, 0, 3);
                __builtin_prefetch(ah->r + (size_t)r * ldr + j + VA, 0, 3);
            }
        }
        const float *b = u + (size_t)j * ldk + (size_t)k0 * NR;
        const int nc = n - j < NR ? n - j : NR;
        const float *bj = bias ? bias + j : NULL, *rj = res ? res + j : NULL;
        if (first)
            kernel_rows(mr, kc, pa, b, c + j, ldc, nc, add, 1, bj, rj, ldr, relu);
        else
            kernel_rows(mr, kc, pa, b, c + j, ldc, nc, add, 0, bj, rj, ldr, relu);
    }
}

static inline void panel_tail(int mr, int kc, const float *pa, const float *u, int ldk, int k0, int j0, int j1,
                              int n, float *c, size_t ldc, int add, const float *bias, const float *res,
                              size_t ldr, int relu)
{
    switch (mr) {
#define PT(q)                                                                                                      \
    case q:                                                                                                        \
        panel_row(q, kc, pa, u, ldk, k0, j0, j1, n, c, ldc, add, 0, bias, res, ldr, relu, NULL);                  \
        break;
        PT(1) PT(2) PT(3) PT(4) PT(5)
#if MR > 6
        PT(6) PT(7) PT(8) PT(9) PT(10) PT(11) PT(12) PT(13)
#endif
#undef PT
    default: MC_ASSERT(0);
    }
}

#endif
