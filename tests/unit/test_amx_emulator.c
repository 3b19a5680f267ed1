/* tests/unit/test_amx_emulator.c: the software AMX of test builds (nn/amx_emu.h) against the SDM's definitions,
 * written here a second time in plain scalar C: loads and stores of configured shapes with strides (nothing
 * read or written outside them, the rest zeroed), TDPBF16PS bit for bit (the order of each element's FMAs,
 * DAZ, FTZ, the zeroed columns and rows) and VCVTNE2PS2BF16 on directed and random values. A wrong emulator
 * would hide or invent bf16 bugs, so it is tested in every build. Skips (77) without AVX-512. */
#include <math.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nn/amx_emu.h"
#include "unit.h"
#include "rng.h"

static uint32_t rng = 2463534242u;
static uint32_t next(void)
{
    return unit_xorshift32(&rng);
}

static float f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t u32(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* A random bf16: mostly normal numbers around 1, some zeros, denormals and tiny numbers whose products
 * underflow. */
static uint16_t bf16_random(void)
{
    uint32_t r = next(), sign = (r >> 31) << 15, kind = r % 16, mant = (r >> 8) & 0x7f;
    if (kind == 0) return (uint16_t)sign;
    if (kind == 1) return (uint16_t)(sign | mant | 1); /* denormal: zero for TDPBF16PS */
    if (kind == 2) return (uint16_t)(sign | (1 + (r >> 4) % 40) << 7 | mant); /* 2^-126 .. 2^-87 */
    return (uint16_t)(sign | (uint32_t)(120 + (r >> 4) % 14) << 7 | mant);
}

static float daz(float x)
{
    return fpclassify(x) == FP_SUBNORMAL ? copysignf(0.0f, x) : x;
}

static void cfg_set(uint8_t cfg[64], int t, int rows, int colsb)
{
    cfg[0] = 1;
    cfg[16 + 2 * t] = (uint8_t)colsb;
    cfg[17 + 2 * t] = (uint8_t)(colsb >> 8);
    cfg[48 + t] = (uint8_t)rows;
}

/* rows x colsb bytes at stride 100, the last row ending at a page followed by an inaccessible one: a load or
 * store that touched a byte past colsb would fault. */
static void test_load_store(void)
{
    const long page = sysconf(_SC_PAGESIZE), stride = 100;
    const int rows = 5, colsb = 24;
    char *map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    MC_ASSERT(map != MAP_FAILED);
    MC_ASSERT(mprotect(map + page, page, PROT_NONE) == 0);
    char *src = map + page - ((rows - 1) * stride + colsb);
    for (int i = 0; i < (rows - 1) * stride + colsb; i++) src[i] = (char)(next() | 1);
    uint8_t cfg[64] = {0};
    cfg_set(cfg, 2, rows, colsb);
    cfg_set(cfg, 3, 16, 64);
    amx_emu_loadconfig(cfg);
    amx_emu_loadd(3, src - 16 * 64 + (rows - 1) * stride + colsb, 64); /* a full tile, to be overwritten */
    amx_emu_loadd(2, src, stride);
    int bad = 0;
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 64; c++) {
            uint8_t want = r < rows && c < colsb ? (uint8_t)src[r * stride + c] : 0;
            bad += amx_emu.t[2][r][c] != want;
        }
    CHECK(bad == 0, "TILELOADD 5 rows x 24 bytes, stride 100: %d bytes wrong (rest must be zero)", bad);
    memset(map, 0xaa, (size_t)page);
    amx_emu_stored(2, src, stride);
    bad = 0;
    for (char *p = map; p < map + page; p++) {
        long off = p - src, r = off / stride, c = off % stride;
        int inside = off >= 0 && r < rows && c < colsb;
        bad += (uint8_t)*p != (inside ? amx_emu.t[2][r][c] : 0xaa);
    }
    CHECK(bad == 0, "TILESTORED writes exactly 5 rows x 24 bytes (%d bytes wrong)", bad);
    amx_emu_zero(3);
    bad = 0;
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 64; c++) bad += amx_emu.t[3][r][c] != 0;
    CHECK(bad == 0, "TILEZERO clears the tile");
    amx_emu_loadd(2, src, stride);
    amx_emu_loadconfig(cfg);
    bad = 0;
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 64; c++) bad += amx_emu.t[2][r][c] != 0;
    CHECK(bad == 0, "LDTILECFG zeroes the tiles");
    amx_emu_release();
    munmap(map, 2 * page);
}

/* TDPBF16PS on an M x K-pairs by K-pairs x N shape against the SDM's loop, one element at a time. */
static void test_dpbf16ps(int M, int K, int N)
{
    uint8_t cfg[64] = {0};
    cfg_set(cfg, 1, M, 4 * N); /* dst */
    cfg_set(cfg, 5, M, 4 * K); /* a */
    cfg_set(cfg, 6, K, 4 * N); /* b */
    amx_emu_loadconfig(cfg);
    static uint16_t a[16][32], b[16][32];
    static float c[16][16], got[16][16];
    int n_flushed = 0;
    for (int rep = 0; rep < 50; rep++) {
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 32; j++) a[i][j] = bf16_random(), b[i][j] = bf16_random();
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 16; j++) c[i][j] = rep % 2 ? f32((uint32_t)bf16_random() << 16) : 0.0f;
        amx_emu_loadd(5, a, 64);
        amx_emu_loadd(6, b, 64);
        amx_emu_loadd(1, c, 64);
        amx_emu_dpbf16ps(1, 5, 6);
        memset(got, 0x55, sizeof got);
        amx_emu_stored(1, got, 64);
        int bad = 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                float s = daz(c[m][n]);
                for (int k = 0; k < K; k++)
                    for (int t = 0; t < 2; t++) {
                        float x = daz(f32((uint32_t)a[m][2 * k + t] << 16));
                        float y = daz(f32((uint32_t)b[k][2 * n + t] << 16));
                        float r = fmaf(x, y, s);
                        if (fpclassify(r) == FP_SUBNORMAL) r = copysignf(0.0f, r), n_flushed++;
                        s = r;
                    }
                bad += u32(got[m][n]) != u32(s) && !(isnan(got[m][n]) && isnan(s));
            }
        for (int m = 0; m < 16; m++) /* outside M x N: nothing stored, and zero in the tile */
            for (int n = 0; n < 16; n++) {
                uint32_t t;
                memcpy(&t, amx_emu.t[1][m] + 4 * n, sizeof t);
                if (m >= M || n >= N) bad += u32(got[m][n]) != 0x55555555u || t != 0;
            }
        CHECK(bad == 0, "TDPBF16PS M=%d K=%d N=%d, round %d: %d elements differ from the SDM's loop", M, K, N,
              rep, bad);
        if (bad) break;
    }
    if (M == 16 && K == 16 && N == 16)
        CHECK(n_flushed > 0, "the random data reach FTZ (%d flushed sums)", n_flushed);
    amx_emu_release();
}

static uint16_t cvt_ref(float x)
{
    uint32_t u = u32(x), e = u & 0x7f800000u;
    if (e == 0) return (uint16_t)((u >> 16) & 0x8000);
    if (e == 0x7f800000u) return (uint16_t)((u >> 16) | ((u & 0x7fffff) ? 0x40 : 0));
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

AMX_TARGET static void cvt_emu(const float *hi, const float *lo, uint16_t *out)
{
    __m512bh v = amx_emu_cvtne2ps_pbh(_mm512_loadu_ps(hi), _mm512_loadu_ps(lo));
    _mm512_storeu_si512((void *)out, (__m512i)v);
}

static void test_cvt(void)
{
    static const uint32_t directed[16][2] = {
        {0x3f800000u, 0x3f80}, /* 1 */
        {0x3f808000u, 0x3f80}, /* 1 + 2^-8: a tie, to even (down) */
        {0x3f818000u, 0x3f82}, /* 1 + 3 * 2^-8: a tie, to even (up) */
        {0x3f808001u, 0x3f81}, /* just past the tie */
        {0x00000001u, 0x0000}, /* denormal: zero */
        {0x807fffffu, 0x8000}, /* negative denormal: -0 */
        {0x80000000u, 0x8000}, {0x7f800000u, 0x7f80}, {0xff800000u, 0xff80},
        {0x7f800001u, 0x7fc0},                        /* signalling NaN: made quiet */
        {0xffc12345u, 0xffc1}, {0x7f7fffffu, 0x7f80}, /* the largest float rounds to infinity */
        {0x00800000u, 0x0080},                        /* the smallest normal */
        {0xc0490fdbu, 0xc049}, {0x3eaaaaabu, 0x3eab}, {0x4b7fffffu, 0x4b80}};
    float hi[16], lo[16];
    uint16_t out[32];
    for (int i = 0; i < 16; i++) lo[i] = f32(directed[i][0]), hi[i] = -f32(directed[i][0] ^ 0x00400000u);
    cvt_emu(hi, lo, out);
    int bad = 0;
    for (int i = 0; i < 16; i++) bad += out[i] != directed[i][1] || out[16 + i] != cvt_ref(hi[i]);
    CHECK(bad == 0,
          "VCVTNE2PS2BF16 on directed values (ties, denormals, NaN, infinity; lo in words 0-15): %d wrong",
          bad);
    bad = 0;
    for (int rep = 0; rep < 20000; rep++) {
        for (int i = 0; i < 16; i++) lo[i] = f32(next()), hi[i] = f32(next());
        cvt_emu(hi, lo, out);
        for (int i = 0; i < 16; i++) bad += out[i] != cvt_ref(lo[i]) || out[16 + i] != cvt_ref(hi[i]);
    }
    CHECK(bad == 0, "VCVTNE2PS2BF16 on 640000 random bit patterns: %d wrong", bad);
}

int main(void)
{
    if (!amx_emu_cpu_ok()) {
        printf("skip: the AMX emulator needs AVX-512 F, BW, DQ and VL\n");
        return 77;
    }
    test_load_store();
    test_dpbf16ps(16, 16, 16);
    test_dpbf16ps(7, 5, 3);
    test_dpbf16ps(1, 16, 9);
    test_dpbf16ps(16, 1, 16);
    test_cvt();
    printf("%d checks, %d failed\n", n_checks, n_failed);
    return n_failed != 0;
}
