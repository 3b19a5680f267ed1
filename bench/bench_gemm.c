/* bench/bench_gemm.c: OpenBLAS sgemm (nn_gemm_fused) against the AMX bf16 GEMM (nn_gemm_bf16) on the matrix
 * shapes of ResNet-50 at 224 px (rows = pixels of a batch; `bench_gemm B` multiplies them by B), with the
 * same bias+ReLU epilogue, alternating the two sides. Prints GFLOP/s of each. Not a test. */
#include <cblas.h>

#include "nn/amx.h"
#include "nn/engine.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    nn_amx_request();
    nn_init();
    const char *why;
    int amx = nn_amx_usable(&why);
    if (!amx) printf("AMX not usable (%s): sgemm only\n", why);
    if (amx && nn_build_note()) printf("note: %s: the amx figures below are the emulator's\n", nn_build_note());
    const int mult = argc > 1 ? atoi(argv[1]) : 1;
    static const int shapes[][3] = {{12544, 64, 147}, {3136, 64, 576}, {3136, 256, 64}, {3136, 64, 256},
                                    {784, 128, 1152}, {784, 512, 128}, {196, 256, 2304}, {196, 1024, 256},
                                    {49, 512, 4608},  {49, 2048, 512}};
    printf("%s\n", nn_blas_describe());
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0] * mult, N = shapes[s][1], K = shapes[s][2];
        float *A = mc_malloc_aligned(sizeof(float) * (size_t)M * K), *W = mc_malloc_aligned(sizeof(float) * (size_t)N * K);
        float *C = mc_malloc_aligned(sizeof(float) * (size_t)M * N), *b = mc_calloc((size_t)N, sizeof(float));
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
        for (size_t i = 0; i < (size_t)N * K; i++) W[i] = (float)(i % 5) * 0.01f;
        nn_wpack p, q;
        nn_wpack_init(&p, W, N, K, K, 0);
        nn_wpack_init(&q, W, N, K, K, 1);
        size_t scn = nn_gemm_bf16_scratch(M, K, NN_SPLIT_NONE), scw = nn_gemm_bf16_scratch(M, K, NN_SPLIT_W);
        float *sc = mc_malloc_aligned(sizeof(float) * (scn > scw ? scn : scw));
        const double fl = 2.0 * M * N * K;
        const int reps = (int)(4e9 / fl) + 1;
        double ts = 0, ta = 0, tq = 0;
        for (int round = 0; round < 5; round++) {
            double t0 = now();
            for (int r = 0; r < reps; r++) nn_gemm_fused(M, N, K, A, K, W, K, b, NULL, 0, 0, NN_ACT_RELU, C, N);
            double t1 = now();
            if (amx)
                for (int r = 0; r < reps; r++) nn_gemm_bf16(M, A, K, &p, b, NULL, 0, 0, NN_ACT_RELU, C, N, sc);
            double t2 = now();
            if (amx)
                for (int r = 0; r < reps; r++) nn_gemm_bf16(M, A, K, &q, b, NULL, 0, 0, NN_ACT_RELU, C, N, sc);
            double t3 = now();
            ts += t1 - t0;
            ta += t2 - t1;
            tq += t3 - t2;
        }
        printf("M=%6d N=%5d K=%5d   sgemm %7.1f GFLOP/s   amx bf16 %7.1f   split weights %7.1f\n", M, N, K,
               fl * reps * 5 / ts / 1e9, amx ? fl * reps * 5 / ta / 1e9 : 0.0, amx ? fl * reps * 5 / tq / 1e9 : 0.0);
        nn_wpack_free(&p);
        nn_wpack_free(&q);
        free(sc), free(A), free(W), free(C), free(b);
    }
    return 0;
}
