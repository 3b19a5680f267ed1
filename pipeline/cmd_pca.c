/* pipeline/cmd_pca.c: `morphcat pca fit` (principal components of catalogues' embeddings, across MPI ranks
 * when run under mpirun, else as one process) and `morphcat pca apply` (a projected catalogue for the other
 * science commands). Not here: the statistics (science/pca.c). */
#include <getopt.h>

#include "pipeline/cli.h"
#include "science/science.h"

static void pca_usage(FILE *f)
{
    fprintf(
        f,
        "usage: morphcat pca fit --catalogue CAT.h5 [CAT2.h5 ...] --components K --out DIR\n"
        "       morphcat pca apply --catalogue CAT.h5 --pca DIR --out PROJ.h5\n\n"
        "fit: principal components of the ok rows' embeddings (embedding/features, float32 or float16),\n"
        "streamed in chunks; under mpirun the ranks split each catalogue's rows and combine their sums.\n"
        "Writes DIR/components.npy (K, D) float32, DIR/mean.npy (D,) and DIR/explained_variance.npy (K,),\n"
        "usable by `morphcat run --pca DIR/components.npy --pca-mean DIR/mean.npy`.\n"
        "apply: writes PROJ.h5, a catalogue of the ok rows' projections (galaxies/id_str, galaxies/status,\n"
        "embedding/features (N, K) float32) that every science command takes as --catalogue.\n");
}

static int pca_fit(int argc, char **argv)
{
    static const struct option opts[] = {{"catalogue", required_argument, 0, 'c'},
                                         {"components", required_argument, 0, 'k'},
                                         {"out", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char **paths = mc_calloc((size_t)argc, sizeof(char *));
    int n_paths = 0, k = 0, c;
    const char *out = NULL;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            paths[n_paths++] = optarg;
            while (optind < argc && argv[optind][0] != '-') paths[n_paths++] = argv[optind++];
            break;
        case 'k':
            k = atoi(optarg);
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            pca_usage(stdout);
            free(paths);
            return MC_EXIT_OK;
        default:
            pca_usage(stderr);
            free(paths);
            return MC_EXIT_USAGE;
        }
    }
    if (!n_paths || !out || k < 1 || optind != argc) {
        fprintf(stderr, "morphcat: pca fit: needs --catalogue, --components K (>= 1) and --out DIR\n");
        free(paths);
        return MC_EXIT_USAGE;
    }
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char err[MC_ERR_LEN] = "";
    sci_cat **cats = mc_calloc((size_t)n_paths, sizeof(sci_cat *));
    int rc = 0;
    for (int i = 0; i < n_paths && !rc; i++) rc = sci_cat_open(paths[i], &cats[i], err);
    int open_failed = rc != 0, any_open_failed;
    MPI_Allreduce(&open_failed, &any_open_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    sci_pca p = {0};
    if (!any_open_failed)
        rc = sci_pca_fit(MPI_COMM_WORLD, cats, n_paths, k, &p, err);
    else if (!rc)
        rc = -1; /* another rank's file: that rank says why */
    /* every rank reached the same verdict (sci_pca_fit combines failures); rank 0 writes and speaks */
    if (!rc && rank == 0) {
        rc = sci_pca_write(out, &p, err);
        if (!rc) {
            double tot = 0;
            for (int j = 0; j < p.k; j++) tot += p.variance[j];
            printf("pca fit: %lld ok rows of %d catalogue(s), %d-D to %d components (variance %.6g) in %.2f "
                   "s on %d "
                   "rank(s): %s\n",
                   (long long)p.n_rows, n_paths, p.d, p.k, tot, p.fit_seconds, size, out);
        }
    }
    if (rc && err[0]) fprintf(stderr, "morphcat: pca fit: %s\n", err);
    int any = rc != 0, all;
    MPI_Allreduce(&any, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    sci_pca_free(&p);
    for (int i = 0; i < n_paths; i++) sci_cat_close(cats[i]);
    free(cats);
    free(paths);
    MPI_Finalize();
    return all ? MC_EXIT_FAIL : MC_EXIT_OK;
}

static int pca_apply(int argc, char **argv)
{
    static const struct option opts[] = {{"catalogue", required_argument, 0, 'c'},
                                         {"pca", required_argument, 0, 'p'},
                                         {"out", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cat = NULL, *dir = NULL, *out = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            cat = optarg;
            break;
        case 'p':
            dir = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            pca_usage(stdout);
            return MC_EXIT_OK;
        default:
            pca_usage(stderr);
            return MC_EXIT_USAGE;
        }
    }
    if (!cat || !dir || !out || optind != argc) {
        fprintf(stderr, "morphcat: pca apply: needs --catalogue, --pca DIR and --out PROJ.h5\n");
        return MC_EXIT_USAGE;
    }
    char err[MC_ERR_LEN];
    sci_cat *cc = NULL;
    sci_pca p = {0};
    int64_t n = 0;
    double t0 = mc_now();
    int rc = sci_cat_open(cat, &cc, err);
    if (!rc) rc = sci_pca_load(dir, &p, err);
    if (!rc) rc = sci_pca_check(&p, dir, cc, err);
    if (!rc) rc = sci_pca_apply(cc, &p, dir, out, &n, err);
    if (rc)
        fprintf(stderr, "morphcat: pca apply: %s\n", err);
    else
        printf("pca apply: %lld ok rows projected to %d components in %.2f s: %s\n", (long long)n, p.k,
               mc_now() - t0, out);
    sci_pca_free(&p);
    sci_cat_close(cc);
    return rc ? MC_EXIT_FAIL : MC_EXIT_OK;
}

int cmd_pca(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "fit")) return pca_fit(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "apply")) return pca_apply(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        pca_usage(stdout);
        return MC_EXIT_OK;
    }
    pca_usage(stderr);
    return MC_EXIT_USAGE;
}
