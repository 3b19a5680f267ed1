/* bench/bench_forward.c: morphcat's side of `make bench`. Modes:
 *   bench_forward forward --model PATH --batch B [--size S] [--seconds T] [--input X.npy]
 *                                         images/s, GFLOP/s, arena, peak RSS; the batch is filled from the
 *                                         images of X.npy (cycled), else from uniform noise
 *   bench_forward sgemm [--seconds T]                                       single-thread sgemm GFLOP/s
 *   bench_forward detect --model PATH --input X.npy [--runs N]  the Faster R-CNN on the first image of X.npy
 *                                         ((N, 3, H, W) in [0, 1]): seconds per image (median and best of N
 *                                         after a warm-up), GFLOP/s, arena, peak RSS
 * Prints one JSON object per line. One configuration per process, so peak RSS belongs to it alone.
 * Not a test: it asserts nothing about speed; bench/run.sh compares figures measured in the same run. */
#include <cblas.h>
#include <sys/resource.h>

#include "io/npy.h"
#include "nn/nn.h"

static double arg_num(int argc, char **argv, const char *name, double dflt)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return atof(argv[i + 1]);
    return dflt;
}

static const char *arg_str(int argc, char **argv, const char *name)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return NULL;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Deterministic pseudo-random input in [0, 1). */
static void fill(float *x, size_t n)
{
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / 16777216.0f;
    }
}

static int bench_sgemm(double seconds)
{
    const int n = 2048;
    float *a = mc_malloc_aligned(sizeof(float) * n * n), *b = mc_malloc_aligned(sizeof(float) * n * n),
          *c = mc_malloc_aligned(sizeof(float) * n * n);
    fill(a, (size_t)n * n);
    fill(b, (size_t)n * n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double best = 0;
    double t_end = mc_now() + seconds;
    int reps = 0;
    while (mc_now() < t_end || reps < 3) {
        double t0 = mc_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double g = 2.0 * n * n * (double)n / (mc_now() - t0) / 1e9;
        if (g > best) best = g;
        reps++;
    }
    printf("{\"impl\":\"sgemm\",\"n\":%d,\"gflops\":%.1f,\"blas\":\"%s\"}\n", n, best, nn_blas_describe());
    free(a);
    free(b);
    free(c);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bench_detect(int argc, char **argv)
{
    const char *path = arg_str(argc, argv, "--model"), *input = arg_str(argc, argv, "--input");
    int runs = (int)arg_num(argc, argv, "--runs", 3);
    char err[MC_ERR_LEN];
    nn_det_config cfg;
    nn_det_config_default(&cfg);
    if (nn_precision_parse(arg_str(argc, argv, "--precision") ? arg_str(argc, argv, "--precision") : "fp32",
                           &cfg.precision, err)) {
        fprintf(stderr, "bench_forward: %s\n", err);
        return 2;
    }
    nn_detector *d;
    io_npy in;
    if (!path || !input || runs < 1) {
        fprintf(stderr, "bench_forward detect: --model and --input required\n");
        return 2;
    }
    if (nn_detector_load(path, &cfg, &d, err) || io_npy_open(input, &in, err)) {
        fprintf(stderr, "bench_forward: %s\n", err);
        return 1;
    }
    if (in.ndim != 4 || in.shape[1] != 3) {
        fprintf(stderr, "bench_forward: %s: want (N, 3, H, W)\n", input);
        return 1;
    }
    int H = (int)in.shape[2], W = (int)in.shape[3];
    float *x = mc_malloc(sizeof(float) * 3 * (size_t)H * W);
    if (io_npy_read_rows(&in, 0, 1, x, err)) {
        fprintf(stderr, "bench_forward: %s\n", err);
        return 1;
    }
    nn_detection dets[100];
    int n = 0;
    double *t = mc_malloc(sizeof(double) * (size_t)runs), *tc = mc_malloc(sizeof(double) * (size_t)runs);
    if (nn_detect(d, x, H, W, dets, 100, &n, NULL, NULL, err) != MC_ROW_OK) { /* warm-up: plans the arena */
        fprintf(stderr, "bench_forward: %s\n", err);
        return 1;
    }
    for (int i = 0; i < runs; i++) {
        double t0 = mc_now(), c0 = cpu_seconds();
        nn_detect(d, x, H, W, dets, 100, &n, NULL, NULL, err);
        t[i] = mc_now() - t0;
        tc[i] = cpu_seconds() - c0;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    qsort(tc, (size_t)runs, sizeof *tc, cmp_double);
    double macs = nn_detector_macs(d, H, W);
    printf("{\"model\":\"fasterrcnn_resnet50_fpn\",\"impl\":\"morphcat\",\"precision\":\"%s\",\"s_per_image\":%.4f,\"best\":%.4f,"
           "\"cpu_s_per_image\":%.4f,\"runs\":%d,\"input_hw\":[%d,%d],\"detections\":%d,\"gflops\":%.1f,\"arena_mb\":%.1f,"
           "\"peak_rss_mb\":%.1f,\"blas\":\"%s\"}\n",
           nn_precision_name(cfg.precision), t[runs / 2], t[0], tc[runs / 2], runs, H, W, n, 2e-9 * macs / t[0], nn_detector_plan_bytes(d, H, W) / 1048576.0,
           peak_rss_kb() / 1024.0, nn_blas_describe());
    free(t);
    free(tc);
    free(x);
    io_npy_close(&in);
    nn_detector_free(d);
    return 0;
}

int main(int argc, char **argv)
{
    nn_init();
    if (argc < 2) {
        fprintf(stderr, "usage: bench_forward forward --model PATH --batch B [--size S] [--seconds T] | sgemm\n");
        return 2;
    }
    double seconds = arg_num(argc, argv, "--seconds", 3.0);
    if (!strcmp(argv[1], "sgemm")) return bench_sgemm(seconds);
    if (!strcmp(argv[1], "detect")) return bench_detect(argc, argv);
    const char *path = arg_str(argc, argv, "--model");
    int batch = (int)arg_num(argc, argv, "--batch", 1), size = (int)arg_num(argc, argv, "--size", 224);
    const char *label = arg_str(argc, argv, "--label");
    char err[MC_ERR_LEN];
    nn_model *m;
    if (!path || nn_model_load(path, &m, err)) {
        fprintf(stderr, "bench_forward: %s\n", path ? err : "--model required");
        return 1;
    }
    const nn_model_info *mi = nn_model_info_of(m);
    nn_plan *p;
    nn_precision prec = NN_PREC_FP32;
    const char *ps = arg_str(argc, argv, "--precision");
    if (ps && nn_precision_parse(ps, &prec, err)) {
        fprintf(stderr, "bench_forward: %s\n", err);
        return 1;
    }
    if (prec == NN_PREC_BF16) nn_model_bf16_only(m); /* as morphcat's commands do */
    if (nn_plan_init(m, batch, size, size, prec, &p, err)) {
        fprintf(stderr, "bench_forward: %s\n", err);
        return 1;
    }
    size_t nin = (size_t)batch * mi->in_chans * size * size;
    float *x = mc_malloc_aligned(sizeof(float) * nin), *e = mc_malloc(sizeof(float) * (size_t)batch * mi->embed_dim);
    fill(x, nin);
    const char *input = arg_str(argc, argv, "--input");
    if (input) { /* real galaxies: speed should be measured on the values a survey feeds */
        io_npy a;
        if (io_npy_open(input, &a, err) || a.ndim != 4 || a.shape[1] != mi->in_chans || a.shape[2] != size ||
            a.shape[3] != size) {
            fprintf(stderr, "bench_forward: %s: need (N, %d, %d, %d) float32\n", input, mi->in_chans, size, size);
            return 1;
        }
        for (int i = 0; i < batch; i++)
            if (io_npy_read_rows(&a, i % a.shape[0], 1, x + (size_t)i * a.row_floats, err)) {
                fprintf(stderr, "bench_forward: %s\n", err);
                return 1;
            }
        io_npy_close(&a);
    }
    nn_forward(p, x, batch, e, NULL); /* warm-up: page in the arena and the weights */
    double t0 = mc_now(), c0 = cpu_seconds(), t;
    long images = 0;
    int reps = 0;
    do {
        nn_forward(p, x, batch, e, NULL);
        images += batch;
        reps++;
        t = mc_now() - t0;
    } while (t < seconds || reps < 3);
    double ips = images / t, ips_cpu = images / (cpu_seconds() - c0);
    printf("{\"impl\":\"morphcat\",\"precision\":\"%s\",\"model\":\"%s\",\"batch\":%d,\"size\":%d,\"images_per_s\":%.3f,"
           "\"images_per_cpu_s\":%.3f,\"gflops\":%.1f,\"gmac_per_image\":%.3f,\"arena_mb\":%.1f,\"peak_rss_mb\":%.1f,\"blas\":\"%s\"}\n",
           nn_precision_name(prec), label ? label : mi->arch, batch, size, ips, ips_cpu, ips * 2.0 * nn_plan_macs(p) / batch / 1e9,
           nn_plan_macs(p) / batch / 1e9, nn_plan_bytes(p) / 1048576.0, peak_rss_kb() / 1024.0, nn_blas_describe());
    free(x);
    free(e);
    nn_plan_free(p);
    nn_model_free(m);
    return 0;
}
