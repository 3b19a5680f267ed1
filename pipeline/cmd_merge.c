/* pipeline/cmd_merge.c: `morphcat merge`: argument handling and the summary around jobs/merge.c, which
 * combines per-job catalogues into one release catalogue with one row per galaxy. Not here: the merge rule
 * or any HDF5 (jobs/merge.c). */
#include <getopt.h>

#include "jobs/jobs.h"
#include "pipeline/cli.h"
#include "pipeline/lock.h"

static void merge_usage(FILE *f)
{
    fprintf(f,
            "usage: morphcat merge --output RELEASE.h5 [--release NAME] [--allow-pending] CAT.h5 [CAT.h5 ...]\n\n"
            "Combines catalogues of the same model, schema and recipe (per chunk, per job, or earlier\n"
            "releases) into one, one row per id_str, copying every column (any row-indexed dataset). When\n"
            "inputs overlap, the row kept has the best status (ok, then a failure, then pending); among\n"
            "equals, the later input on the command line wins, so list older catalogues first. Rows appear\n"
            "in the order their id first appears. Catalogues of different models, schemas, recipes or\n"
            "columns are refused with one line. Pending rows (unfinished jobs) are refused unless\n"
            "--allow-pending. The output is written to RELEASE.h5.tmp and renamed: rerunning a merge\n"
            "(e.g. a Slurm step after afterok) is safe.\n\n"
            "  --release NAME   the release attribute of the result (default: the last input's)\n"
            "  --allow-pending  keep rows no input has finished, as pending\n"
            "  --lock-stale-after S  another host's lock on the output without a heartbeat for S seconds is\n"
            "                   stale (default 300); a merge into an output another job holds is refused\n");
}

int cmd_merge(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"release", required_argument, 0, 'r'},
                                         {"allow-pending", no_argument, 0, 'p'},
                                         {"lock-stale-after", required_argument, 0, 's'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *output = NULL, *release = "";
    int allow_pending = 0, c;
    double stale = MC_LOCK_STALE_DEFAULT;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case 'r': release = optarg; break;
        case 'p': allow_pending = 1; break;
        case 's': stale = atof(optarg); break;
        case 'h': merge_usage(stdout); return MC_EXIT_OK;
        default: merge_usage(stderr); return MC_EXIT_USAGE;
        }
    }
    if (!output || optind >= argc) {
        fprintf(stderr, "morphcat: merge: give --output and at least one catalogue (morphcat merge --help)\n");
        return MC_EXIT_USAGE;
    }
    if (strlen(release) >= IO_CAT_RELEASE_LEN) {
        fprintf(stderr, "morphcat: merge: --release is longer than %d bytes\n", IO_CAT_RELEASE_LEN - 1);
        return MC_EXIT_USAGE;
    }
    if (!(stale > 0)) {
        fprintf(stderr, "morphcat: merge: --lock-stale-after must be > 0 seconds\n");
        return MC_EXIT_USAGE;
    }
    char err[MC_ERR_LEN] = "", note[MC_ERR_LEN];
    jobs_merge_stats st;
    double t0 = mc_now();
    mc_lock *lock;
    if (mc_lock_acquire(output, "merge", stale, &lock, note, err)) {
        fprintf(stderr, "morphcat: merge: %s\n", err);
        return MC_EXIT_FAIL;
    }
    if (note[0]) fprintf(stderr, "morphcat: merge: %s\n", note);
    int rc = jobs_merge((const char *const *)argv + optind, argc - optind, output, release, allow_pending, &st, err);
    mc_lock_release(lock);
    if (rc) {
        fprintf(stderr, "morphcat: merge: %s\n", err);
        return MC_EXIT_FAIL;
    }
    printf("morphcat: merge: %s: %lld galaxies from %d catalogue(s) (%lld rows in, %lld duplicate ids resolved",
           output, (long long)st.rows_out, argc - optind, (long long)st.rows_in, (long long)st.duplicates);
    if (st.replaced_failed) printf(", %lld failed rows replaced by ok ones", (long long)st.replaced_failed);
    if (st.no_id) printf(", %lld rows without an id_str kept as they are", (long long)st.no_id);
    if (st.pending_out) printf(", %lld pending", (long long)st.pending_out);
    printf(") in %.1f s\n", mc_now() - t0);
    return MC_EXIT_OK;
}
