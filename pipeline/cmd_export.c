/* pipeline/cmd_export.c: `morphcat export`: the catalogue as a FITS binary table or CSV with Zoobot's column
 * names, clumps as a second extension or CSV. Argument handling only: the writing is report/export.c. */
#include <getopt.h>

#include "pipeline/cli.h"
#include "report/report.h"

static void export_usage(FILE *f)
{
    fprintf(
        f,
        "usage: morphcat export CAT.h5 --format fits|csv --output FILE [--friendly]\n\n"
        "One row per galaxy: id_str, ra, dec (deg), status (code), message, release, then per answer\n"
        "Zoobot's <answer>_fraction, _90pc-lower, _90pc-upper, _proportion-asked and _dirichlet columns.\n"
        "With clumps: one row per clump (id_str, row, slot, class, label, score, x1, y1, x2, y2 in pixels,\n"
        "ra, dec) as the FITS extension CLUMPS, or for csv a second file FILE_clumps.csv.\n"
        "  --friendly   blank (NaN, or empty in CSV) every fraction whose question fewer than half the\n"
        "               volunteers would be asked (proportion-asked < 0.5), as zoobot's friendly table\n"
        "Streams the catalogue in chunks; written to FILE.tmp and renamed. Exit 1 with one line on "
        "failure.\n");
}

int cmd_export(int argc, char **argv)
{
    static const struct option opts[] = {{"format", required_argument, 0, 'f'},
                                         {"output", required_argument, 0, 'o'},
                                         {"friendly", no_argument, 0, 'r'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *format = NULL, *output = NULL;
    int friendly = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            format = optarg;
            break;
        case 'o':
            output = optarg;
            break;
        case 'r':
            friendly = 1;
            break;
        case 'h':
            export_usage(stdout);
            return MC_EXIT_OK;
        default:
            export_usage(stderr);
            return MC_EXIT_USAGE;
        }
    }
    if (!format || !output || optind != argc - 1 || (strcmp(format, "fits") && strcmp(format, "csv"))) {
        fprintf(stderr, "morphcat: export: give one CAT.h5, --format fits or csv, and --output FILE\n");
        export_usage(stderr);
        return MC_EXIT_USAGE;
    }
    char err[MC_ERR_LEN];
    rpt_export_stats st;
    double t0 = mc_now();
    if (rpt_export(argv[optind], strcmp(format, "fits") ? RPT_EXPORT_CSV : RPT_EXPORT_FITS, output, friendly,
                   &st, err)) {
        fprintf(stderr, "morphcat: export: %s\n", err);
        return MC_EXIT_FAIL;
    }
    printf("export: %s: %lld galaxies x %lld columns%s", output, (long long)st.rows, (long long)st.columns,
           friendly ? " (friendly)" : "");
    if (st.clumps_path[0])
        printf(", %lld clumps in %s", (long long)st.clumps, st.clumps_path);
    else if (st.clumps)
        printf(", %lld clumps in the CLUMPS extension", (long long)st.clumps);
    printf(" (%.1f s)\n", mc_now() - t0);
    return MC_EXIT_OK;
}
