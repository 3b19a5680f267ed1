/* nn/amx.c: bf16 GEMM on AMX tiles (TDPBF16PS, fp32 accumulation) with nn_gemm_fused's epilogue, the weight
 * packing it reads, and the CPU/OS checks that decide whether it may run. Compiled for any x86-64 target:
 * the AMX and AVX-512 code carries its own target attribute and runs only after nn_amx_usable said yes.
 * Design (../shared/notes/amx.md): 2x2 accumulator tiles (a 32x32 fp32 block per K step of 32), A rounded to
 * bf16 one row tile at a time into scratch and loaded with the row stride, weights pre-packed in VNNI2. */
#include "nn/amx.h"

#include <stdlib.h>
#include <string.h>

#include "mc.h"
#include "nn/nn.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define MC_HAVE_X86 1
#endif
#if MC_AMX_EMU
#include "nn/amx_emu.h" /* test build: the tile operations and AMX_TARGET in software, same names */
#endif

/* Linux arch_prctl codes (asm/prctl.h) and the XTILEDATA state component number (xstate.rst). */
#define AMX_ARCH_GET_XCOMP_PERM 0x1022
#define AMX_ARCH_REQ_XCOMP_PERM 0x1023
#define AMX_XFEATURE_XTILEDATA 18

static int amx_state = -1; /* -1 not asked, 0 no, 1 yes */
static const char *amx_why = "AMX was not requested (nn_amx_request)";

void nn_amx_request(void)
{
    if (amx_state >= 0) return;
    amx_state = 0;
    const char *env = getenv("MORPHCAT_AMX");
    if (env && !strcmp(env, "0")) {
        amx_why = "AMX is disabled by MORPHCAT_AMX=0";
        return;
    }
#if MC_AMX_EMU
    if (!amx_emu_cpu_ok()) {
        amx_why = "this emulated-AMX test build (MC_AMX_EMU=1) needs AVX-512 F, BW, DQ and VL";
        return;
    }
    amx_state = 1; /* no tile permission to ask for: nothing runs on tiles */
    amx_why = AMX_EMU_NOTE;
#elif MC_HAVE_X86
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 22))) {
        amx_why = "this CPU has no AMX-BF16 tiles (Intel Sapphire Rapids or later has them)";
        return;
    }
    unsigned a1, b1, c1, d1;
    if (!__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1) || !(a1 & (1u << 5)) || !(b & (1u << 16))) {
        amx_why = "this CPU has AMX but not AVX512_BF16, which morphcat's bf16 path also needs";
        return;
    }
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) {
        amx_why = "the operating system does not enable XSAVE (OSXSAVE), so AMX state cannot be used";
        return;
    }
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) {
        amx_why = "the operating system does not enable the AMX tile state (XCR0 bits 17, 18)";
        return;
    }
    if (syscall(SYS_arch_prctl, AMX_ARCH_REQ_XCOMP_PERM, AMX_XFEATURE_XTILEDATA) != 0) {
        amx_why =
            "the Linux kernel refused AMX tile permission (arch_prctl ARCH_REQ_XCOMP_PERM; kernel 5.16+)";
        return;
    }
    unsigned long bitmask = 0;
    if (syscall(SYS_arch_prctl, AMX_ARCH_GET_XCOMP_PERM, &bitmask) != 0 ||
        !(bitmask & (1ul << AMX_XFEATURE_XTILEDATA))) {
        amx_why = "the Linux kernel did not grant AMX tile permission";
        return;
    }
    amx_state = 1;
    amx_why = NULL;
#else
    amx_why = "AMX exists only on x86-64";
#endif
}

int nn_amx_usable(const char **why)
{
    if (amx_state < 0) nn_amx_request();
    if (why) *why = amx_why;
    return amx_state == 1;
}

const char *nn_build_note(void)
{
#if MC_AMX_EMU
    return AMX_EMU_NOTE;
#else
    return NULL;
#endif
}

/* ---- packing ------------------------------------------------------------------------------------------ */

/* fp32 to bf16, round to nearest even (what VCVTNE2PS2BF16 does; NaN kept quiet). */
static inline uint16_t bf16_rne(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static int round32(int x)
{
    return (x + 31) / 32 * 32;
}

/* Panel p (columns 32p..32p+31), K block q: two tiles (columns +0..15, +16..31), each 16 rows of 32 bf16:
 * row r, element 2j+t = W[col j][k = 32q + 2r + t] (VNNI2: pairs of consecutive k per column). */
void nn_wpack_init(nn_wpack *p, const float *W, int N, int K, int ldw, int split)
{
    MC_ASSERT(N > 0 && K > 0 && ldw >= K);
    p->n = N;
    p->k = K;
    p->kp = round32(K);
    p->np = round32(N);
    p->split = split;
    const int kb = p->kp / 32, parts = split ? 2 : 1;
    size_t total = (size_t)p->np * p->kp * parts;
    p->d = mc_malloc_aligned(total * sizeof(uint16_t));
    memset(p->d, 0, total * sizeof(uint16_t));
    for (int n = 0; n < N; n++) {
        int panel = n / 32, half = (n % 32) / 16, j = n % 16;
        for (int k = 0; k < K; k++) {
            int q = k / 32, r = (k % 32) / 2, t = k % 2;
            size_t at = (((size_t)panel * kb + q) * 2 * parts + half) * 512 + (size_t)r * 32 + 2 * j + t;
            float w = W[(size_t)n * ldw + k];
            uint16_t hi = bf16_rne(w);
            p->d[at] = hi;
            if (split) {
                uint32_t u = (uint32_t)hi << 16;
                float fh;
                memcpy(&fh, &u, sizeof fh);
                p->d[at + 1024] = bf16_rne(w - fh); /* exact: w - fh has at most 16 significant bits left */
            }
        }
    }
}

void nn_wpack_free(nn_wpack *p)
{
    free(p->d);
    memset(p, 0, sizeof *p);
}

/* ---- the product -------------------------------------------------------------------------------------- */

/* Blocking. The product runs over: row chunks of A (rounded to bf16 once, at most AMX_A_BYTES), groups of
 * 32-column weight panels (a group's K chunk at most AMX_B_BYTES, so it stays in L2 while every 32-row block of
 * the chunk passes it), and K chunks of AMX_KC_BLOCKS x 32 (a 32-row block of A over one chunk stays in L1
 * while the group's panels use it). With more than one K chunk the fp32 partial sums of a row chunk x group
 * live in scratch between chunks (a tile store and load per 32x32 block and chunk; exact, so the result does
 * not depend on the blocking, nor on M). Before this, each 32-row tile of A streamed the whole weight matrix
 * from memory: 120-290 GFLOP/s on ResNet-50's shapes. */
#define AMX_KC_BLOCKS 32
#define AMX_A_BYTES (2L << 20)
#define AMX_B_BYTES (768L << 10)
#define AMX_P_BYTES (1L << 20)

typedef struct amx_blocking {
    int mc;    /* rows per chunk of A, a multiple of 32 */
    int group; /* 32-column panels per group */
    int kcb;   /* K blocks (of 32) per chunk */
    int parts_a, parts_w;
} amx_blocking;

static amx_blocking amx_blocks(int M, int kp, int split)
{
    amx_blocking bl;
    const int kb = kp / 32;
    bl.parts_a = split == NN_SPLIT_W_AND_A ? 2 : 1;
    bl.parts_w = split ? 2 : 1;
    bl.kcb = kb < AMX_KC_BLOCKS ? kb : AMX_KC_BLOCKS;
    long g = AMX_B_BYTES / ((long)bl.kcb * 2048 * bl.parts_w);
    bl.group = (int)(g < 1 ? 1 : g);
    long mc = AMX_A_BYTES / ((long)kp * 2 * bl.parts_a);
    if (bl.kcb < kb) { /* partial sums: mc x group x 32 floats */
        long mp = AMX_P_BYTES / ((long)bl.group * 32 * 4);
        if (mp < mc) mc = mp;
    }
    mc = mc / 32 * 32;
    if (mc < 32) mc = 32;
    long mp = round32(M);
    bl.mc = (int)(mc > mp ? mp : mc);
    return bl;
}

size_t nn_gemm_bf16_scratch(int M, int K, int split)
{
    int kp = round32(K);
    amx_blocking bl = amx_blocks(M, kp, split);
    size_t a = (size_t)bl.mc * kp / 2 * bl.parts_a; /* bf16 copies of one chunk of A, in floats */
    size_t part = bl.kcb < kp / 32 ? (size_t)bl.mc * bl.group * 32 : 0;
    return a + part + 32 * 32 + 16; /* + one 32x32 fp32 C block, alignment */
}

#if MC_HAVE_X86

#if !MC_AMX_EMU
#define AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#endif

typedef struct __attribute__((packed)) amx_cfg {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

/* 32 bf16 (as one 512-bit vector) back to fp32: the low and the high 16. */
AMX_TARGET static inline void bf16x32_to_ps(__m512i v, __m512 *lo, __m512 *hi)
{
    *lo = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(v)), 16));
    *hi = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(v, 1)), 16));
}

/* Rows [r0, r0+rows) of A to bf16, kp columns (zero past K), rp rows (zero past rows); with res != NULL also
 * the rounding residue a - bf16(a), itself rounded to bf16. */
AMX_TARGET static void amx_round_rows(const float *A, int lda, int K, int kp, int rows, int rp, uint16_t *out,
                                      uint16_t *res)
{
    for (int i = 0; i < rows; i++) {
        const float *a = A + (size_t)i * lda;
        uint16_t *o = out + (size_t)i * kp;
        for (int k = 0; k < kp; k += 32) {
            int left = K - k;
            __mmask16 m0 = left >= 16 ? 0xffff : (left > 0 ? (__mmask16)((1u << left) - 1) : 0);
            int l1 = left - 16;
            __mmask16 m1 = l1 >= 16 ? 0xffff : (l1 > 0 ? (__mmask16)((1u << l1) - 1) : 0);
            __m512 lo = _mm512_maskz_loadu_ps(m0, a + k);
            __m512 hi = _mm512_maskz_loadu_ps(m1, a + k + 16);
            __m512bh v = _mm512_cvtne2ps_pbh(hi, lo);
            _mm512_store_si512((void *)(o + k), (__m512i)v);
            if (res) {
                __m512 l0, l1;
                bf16x32_to_ps((__m512i)v, &l0, &l1);
                __m512bh r = _mm512_cvtne2ps_pbh(_mm512_sub_ps(hi, l1), _mm512_sub_ps(lo, l0));
                _mm512_store_si512((void *)(res + (size_t)i * kp + k), (__m512i)r);
            }
        }
    }
    if (rp > rows) memset(out + (size_t)rows * kp, 0, sizeof(uint16_t) * (size_t)(rp - rows) * kp);
    if (res && rp > rows) memset(res + (size_t)rows * kp, 0, sizeof(uint16_t) * (size_t)(rp - rows) * kp);
}

/* The four accumulator tiles (0-3) of a 32x32 block: cleared, and stored to cs (32 x 32 fp32, 128-byte rows).
 */
AMX_TARGET static inline void amx_acc_zero(void)
{
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
}

AMX_TARGET static inline void amx_acc_store(float *cs)
{
    _tile_stored(0, cs, 128);
    _tile_stored(1, cs + 16, 128);
    _tile_stored(2, cs + 16 * 32, 128);
    _tile_stored(3, cs + 16 * 32 + 16, 128);
}

/* The four products of one K step into the accumulators: A tiles 4-5 by B tiles 6-7. */
AMX_TARGET static inline void amx_tdp4(void)
{
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
}

/* One 32x32 fp32 block over kb K steps: A rows at a (row stride lda_b bytes; al: the activations' residues
 * for NN_SPLIT_W_AND_A), the panel's K blocks at b. The accumulators start from zero (init NULL) or from the
 * partial sums at init, and are stored to out (32 x 32 fp32, 128-byte rows). Tiles: 0-3 accumulators, 4-5 A,
 * 6-7 B. Per K step: hi(A) hi(W), then (W_AND_A) lo(A) hi(W), then (W, W_AND_A) hi(A) lo(W), all into the same
 * accumulators. */
AMX_TARGET static void amx_block(const uint16_t *a, const uint16_t *al, long lda_b, const uint16_t *b, int kb,
                                 int split, const float *init, float *out)
{
    if (init) {
        _tile_loadd(0, init, 128);
        _tile_loadd(1, init + 16, 128);
        _tile_loadd(2, init + 16 * 32, 128);
        _tile_loadd(3, init + 16 * 32 + 16, 128);
    } else {
        amx_acc_zero();
    }
    const char *a0 = (const char *)a, *a1 = (const char *)a + 16 * lda_b;
    const char *l0 = (const char *)al, *l1 = l0 ? (const char *)al + 16 * lda_b : NULL;
    const size_t bstep = split ? 2048 : 1024; /* hi tiles, then the lo tiles when W is split */
    for (int q = 0; q < kb; q++) {
        const uint16_t *bq = b + (size_t)q * bstep;
        _tile_loadd(4, a0 + (size_t)q * 64, lda_b);
        _tile_loadd(6, bq, 64);
        _tile_loadd(5, a1 + (size_t)q * 64, lda_b);
        _tile_loadd(7, bq + 512, 64);
        amx_tdp4();
        if (split == NN_SPLIT_W_AND_A) {
            _tile_loadd(4, l0 + (size_t)q * 64, lda_b);
            _tile_loadd(5, l1 + (size_t)q * 64, lda_b);
            amx_tdp4();
            _tile_loadd(4, a0 + (size_t)q * 64, lda_b);
            _tile_loadd(5, a1 + (size_t)q * 64, lda_b);
        }
        if (split) {
            _tile_loadd(6, bq + 1024, 64);
            _tile_loadd(7, bq + 1536, 64);
            amx_tdp4();
        }
    }
    amx_acc_store(out);
}

/* The 32x32 block in cs to C rows row0.., columns n0.. (mr x nc of them): + bias, + C (accumulate) or
 * + residual, then the activation, in fp32 (ReLU in registers, the others by nn_act_apply on the row). */
AMX_TARGET static void amx_epilogue(const float *cs, int mr, int nc, const float *bias, const float *res,
                                    int ldr, int accumulate, nn_act act, float *C, int ldc, size_t row0,
                                    int n0)
{
    const __mmask16 m0 = nc >= 16 ? 0xffff : (__mmask16)((1u << nc) - 1);
    const __mmask16 m1 = nc >= 32 ? 0xffff : (nc > 16 ? (__mmask16)((1u << (nc - 16)) - 1) : 0);
    const __m512 zero = _mm512_setzero_ps();
    const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : zero;
    const __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : zero;
    for (int i = 0; i < mr; i++) {
        float *c = C + (row0 + i) * ldc + n0;
        __m512 s0 = _mm512_add_ps(_mm512_load_ps(cs + i * 32), b0);
        __m512 s1 = _mm512_add_ps(_mm512_load_ps(cs + i * 32 + 16), b1);
        const float *add = accumulate ? c : res ? res + (row0 + i) * ldr + n0 : NULL;
        if (add) {
            s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(m0, add));
            s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(m1, add + 16));
        }
        if (act == NN_ACT_RELU) {
            s0 = _mm512_max_ps(s0, zero);
            s1 = _mm512_max_ps(s1, zero);
        }
        _mm512_mask_storeu_ps(c, m0, s0);
        _mm512_mask_storeu_ps(c + 16, m1, s1);
        if (act != NN_ACT_NONE && act != NN_ACT_RELU) nn_act_apply(c, (size_t)nc, act);
    }
}

AMX_TARGET static void amx_gemm(int M, const float *A, int lda, const nn_wpack *W, const float *bias,
                                const float *res, int ldr, int accumulate, nn_act act, float *C, int ldc,
                                float *scratch)
{
    const int N = W->n, K = W->k, kp = W->kp, kb = kp / 32;
    const amx_blocking bl = amx_blocks(M, kp, W->split);
    const int x3 = W->split == NN_SPLIT_W_AND_A, chunks = bl.kcb < kb;
    const size_t panel_stride = (size_t)kb * 1024 * (W->split ? 2 : 1), kstep = W->split ? 2048 : 1024;
    uint16_t *ab = (uint16_t *)scratch, *al = x3 ? ab + (size_t)bl.mc * kp : NULL;
    float *part = scratch + (size_t)bl.mc * kp / 2 * bl.parts_a;
    float *cs = (float *)(((uintptr_t)(part + (chunks ? (size_t)bl.mc * bl.group * 32 : 0)) + 63) & ~(uintptr_t)63);
    amx_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
    for (int r0 = 0; r0 < M; r0 += bl.mc) {
        const int rows = M - r0 < bl.mc ? M - r0 : bl.mc, rp = round32(rows);
        amx_round_rows(A + (size_t)r0 * lda, lda, K, kp, rows, rp, ab, al);
        __asm__ volatile("" ::: "memory"); /* tile loads read ab: gcc does not know */
        for (int g0 = 0; g0 < N; g0 += 32 * bl.group) {
            const int g1 = N < g0 + 32 * bl.group ? N : g0 + 32 * bl.group;
            for (int k0 = 0; k0 < kb; k0 += bl.kcb) {
                const int nk = kb - k0 < bl.kcb ? kb - k0 : bl.kcb, first = k0 == 0, last = k0 + nk == kb;
                for (int m0 = 0; m0 < rp; m0 += 32) {
                    const size_t aoff = (size_t)m0 * kp + (size_t)k0 * 32;
                    for (int n0 = g0; n0 < g1; n0 += 32) {
                        const uint16_t *bp = W->d + (size_t)(n0 / 32) * panel_stride + (size_t)k0 * kstep;
                        float *slot = part + ((size_t)(m0 / 32) * bl.group + (size_t)(n0 - g0) / 32) * 1024;
                        amx_block(ab + aoff, x3 ? al + aoff : NULL, (long)kp * 2, bp, nk, W->split,
                                  first ? NULL : slot, last ? cs : slot);
                        __asm__ volatile("" ::: "memory"); /* cs or the slot was written by a tile store */
                        if (!last) continue;
                        const int mr = rows - m0 < 32 ? rows - m0 : 32, nc = N - n0 < 32 ? N - n0 : 32;
                        amx_epilogue(cs, mr, nc, bias ? bias + n0 : NULL, res, ldr, accumulate, act, C, ldc,
                                     (size_t)r0 + m0, n0);
                    }
                }
            }
        }
    }
    _tile_release();
}

void nn_gemm_bf16(int M, const float *A, int lda, const nn_wpack *W, const float *bias, const float *res,
                  int ldr, int accumulate, nn_act act, float *C, int ldc, float *scratch)
{
    if (M <= 0) return;
    MC_ASSERT(amx_state == 1);
    amx_gemm(M, A, lda, W, bias, res, ldr, accumulate, act, C, ldc, scratch);
}

#else

void nn_gemm_bf16(int M, const float *A, int lda, const nn_wpack *W, const float *bias, const float *res,
                  int ldr, int accumulate, nn_act act, float *C, int ldc, float *scratch)
{
    (void)M, (void)A, (void)lda, (void)W, (void)bias, (void)res, (void)ldr, (void)accumulate, (void)act,
        (void)C, (void)ldc, (void)scratch;
    MC_ASSERT(!"AMX on a non-x86 build");
}

#endif
