/* tools/check_divisions.c: checks io/preprocess.c's pp_div_const (y / c as y * (1/c) plus one FMA
 * correction) against the division itself on every float y with |y| >= 2^-100, for each constant that
 * gz_decals_row divides by. Not part of the build: gcc -O3 -march=native tools/check_divisions.c -lm
 * (about 4 minutes on one core); prints one line per constant and exits 1 on any mismatch. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

__attribute__((optimize("fp-contract=off"))) static long mismatches(float c)
{
    const float r = 1.0f / c;
    long bad = 0;
    for (uint64_t u = 0; u < (1ull << 32); u++) {
        uint32_t b = (uint32_t)u, x1, x2;
        float y;
        memcpy(&y, &b, 4);
        if (!isfinite(y) || fabsf(y) < 0x1p-100f) continue;
        float q = y * r, q2 = fmaf(fmaf(-q, c, y), r, q), d = y / c;
        q2 = isfinite(q) ? q2 : q;
        memcpy(&x1, &q2, 4);
        memcpy(&x2, &d, 4);
        bad += x1 != x2;
    }
    return bad;
}

int main(void)
{
    const float cs[] = {0.008f, 0.014f, 0.019f, (float)(asinh(300.0) - asinh(-0.5)), 3.0f, 2.5f};
    long total = 0;
    for (int i = 0; i < 6; i++) {
        long m = mismatches(cs[i]);
        printf("c = %.9g: %ld mismatches\n", cs[i], m);
        total += m;
    }
    return total != 0;
}
