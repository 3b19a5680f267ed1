/* tests/unit/test_report_csv_float.c: the CSV export's float32 text (rpt_csv_float) gives every float back
 * exactly through strtof, the reading every CSV reader does: 4 million random bit patterns over the whole
 * float32 range, every power of ten and its neighbours, the values a catalogue holds (fractions,
 * concentrations, boxes), subnormals, signed zero, and "" for NaN; and plain notation where a person reads it
 * (0.25, 12.5). */
#include <math.h>

#include "report/report_internal.h"
#include "tests/unit/unit.h"
#include "tests/unit/rng.h"

static uint32_t rng_state = 12345;
static uint32_t next_u32(void)
{
    return unit_xorshift32(&rng_state);
}

static int back(float v)
{
    char b[40];
    rpt_csv_float(b, v);
    float w = strtof(b, NULL);
    return memcmp(&v, &w, 4) == 0 || (v == 0 && w == 0 && signbit(v) == signbit(w));
}

int main(void)
{
    int bad = 0;
    for (int i = 0; i < 4000000; i++) {
        uint32_t u = next_u32();
        float v;
        memcpy(&v, &u, 4);
        if (!isfinite(v)) continue;
        if (!back(v) && bad++ < 5) {
            char b[40];
            rpt_csv_float(b, v);
            printf("FAIL %.9g (0x%08x) written as '%s'\n", (double)v, u, b);
        }
    }
    CHECK(bad == 0, "%d of 4M random float32 do not come back through strtof", bad);
    bad = 0;
    for (int e = -45; e <= 38; e++) {
        float p = (float)pow(10.0, e);
        float t[3] = {nextafterf(p, 0), p, nextafterf(p, INFINITY)};
        for (int k = 0; k < 3; k++) bad += !back(t[k]) + !back(-t[k]);
    }
    for (int i = 0; i < 1000000; i++) bad += !back((float)i / 999999.0f) + !back(1.0f + 100.0f * i / 1e6f);
    CHECK(bad == 0, "%d powers of ten, neighbours, fractions or concentrations do not come back", bad);
    char b[40];
    CHECK(rpt_csv_float(b, NAN) == 0 && b[0] == 0, "NaN is an empty field");
    rpt_csv_float(b, 0.25f);
    CHECK(!strcmp(b, "0.25"), "0.25 is written '%s'", b);
    rpt_csv_float(b, 12.5f);
    CHECK(!strcmp(b, "12.5"), "12.5 is written '%s'", b);
    rpt_csv_float(b, 100.0f);
    CHECK(!strcmp(b, "100"), "100 is written '%s'", b);
    rpt_csv_float(b, 0.1f);
    CHECK(!strcmp(b, "0.100000001"), "0.1f is written '%s' (9 digits: the float32 nearest 0.1)", b);
    rpt_csv_float(b, 1e-7f);
    CHECK(strchr(b, 'e') && back(1e-7f), "1e-7 is written '%s'", b);
    rpt_csv_float(b, -0.0f);
    CHECK(!strcmp(b, "-0"), "-0 is written '%s'", b);
    printf("%d checks, %d failed\n", n_checks, n_failed);
    return n_failed != 0;
}
