/* nn/amx_emu.h: the AMX tile operations nn/amx.c uses (LDTILECFG, TILELOADD, TILESTORED, TILEZERO, TDPBF16PS,
 * TILERELEASE) and AVX512_BF16's VCVTNE2PS2BF16, in software under the intrinsics' own names, so that a test
 * build (make MC_AMX_EMU=1, docs/engine.md) runs nn/amx.c's real kernels on CPUs without AMX. It models the
 * results (Intel SDM semantics: configured shapes, zeroing, rounding, DAZ/FTZ) and the faults as aborts; it
 * models no timing and is no faster than fp32. Needs AVX-512 F/BW/DQ/VL at run time, as the kernels around it
 * do. */
#ifndef NN_AMX_EMU_H
#define NN_AMX_EMU_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "mc.h"

/* The kernels' target: AVX-512 only. AMX and AVX512_BF16 are left out on purpose, so that an operation this
 * file does not replace fails to compile (GCC's intrinsics need their target) instead of faulting at run
 * time. */
#define AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

#define AMX_EMU_NOTE                                                                                         \
    "emulated AMX (an MC_AMX_EMU=1 test build: tile instructions run in software, the numbers are AMX's, "   \
    "the speed is not; never benchmark this binary)"

/* Palette 1, the only one Sapphire Rapids has: 8 tiles of at most 16 rows of 64 bytes. Tile state is per
 * thread, as the architectural state is. */
typedef struct amx_emu_state {
    int palette; /* 0: not configured (INIT state) */
    uint8_t rows[8];
    uint16_t colsb[8];
    _Alignas(64) uint8_t t[8][16][64];
} amx_emu_state;
static __thread amx_emu_state amx_emu;

static inline MC_NORETURN void amx_emu_fault(const char *insn, const char *why)
{
    char buf[256];
    snprintf(buf, sizeof buf, "emulated AMX: %s: %s (a fault on AMX hardware)", insn, why);
    mc_abort_at(__FILE__, __LINE__, buf);
}

static inline int amx_emu_cpu_ok(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

/* LDTILECFG: byte 0 palette, 1 start_row, 2-15 reserved (zero), 16-47 colsb[16], 48-63 rows[16]. Palette 0
 * returns to the INIT state; palette 1 checks every tile's shape (#GP otherwise) and zeroes all tile data. */
static inline void amx_emu_loadconfig(const void *config)
{
    const uint8_t *c = config;
    if (c[0] == 0) {
        memset(&amx_emu, 0, sizeof amx_emu);
        return;
    }
    if (c[0] != 1) amx_emu_fault("LDTILECFG", "palette other than 0 or 1");
    for (int i = 2; i < 16; i++)
        if (c[i]) amx_emu_fault("LDTILECFG", "reserved bytes 2-15 not zero");
    for (int t = 0; t < 16; t++) {
        uint16_t colsb;
        memcpy(&colsb, c + 16 + 2 * t, sizeof colsb);
        uint8_t rows = c[48 + t];
        if (t >= 8 && (colsb || rows)) amx_emu_fault("LDTILECFG", "a shape for a tile past tmm7");
        if (rows > 16 || colsb > 64) amx_emu_fault("LDTILECFG", "more than 16 rows or 64 bytes per row");
        if (!rows != !colsb) amx_emu_fault("LDTILECFG", "rows and colsb not both zero or both set");
        if (t < 8) amx_emu.rows[t] = rows, amx_emu.colsb[t] = colsb;
    }
    amx_emu.palette = 1;
    memset(amx_emu.t, 0, sizeof amx_emu.t);
}

static inline void amx_emu_release(void)
{
    memset(&amx_emu, 0, sizeof amx_emu);
}

static inline void amx_emu_valid(const char *insn, int t)
{
    if (amx_emu.palette != 1) amx_emu_fault(insn, "tiles not configured (LDTILECFG)");
    if (t < 0 || t > 7 || !amx_emu.rows[t]) amx_emu_fault(insn, "a tile the configuration leaves empty");
}

static inline __mmask64 amx_emu_bytes(int colsb)
{
    return colsb >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << colsb) - 1);
}

/* TILELOADD: rows x colsb bytes from base + r*stride; the rest of each row and the rows past `rows` become
 * zero, and nothing outside the configured bytes is read (a masked load does not touch the masked-out bytes).
 */
AMX_TARGET static inline void amx_emu_loadd(int t, const void *base, long stride)
{
    amx_emu_valid("TILELOADD", t);
    const __mmask64 m = amx_emu_bytes(amx_emu.colsb[t]);
    const int rows = amx_emu.rows[t];
    for (int r = 0; r < 16; r++) {
        __m512i v = r < rows ? _mm512_maskz_loadu_epi8(m, (const char *)base + (long)r * stride)
                             : _mm512_setzero_si512();
        _mm512_store_si512((void *)amx_emu.t[t][r], v);
    }
}

/* TILESTORED: exactly rows x colsb bytes to base + r*stride. */
AMX_TARGET static inline void amx_emu_stored(int t, void *base, long stride)
{
    amx_emu_valid("TILESTORED", t);
    const __mmask64 m = amx_emu_bytes(amx_emu.colsb[t]);
    for (int r = 0; r < amx_emu.rows[t]; r++)
        _mm512_mask_storeu_epi8((char *)base + (long)r * stride, m,
                                _mm512_load_si512((void *)amx_emu.t[t][r]));
}

static inline void amx_emu_zero(int t)
{
    amx_emu_valid("TILEZERO", t);
    memset(amx_emu.t[t], 0, sizeof amx_emu.t[t]);
}

/* TDPBF16PS dst, a, b (SDM): for each row m of dst, each pair k (K = a.colsb/4 = b.rows) and each column n
 * (dst.colsb/4 of them), dst[m][n] += fp32(a[m][2k]) * fp32(b[k][2n]), then += fp32(a[m][2k+1]) *
 * fp32(b[k][2n+1]), every accumulation an FMA rounded to nearest even, input denormals as zero, output
 * denormals flushed, MXCSR neither consulted nor updated. Here: FMAs under an MXCSR of RNE + DAZ + FTZ + all
 * exceptions masked, the caller's MXCSR (flags included) restored after. A product of two bf16 numbers is
 * exact in fp32, so the FMA is the SDM's multiply-then-add. Each element's sequence of operations is the
 * SDM's; only the order across elements differs (k outer, so the 16 rows accumulate in registers), which
 * cannot change a result. The columns past dst.colsb and the rows past dst.rows become zero. bf16 pairs:
 * element 2k is the low half of dword k. */
AMX_TARGET static inline void amx_emu_dpbf16ps(int dst, int a, int b)
{
    amx_emu_valid("TDPBF16PS", dst);
    amx_emu_valid("TDPBF16PS", a);
    amx_emu_valid("TDPBF16PS", b);
    if (dst == a || dst == b || a == b) amx_emu_fault("TDPBF16PS", "the three tiles are not distinct");
    const int K = amx_emu.colsb[a] / 4, rows = amx_emu.rows[dst];
    if (amx_emu.colsb[dst] % 4 || amx_emu.colsb[a] % 4 || amx_emu.colsb[b] % 4)
        amx_emu_fault("TDPBF16PS", "colsb not a multiple of 4");
    if (K != amx_emu.rows[b] || amx_emu.colsb[dst] != amx_emu.colsb[b] || rows != amx_emu.rows[a])
        amx_emu_fault("TDPBF16PS", "tile shapes do not fit (dst M x N, a M x K pairs, b K x N pairs)");
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(0x9fc0); /* FTZ (bit 15), exception masks (7-12), DAZ (bit 6), round to nearest (13-14 zero) */
    __asm__ volatile("" ::: "memory"); /* the tile reads below stay after the MXCSR write ... */
    const __m512i hi16 = _mm512_set1_epi32((int)0xffff0000u);
    __m512 acc[16];
    for (int m = 0; m < 16; m++) acc[m] = _mm512_load_ps((const float *)amx_emu.t[dst][m]);
    for (int k = 0; k < K; k++) {
        const __m512i bk = _mm512_load_si512((void *)amx_emu.t[b][k]);
        const __m512 b0 = _mm512_castsi512_ps(_mm512_slli_epi32(bk, 16)),
                     b1 = _mm512_castsi512_ps(_mm512_and_si512(bk, hi16));
        for (int m = 0; m < 16; m++) {
            uint32_t p;
            memcpy(&p, amx_emu.t[a][m] + 4 * k, sizeof p);
            acc[m] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_set1_epi32((int)(p << 16))), b0, acc[m]);
            acc[m] =
                _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_set1_epi32((int)(p & 0xffff0000u))), b1, acc[m]);
        }
    }
    const __mmask16 cols =
        (__mmask16)(amx_emu.colsb[dst] >= 64 ? 0xffff : (1u << amx_emu.colsb[dst] / 4) - 1);
    for (int m = 0; m < 16; m++)
        _mm512_store_ps((float *)amx_emu.t[dst][m],
                        m < rows ? _mm512_maskz_mov_ps(cols, acc[m]) : _mm512_setzero_ps());
    __asm__ volatile("" ::: "memory"); /* ... and the FMAs, whose results are stored, before it is restored */
    _mm_setcsr(csr);
}

/* VCVTNE2PS2BF16 (SDM's convert_fp32_to_bfloat16): zero and denormal to a signed zero, infinity truncated,
 * NaN truncated and made quiet (bit 6), a normal number rounded to nearest even by adding 0x7fff + its bit 16
 * (which carries into infinity when it must). Words 0-15 of the result come from lo (the second operand),
 * 16-31 from hi. */
AMX_TARGET static inline __m256i amx_emu_cvt16(__m512 x)
{
    const __m512i u = _mm512_castps_si512(x), e = _mm512_set1_epi32(0x7f800000);
    const __m512i exp = _mm512_and_si512(u, e);
    const __mmask16 zero = _mm512_cmpeq_epi32_mask(exp, _mm512_setzero_si512());
    const __mmask16 special = _mm512_cmpeq_epi32_mask(exp, e);
    const __mmask16 nan = special & _mm512_test_epi32_mask(u, _mm512_set1_epi32(0x007fffff));
    __m512i r = _mm512_add_epi32(
        u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                            _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
    r = _mm512_mask_mov_epi32(r, special, u);
    r = _mm512_mask_mov_epi32(r, zero, _mm512_and_si512(u, _mm512_set1_epi32((int)0x80000000u)));
    r = _mm512_srli_epi32(r, 16);
    r = _mm512_mask_or_epi32(r, nan, r, _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(r);
}

AMX_TARGET static inline __m512bh amx_emu_cvtne2ps_pbh(__m512 hi, __m512 lo)
{
    return (__m512bh)_mm512_inserti64x4(_mm512_castsi256_si512(amx_emu_cvt16(lo)), amx_emu_cvt16(hi), 1);
}

#undef _tile_loadd
#undef _tile_stored
#undef _tile_zero
#undef _tile_dpbf16ps
#define _tile_loadconfig(config) amx_emu_loadconfig(config)
#define _tile_release() amx_emu_release()
#define _tile_loadd(t, base, stride) amx_emu_loadd((t), (base), (long)(stride))
#define _tile_stored(t, base, stride) amx_emu_stored((t), (base), (long)(stride))
#define _tile_zero(t) amx_emu_zero(t)
#define _tile_dpbf16ps(dst, a, b) amx_emu_dpbf16ps((dst), (a), (b))
#define _mm512_cvtne2ps_pbh(hi, lo) amx_emu_cvtne2ps_pbh((hi), (lo))

#endif
