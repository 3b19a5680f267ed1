/* pipeline/cmd_similar.c: `morphcat similar`: the paper's similarity search, exact k nearest neighbours of
 * one or many query galaxies (by id_str) in one pass over the catalogue, on a PCA projection or the raw
 * embeddings. Not here: the search (science/neighbours.c). */
#include <errno.h>
#include <getopt.h>

#include "pipeline/cli.h"
#include "science/science.h"

static void similar_usage(FILE *f)
{
    fprintf(f,
            "usage: morphcat similar --catalogue CAT.h5 --id ID[,ID...] [--k N] [--pca DIR]\n"
            "                        [--metric euclidean|cosine|manhattan] [--output OUT.csv]\n\n"
            "Exact nearest neighbours of each query galaxy among the catalogue's ok rows (the query itself\n"
            "first), by one streamed pass. With --pca DIR (from `morphcat pca fit`) the search is on the\n"
            "projection, the paper's default (10 components, Euclidean); without it, on the raw embeddings.\n"
            "--k N: neighbours per query, the query included (default 8). CSV columns query_id,rank,id_str,\n"
            "distance (rank from 1); to stdout without --output. --id may repeat.\n");
}

/* Find each query's ok row in one pass over the id and status columns. */
static int find_queries(sci_cat *c, sci_idset *q, int64_t *row, char *err)
{
    int64_t nq = sci_idset_size(q), step = 1 << 18, N = sci_cat_rows(c);
    uint8_t *failed_status = mc_calloc((size_t)nq, 1);
    for (int64_t i = 0; i < nq; i++) row[i] = -1;
    size_t w = sci_cat_id_width(c);
    char *ids = mc_malloc((size_t)step * w);
    uint8_t *st = mc_malloc((size_t)step);
    int rc = 0;
    for (int64_t r0 = 0; r0 < N && !rc; r0 += step) {
        int64_t m = N - r0 < step ? N - r0 : step;
        if ((rc = sci_cat_read(c, r0, m, NULL, st, ids, err))) break;
        for (int64_t i = 0; i < m; i++) {
            int64_t j = sci_idset_find(q, ids + i * w);
            if (j < 0 || row[j] >= 0) continue;
            if (st[i] == MC_ROW_OK)
                row[j] = r0 + i;
            else if (!failed_status[j])
                failed_status[j] = st[i] ? st[i] : 255;
        }
    }
    for (int64_t j = 0; j < nq && !rc; j++) {
        if (row[j] >= 0) continue;
        if (failed_status[j])
            rc = mc_fail(err, "%s: id_str '%s' is a row without an embedding (status %s)", sci_cat_path(c),
                         sci_idset_key(q, j),
                         failed_status[j] == 255 ? "pending" : mc_row_status_name(failed_status[j]));
        else
            rc = mc_fail(err, "%s: unknown id: no row has id_str '%s'", sci_cat_path(c), sci_idset_key(q, j));
    }
    free(ids);
    free(st);
    free(failed_status);
    return rc;
}

int cmd_similar(int argc, char **argv)
{
    static const struct option opts[] = {{"catalogue", required_argument, 0, 'c'},
                                         {"id", required_argument, 0, 'i'},
                                         {"k", required_argument, 0, 'k'},
                                         {"pca", required_argument, 0, 'p'},
                                         {"metric", required_argument, 0, 'm'},
                                         {"output", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cat = NULL, *dir = NULL, *out = NULL, *metric = "euclidean";
    int k = 8, c;
    sci_idset *q = sci_idset_init(16);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            cat = optarg;
            break;
        case 'i': {
            char *s = mc_strdup(optarg), *save = NULL;
            for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) sci_idset_add(q, t);
            free(s);
            break;
        }
        case 'k':
            k = atoi(optarg);
            break;
        case 'p':
            dir = optarg;
            break;
        case 'm':
            metric = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            similar_usage(stdout);
            sci_idset_free(q);
            return MC_EXIT_OK;
        default:
            similar_usage(stderr);
            sci_idset_free(q);
            return MC_EXIT_USAGE;
        }
    }
    sci_metric m = !strcmp(metric, "euclidean")   ? SCI_METRIC_EUCLIDEAN
                   : !strcmp(metric, "cosine")    ? SCI_METRIC_COSINE
                   : !strcmp(metric, "manhattan") ? SCI_METRIC_MANHATTAN
                                                  : (sci_metric)-1;
    if (!cat || !sci_idset_size(q) || k < 1 || (int)m < 0 || optind != argc) {
        fprintf(stderr,
                "morphcat: similar: needs --catalogue and --id; --k >= 1; --metric euclidean, cosine or "
                "manhattan\n");
        sci_idset_free(q);
        return MC_EXIT_USAGE;
    }
    char err[MC_ERR_LEN];
    sci_cat *cc = NULL;
    sci_pca p = {0};
    int nq = (int)sci_idset_size(q), *found = NULL;
    int64_t *qrow = mc_malloc(sizeof(int64_t) * (size_t)nq);
    float *qx = NULL;
    sci_neighbour *nb = NULL;
    FILE *f = NULL;
    double t0 = mc_now();
    int rc = sci_cat_open(cat, &cc, err);
    if (!rc && dir && !(rc = sci_pca_load(dir, &p, err))) rc = sci_pca_check(&p, dir, cc, err);
    if (!rc) rc = find_queries(cc, q, qrow, err);
    if (!rc) {
        int D = sci_cat_dim(cc), d = dir ? p.k : D;
        float *raw = mc_malloc(sizeof(float) * (size_t)D);
        qx = mc_malloc(sizeof(float) * (size_t)nq * d);
        for (int i = 0; i < nq && !rc; i++) {
            rc = sci_cat_read(cc, qrow[i], 1, raw, NULL, NULL, err);
            if (dir)
                sci_pca_project(&p, raw, 1, qx + (size_t)i * d);
            else
                memcpy(qx + (size_t)i * d, raw, sizeof(float) * (size_t)d);
        }
        free(raw);
    }
    if (!rc) {
        nb = mc_calloc((size_t)nq * k, sizeof *nb);
        found = mc_calloc((size_t)nq, sizeof(int));
        rc = sci_neighbours(cc, dir ? &p : NULL, m, qx, qrow, nq, k, nb, found, err);
    }
    if (!rc) {
        f = out ? fopen(out, "w") : stdout;
        if (!f) rc = mc_fail(err, "%s: cannot be written: %s", out, strerror(errno));
    }
    if (!rc) {
        fprintf(f, "query_id,rank,id_str,distance\n");
        for (int i = 0; i < nq; i++)
            for (int j = 0; j < found[i]; j++) {
                sci_csv_id(f, sci_idset_key(q, i));
                fprintf(f, ",%d,", j + 1);
                sci_csv_id(f, nb[(size_t)i * k + j].id);
                fprintf(f, ",%.9g\n", nb[(size_t)i * k + j].dist);
            }
        if (f != stdout && fclose(f)) rc = mc_fail(err, "%s: cannot be written (disk full?)", out);
        if (!rc && out)
            printf("similar: %d quer%s, %d neighbours each, %s on %s, in %.2f s: %s\n", nq,
                   nq == 1 ? "y" : "ies", k, metric, dir ? "the PCA projection" : "the raw embeddings",
                   mc_now() - t0, out);
    }
    if (rc) fprintf(stderr, "morphcat: similar: %s\n", err);
    if (nb)
        for (int i = 0; i < nq * k; i++) free(nb[i].id);
    free(nb);
    free(found);
    free(qx);
    free(qrow);
    sci_pca_free(&p);
    sci_cat_close(cc);
    sci_idset_free(q);
    return rc ? MC_EXIT_FAIL : MC_EXIT_OK;
}
