/* bench/bench_queue.c: the catalogue job's work queue (pipeline/work.c, the code `morphcat run` uses) at many
 * ranks, with the forward pass replaced by a timed sleep so that hundreds of oversubscribed ranks fit on a
 * few cores. The loop is `morphcat run`'s: up to two units in hand (the loader's two slots), mc_work_next
 * while a slot is free, the "batch", then mc_work_serve; rank 0 computes too. mpirun -n N bench_queue
 * [--units-per-rank U] [--batch-seconds T] [--jitter J] [--label S] Each batch sleeps T * (1 + J * u), u
 * uniform in [-1, 1] (seeded per rank). Prints one JSON line (rank 0): wall time against the ideal (all
 * units' sleep / N), workers' idle share (1 - their sleeping / wall), their time blocked waiting for an
 * answer, rank 0's answer latency (mean, p50, p99 as histogram bin edges, max) and serving time. Not a test:
 * it asserts nothing about speed. */
#include <math.h>

#include "pipeline/run.h"

static double arg_num(int argc, char **argv, const char *name, double dflt)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return atof(argv[i + 1]);
    return dflt;
}

static const char *arg_str(int argc, char **argv, const char *name, const char *dflt)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return dflt;
}

static void sleep_seconds(double s)
{
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* the latency (seconds) below which a fraction q of the requests fall, from the histogram's bin edges */
static double hist_quantile(const double *h, double n, double q, double max)
{
    double acc = 0;
    for (int b = 0; b < MC_WORK_HIST; b++) {
        acc += h[b];
        if (acc >= q * n) return fmin(1e-5 * ldexp(1.0, b), max);
    }
    return max;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const int per_rank = (int)arg_num(argc, argv, "--units-per-rank", 30);
    const double T = arg_num(argc, argv, "--batch-seconds", 0.2), J = arg_num(argc, argv, "--jitter", 0.1);
    const int64_t n_units = (int64_t)per_rank * size;
    int64_t *todo = NULL;
    if (rank == 0) {
        todo = mc_malloc(sizeof(int64_t) * (size_t)n_units);
        for (int64_t i = 0; i < n_units; i++) todo[i] = i;
    }
    uint64_t seed = 0x9E3779B97F4A7C15ull * (uint64_t)(rank + 1);
    mc_work *w = mc_work_init(MPI_COMM_WORLD, todo, n_units);
    free(todo);
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = mc_now();
    int64_t hand[2];
    int n_hand = 0, no_more = 0;
    double busy = 0, units = 0;
    for (;;) {
        while (!no_more && n_hand < 2) {
            mc_progress mine = {units, 0, units};
            int64_t u = mc_work_next(w, &mine);
            if (u < 0)
                no_more = 1;
            else
                hand[n_hand++] = u;
        }
        if (n_hand == 0) break;
        hand[0] = hand[1];
        n_hand--;
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        const double r = (double)(seed >> 11) / 9007199254740992.0 * 2 - 1;
        const double b0 = mc_now();
        sleep_seconds(T * (1 + J * r));
        busy += mc_now() - b0;
        units++;
        mc_work_serve(w);
    }
    mc_work_stats st;
    mc_work_stats_get(w, &st);
    mc_work_finish(w);
    const double t_end = mc_now() - t0;
    double wall = 0, sum_busy = 0, sum_units = 0, max_units = 0, min_units = 0;
    double mine[3] = {busy, st.wait_seconds, st.waits}, sums[3] = {0, 0, 0};
    MPI_Reduce(&t_end, &wall, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&busy, &sum_busy, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&units, &sum_units, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&units, &max_units, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&units, &min_units, 1, MPI_DOUBLE, MPI_MIN, 0, MPI_COMM_WORLD);
    if (rank == 0) mine[0] = mine[1] = mine[2] = 0; /* workers only */
    MPI_Reduce(mine, sums, 3, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        MC_ASSERT(sum_units == (double)n_units); /* every unit exactly once */
        const int nw = size > 1 ? size - 1 : 1;
        const double ideal = sum_busy / size;
        printf("{\"bench\":\"queue\",\"label\":\"%s\",\"ranks\":%d,\"batch_s\":%.3f,\"units\":%lld,"
               "\"wall_s\":%.3f,\"ideal_s\":%.3f,\"efficiency\":%.4f,\"idle_pct\":%.2f,\"blocked_pct\":%.3f,"
               "\"waits_per_worker\":%.2f,\"units_min\":%.0f,\"units_max\":%.0f,\"requests\":%.0f,"
               "\"latency_mean_ms\":%.3f,\"latency_p50_ms\":%.3f,\"latency_p99_ms\":%.3f,\"latency_max_ms\":%"
               ".3f,"
               "\"serve_us_per_request\":%.2f,\"rank0_serve_pct\":%.3f}\n",
               arg_str(argc, argv, "--label", ""), size, T, (long long)n_units, wall, ideal, ideal / wall,
               100.0 * (1 - (sum_busy - busy) / nw / wall), 100.0 * sums[1] / nw / wall, sums[2] / nw,
               min_units, max_units, st.requests, 1e3 * st.latency_sum / (st.requests > 0 ? st.requests : 1),
               1e3 * hist_quantile(st.latency_hist, st.requests, 0.5, st.latency_max),
               1e3 * hist_quantile(st.latency_hist, st.requests, 0.99, st.latency_max), 1e3 * st.latency_max,
               1e6 * st.serve_seconds / (st.requests > 0 ? st.requests : 1), 100.0 * st.serve_seconds / wall);
    }
    MPI_Finalize();
    return 0;
}
