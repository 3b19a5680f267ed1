/* tests/unit/test_amx.c: the AMX bf16 GEMM against a double-precision product of the same bf16-rounded
 * operands (so only accumulation order and fp32 rounding remain: relative max error <= 1e-5 of the
 * largest |C|), on shapes that exercise every padding path (M, N, K not multiples of 16 or 32), with each
 * epilogue (bias, residual, accumulate, activation). Skips (77) where AMX cannot run, saying why. Also run against
 * the emulated tiles of a test build (tests/test_amx_emu.sh). */
#include <math.h>

#include "nn/amx.h"
#include "nn/engine.h"
#include "unit.h"
#include "rng.h"

static uint32_t rng = 88172645u;
static float frand(void)
{
    return (float)(unit_xorshift32(&rng) >> 8) / 8388608.0f - 1.0f;
}

static float bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, sizeof f);
    return f;
}

static double run_case(int M, int N, int K, int accumulate, int use_res, nn_act act, int split)
{
    const int lda = K + 3, ldc = N + 5;
    float *A = mc_malloc(sizeof(float) * (size_t)M * lda), *W = mc_malloc(sizeof(float) * (size_t)N * K);
    float *bias = mc_malloc(sizeof(float) * (size_t)N), *res = mc_malloc(sizeof(float) * (size_t)M * ldc);
    float *C = mc_malloc(sizeof(float) * (size_t)M * ldc);
    double *ref = mc_malloc(sizeof(double) * (size_t)M * N);
    for (size_t i = 0; i < (size_t)M * lda; i++) A[i] = frand();
    for (size_t i = 0; i < (size_t)N * K; i++) W[i] = frand() * 0.1f;
    for (int i = 0; i < N; i++) bias[i] = frand();
    for (size_t i = 0; i < (size_t)M * ldc; i++) res[i] = C[i] = frand();
    float *C0 = mc_malloc(sizeof(float) * (size_t)M * ldc);
    memcpy(C0, C, sizeof(float) * (size_t)M * ldc);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = bias[j] + (accumulate ? C[(size_t)i * ldc + j] : use_res ? res[(size_t)i * ldc + j] : 0.0);
            for (int k = 0; k < K; k++) {
                float w = W[(size_t)j * K + k], hi = bf16_round(w), lo = bf16_round(w - hi);
                float a = A[(size_t)i * lda + k], ah = bf16_round(a), al = bf16_round(a - ah);
                if (split == NN_SPLIT_NONE) s += (double)ah * hi;
                else if (split == NN_SPLIT_W) s += (double)ah * ((double)hi + lo);
                else s += (double)ah * hi + (double)ah * lo + (double)al * hi;
            }
            if (act == NN_ACT_RELU) s = s > 0 ? s : 0;
            if (act == NN_ACT_SIGMOID) s = 1.0 / (1.0 + exp(-s));
            ref[(size_t)i * N + j] = s;
        }
    nn_wpack p;
    nn_wpack_init(&p, W, N, K, K, split);
    float *scratch = mc_malloc_aligned(sizeof(float) * nn_gemm_bf16_scratch(M, K, split));
    nn_gemm_bf16(M, A, lda, &p, bias, use_res ? res : NULL, ldc, accumulate, act, C, ldc, scratch);
    double worst = 0, big = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double d = fabs(C[(size_t)i * ldc + j] - ref[(size_t)i * N + j]);
            worst = d > worst ? d : worst;
            big = fabs(ref[(size_t)i * N + j]) > big ? fabs(ref[(size_t)i * N + j]) : big;
        }
    /* the columns of C past N (the row stride's slack) must be untouched */
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldc; j++)
            if (C[(size_t)i * ldc + j] != C0[(size_t)i * ldc + j]) worst = INFINITY;
    nn_wpack_free(&p);
    free(scratch);
    free(A), free(W), free(bias), free(res), free(C), free(C0), free(ref);
    return worst / (big > 0 ? big : 1);
}

int main(void)
{
    const char *why = NULL;
    nn_amx_request();
    if (!nn_amx_usable(&why)) {
        printf("skip: %s\n", why);
        return 77;
    }
    if (nn_build_note()) printf("note: %s\n", nn_build_note());
    static const int shapes[][3] = {{1, 1, 1},     {7, 5, 3},     {32, 32, 32},   {33, 17, 47},   {100, 64, 576},
                                    {1025, 96, 147}, {64, 1000, 2048}, {3000, 256, 64}, {17, 2048, 4608},
                                    {700, 40, 2080}}; /* two row chunks x three K chunks (the last of one block) */
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        for (int split = NN_SPLIT_NONE; split <= NN_SPLIT_W_AND_A; split++) {
            double e1 = run_case(M, N, K, 0, 0, NN_ACT_NONE, split);
            double e2 = run_case(M, N, K, 0, 1, NN_ACT_RELU, split);
            double e3 = run_case(M, N, K, 1, 0, NN_ACT_NONE, split);
            double e4 = run_case(M, N, K, 0, 0, NN_ACT_SIGMOID, split);
            printf("M=%d N=%d K=%d split %d: plain %.2g, residual+relu %.2g, accumulate %.2g, sigmoid %.2g\n", M, N, K, split, e1, e2, e3, e4);
            CHECK(e1 <= 1e-5 && e2 <= 1e-5 && e3 <= 1e-5 && e4 <= 1e-5, "M=%d N=%d K=%d split %d errors above 1e-5",
                  M, N, K, split);
        }
    }
    printf("%d checks, %d failed\n", n_checks, n_failed);
    return n_failed != 0;
}
