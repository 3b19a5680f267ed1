/* pipeline/cmd_report.c: `morphcat report`: the release report page of a catalogue. Argument handling only:
 * the page and its figures are report/page.c. */
#include <getopt.h>

#include "pipeline/cli.h"
#include "report/report.h"

static void report_usage(FILE *f)
{
    fprintf(
        f,
        "usage: morphcat report CAT.h5 --out DIR [--max-failures N] [--top N] [--tile S]\n\n"
        "Writes DIR/index.html and its PNG figures: a static page (no scripts, nothing fetched) with the "
        "job's\n"
        "identity and provenance (model, precision, recipe, release, software version), counts by status,\n"
        "the failed galaxies with their messages (the first --max-failures, default 1000, and the total),\n"
        "per-question histograms of the vote fractions, mosaics of the --top (default 8) galaxies the model\n"
        "is most confident about for the main answers (tiles of --tile pixels, default 96), and with clumps\n"
        "the clumps per galaxy and example cutouts with their boxes. One streaming pass over the catalogue:\n"
        "histograms are exact, the mosaics' galaxies come from top-N heaps. Exit 1 with one line on "
        "failure.\n");
}

int cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'}, {"max-failures", required_argument, 0, 'm'},
        {"top", required_argument, 0, 't'}, {"tile", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},      {0, 0, 0, 0}};
    const char *out = NULL;
    rpt_report_opts o = {.max_failures = 1000, .top = 8, .tile = 96};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 'm':
            o.max_failures = atoi(optarg);
            break;
        case 't':
            o.top = atoi(optarg);
            break;
        case 's':
            o.tile = atoi(optarg);
            break;
        case 'h':
            report_usage(stdout);
            return MC_EXIT_OK;
        default:
            report_usage(stderr);
            return MC_EXIT_USAGE;
        }
    }
    if (!out || optind != argc - 1 || o.max_failures < 0 || o.top < 1 || o.top > 64 || o.tile < 32 ||
        o.tile > 512) {
        fprintf(stderr, "morphcat: report: give one CAT.h5 and --out DIR (--max-failures >= 0, --top 1..64, "
                        "--tile 32..512)\n");
        report_usage(stderr);
        return MC_EXIT_USAGE;
    }
    char err[MC_ERR_LEN];
    double t0 = mc_now();
    if (rpt_report_write(argv[optind], out, &o, err)) {
        fprintf(stderr, "morphcat: report: %s\n", err);
        return MC_EXIT_FAIL;
    }
    printf("report: %s/index.html (%.1f s)\n", out, mc_now() - t0);
    return MC_EXIT_OK;
}
