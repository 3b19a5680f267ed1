/* pipeline/cmd_plan.c: `morphcat plan`: argument handling and timing around jobs/plan.c, which splits a
 * manifest into chunk manifests for Slurm array tasks and estimates node-hours from a measured rate.
 * Not here: the arithmetic (jobs/plan.c) or any submission (slurm/submit.sh). */
#include <getopt.h>

#include "jobs/jobs.h"
#include "pipeline/cli.h"

static void plan_usage(FILE *f)
{
    fprintf(f,
            "usage: morphcat plan --manifest M --rate R --cores-per-node C [--nodes N] [--out DIR] [options]\n"
            "       morphcat plan --galaxies N --rate R --cores-per-node C [--nodes N]      (estimate only)\n\n"
            "Splits a manifest into chunks, one Slurm array task each, sized so a task computes for about\n"
            "--task-hours, and prints the node-hours and wall time the survey will take. With --out, writes\n"
            "DIR/chunks/chunk_NNNNN.csv (each task's manifest), DIR/chunks.tsv and DIR/plan.env, which\n"
            "slurm/submit.sh and slurm/morphcat-array.sbatch read (docs/jobs.md).\n\n"
            "  --rate R             galaxies/s per core, measured: the 'per rank galaxies/s' morphcat run prints\n"
            "  --cores-per-node C   ranks per node (one per core, one BLAS thread each)\n"
            "  --nodes N            nodes the survey may use at once (default 1)\n"
            "  --nodes-per-task K   nodes per array task (default 1)\n"
            "  --task-hours H       target computing time per task (default 4)\n"
            "  --chunk-rows R       rows per chunk instead (rounded up to a multiple of --batch)\n"
            "  --batch B            the job's --batch (default 16): chunks hold whole work units\n"
            "  --startup-seconds S  per task: MPI start, model and manifest load (default 60)\n"
            "  --out DIR            write the chunk manifests and plan files\n");
}

int cmd_plan(int argc, char **argv)
{
    static const struct option opts[] = {
        {"manifest", required_argument, 0, 'm'},      {"rate", required_argument, 0, 'r'},
        {"cores-per-node", required_argument, 0, 'c'}, {"nodes", required_argument, 0, 'n'},
        {"nodes-per-task", required_argument, 0, 'k'}, {"task-hours", required_argument, 0, 't'},
        {"chunk-rows", required_argument, 0, 'R'},     {"batch", required_argument, 0, 'b'},
        {"startup-seconds", required_argument, 0, 's'}, {"out", required_argument, 0, 'o'},
        {"galaxies", required_argument, 0, 'g'},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    jobs_plan_opts o = {.rate = 0, .nodes = 1, .cores_per_node = 0, .nodes_per_task = 1, .task_hours = 4,
                        .chunk_rows = 0, .batch = 16, .startup_seconds = 60};
    const char *manifest = NULL, *out = NULL;
    long long galaxies = -1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': manifest = optarg; break;
        case 'r': o.rate = atof(optarg); break;
        case 'c': o.cores_per_node = atoi(optarg); break;
        case 'n': o.nodes = atoi(optarg); break;
        case 'k': o.nodes_per_task = atoi(optarg); break;
        case 't': o.task_hours = atof(optarg); break;
        case 'R': o.chunk_rows = atoll(optarg); break;
        case 'b': o.batch = atoi(optarg); break;
        case 's': o.startup_seconds = atof(optarg); break;
        case 'o': out = optarg; break;
        case 'g': galaxies = atoll(optarg); break;
        case 'h': plan_usage(stdout); return MC_EXIT_OK;
        default: plan_usage(stderr); return MC_EXIT_USAGE;
        }
    }
    if (optind != argc || (!manifest && galaxies < 0) || (manifest && galaxies >= 0) || o.cores_per_node < 1) {
        fprintf(stderr, "morphcat: plan: give --manifest M (or --galaxies N), --rate and --cores-per-node "
                        "(morphcat plan --help)\n");
        return MC_EXIT_USAGE;
    }
    if (out && !manifest) {
        fprintf(stderr, "morphcat: plan: --out needs --manifest (the chunks are written from it)\n");
        return MC_EXIT_USAGE;
    }
    char err[MC_ERR_LEN];
    jobs_plan p;
    io_manifest_info info;
    int64_t n = galaxies;
    if (manifest) { /* counted and checked here, streamed into chunks by jobs_plan_write: rows never held */
        double t0 = mc_now();
        const io_manifest_scan_opts so = {.unique = 1};
        if (io_manifest_scan(manifest, &so, NULL, NULL, &info, err)) {
            fprintf(stderr, "morphcat: %s\n", err);
            return MC_EXIT_FAIL;
        }
        n = info.n;
        fprintf(stderr, "morphcat: plan: read %lld rows of %s in %.2f s\n", (long long)n, manifest, mc_now() - t0);
    }
    int rc = jobs_plan_make(n, &o, &p, err);
    if (!rc) jobs_plan_print(stdout, &p, &o);
    if (!rc && out) {
        double t0 = mc_now();
        rc = jobs_plan_write(out, &info, &p, &o, err);
        if (!rc)
            printf("  wrote %lld chunk manifests, %s/chunks.tsv and %s/plan.env in %.2f s; submit with: sh "
                   "slurm/submit.sh %s ...\n", (long long)p.n_chunks, out, out, mc_now() - t0, out);
    }
    if (rc) {
        fprintf(stderr, "morphcat: plan: %s\n", err);
        return MC_EXIT_FAIL;
    }
    return MC_EXIT_OK;
}
