/* pipeline/cmd_anomalies.c: `morphcat anomalies`: the paper's anomaly ranking. Without labels, an isolation
 * forest (the astronomaly baseline); with a researcher's interest scores, a Gaussian process on the
 * standardised features ranks everyone by its posterior mean, or (--next N) proposes the N unlabelled
 * galaxies to label next by expected improvement (the paper's active-learning loop). Not here: the methods
 * (science/iforest.c, science/gp.c). */
#include <errno.h>
#include <getopt.h>
#include <math.h>

#include "pipeline/cli.h"
#include "science/science.h"

static void anomalies_usage(FILE *f)
{
    fprintf(
        f,
        "usage: morphcat anomalies --catalogue CAT.h5 [--pca DIR] [--seed S] [--trees T] --output OUT.csv\n"
        "       morphcat anomalies --catalogue CAT.h5 [--pca DIR] --labels L.csv [--next N]\n"
        "                          [--kernel L,A,S] [--tradeoff X] --output OUT.csv\n\n"
        "Without --labels: isolation-forest anomaly scores (T trees, default 100, of min(256, n) rows each;\n"
        "reproducible for a seed), CSV rank,id_str,score, most anomalous first.\n"
        "With --labels (CSV id_str,score: interest 0-5): a Gaussian process (RationalQuadratic + "
        "WhiteKernel,\n"
        "hyperparameters by maximum marginal likelihood from length scale, alpha and noise 1, or fixed with\n"
        "--kernel L,A,S) on features standardised over the ok rows; OUT.csv ranks every ok row by the\n"
        "posterior mean (score). --next N writes instead the N unlabelled rows with the highest expected\n"
        "improvement over the best label (tradeoff X, default 0.5), best first.\n");
}

typedef struct top_item {
    double score;
    int64_t row;
    char *id;
} top_item;

/* keep the N best (score desc, then row) in a sorted array */
static void top_push(top_item *t, int *n, int cap, double score, int64_t row, const char *id, size_t w)
{
    if (*n == cap && (score < t[cap - 1].score || (score == t[cap - 1].score && row > t[cap - 1].row)))
        return;
    int at = *n < cap ? *n : cap - 1;
    char *spare = t[at].id;
    while (at > 0 && (t[at - 1].score < score || (t[at - 1].score == score && t[at - 1].row > row))) {
        t[at] = t[at - 1];
        at--;
    }
    t[at] = (top_item){score, row, spare};
    memcpy(spare, id, w);
    if (*n < cap) (*n)++;
}

static int gp_rank(sci_cat *cc, const sci_pca *pca, const char *labels_path, int next, const double *kernel,
                   double tradeoff, FILE *f, char *err)
{
    sci_labels l;
    if (sci_labels_read(labels_path, &l, err)) return -1;
    double *y = mc_malloc(sizeof(double) * (size_t)l.n), best = -INFINITY;
    for (int64_t i = 0; i < l.n; i++) {
        char *end;
        y[i] = strtod(l.value[i], &end);
        if (end == l.value[i] || *end || !isfinite(y[i])) {
            mc_fail(err, "%s: line %lld: score '%s' is not a number", labels_path, (long long)l.line[i],
                    l.value[i]);
            free(y);
            sci_labels_free(&l);
            return -1;
        }
        best = fmax(best, y[i]);
    }
    int d = pca ? pca->k : sci_cat_dim(cc);
    double *mu = mc_malloc(sizeof(double) * (size_t)d), *sd = mc_malloc(sizeof(double) * (size_t)d);
    int64_t n_ok, *lrow = mc_malloc(sizeof(int64_t) * (size_t)l.n);
    float *lx = mc_malloc(sizeof(float) * (size_t)l.n * d);
    sci_gp g = {.length_scale = 1, .alpha = 1, .noise = 1};
    if (kernel) {
        g.length_scale = kernel[0];
        g.alpha = kernel[1];
        g.noise = kernel[2];
    }
    int rc = sci_feature_moments(cc, pca, mu, sd, &n_ok, err);
    if (!rc) rc = sci_labels_gather(&l, labels_path, cc, pca, lrow, lx, err);
    if (!rc) rc = sci_gp_fit(&g, lx, y, (int)l.n, d, mu, sd, !kernel, err);
    free(lx);
    free(lrow);
    free(mu);
    free(sd);
    free(y);
    if (rc) {
        sci_labels_free(&l);
        return -1;
    }
    printf("anomalies: gaussian process on %lld labels: length_scale=%.9g alpha=%.9g noise_level=%.9g "
           "log_marginal_likelihood=%.9g (%s)\n",
           (long long)l.n, g.length_scale, g.alpha, g.noise, g.lml,
           kernel ? "fixed by --kernel" : "maximised");
    sci_stream s;
    sci_stream_open(&s, cc, pca, next > 0, 0, -1);
    double *mean = mc_malloc(sizeof(double) * (size_t)s.chunk),
           *sdev = mc_malloc(sizeof(double) * (size_t)s.chunk);
    int64_t *row = NULL, n = 0;
    double *score = NULL;
    top_item *top = NULL;
    int ntop = 0, r;
    if (next > 0) {
        top = mc_calloc((size_t)next, sizeof *top);
        for (int i = 0; i < next; i++) top[i].id = mc_calloc(1, s.id_width);
    } else {
        row = mc_malloc(sizeof(int64_t) * (size_t)(n_ok ? n_ok : 1));
        score = mc_malloc(sizeof(double) * (size_t)(n_ok ? n_ok : 1));
    }
    while ((r = sci_stream_next(&s, err)) == 1) {
        sci_gp_predict(&g, s.x, s.n, mean, next > 0 ? sdev : NULL);
        for (int64_t i = 0; i < s.n; i++) {
            if (next > 0) {
                if (sci_idset_find(l.ids, s.ids + i * s.id_width) >= 0) continue; /* already labelled */
                top_push(top, &ntop, next, sci_expected_improvement(mean[i], sdev[i], best, tradeoff),
                         s.row[i], s.ids + i * s.id_width, s.id_width);
            } else if (n < n_ok) {
                row[n] = s.row[i];
                score[n++] = mean[i];
            }
        }
    }
    rc = r < 0 ? -1 : 0;
    if (!rc && next > 0) {
        fprintf(f, "rank,id_str,score\n");
        for (int i = 0; i < ntop; i++) {
            fprintf(f, "%d,", i + 1);
            sci_csv_id(f, top[i].id);
            fprintf(f, ",%.9g\n", top[i].score);
        }
        printf("anomalies: the %d unlabelled galaxies with the highest expected improvement (best label %g, "
               "tradeoff %g)\n",
               ntop, best, tradeoff);
    } else if (!rc) {
        rc = sci_rank_write(f, cc, row, score, n, err);
        if (!rc) printf("anomalies: %lld ok rows ranked by the posterior mean interest\n", (long long)n);
    }
    sci_stream_close(&s);
    if (top)
        for (int i = 0; i < next; i++) free(top[i].id);
    free(top);
    free(row);
    free(score);
    free(mean);
    free(sdev);
    sci_gp_free(&g);
    sci_labels_free(&l);
    return rc;
}

int cmd_anomalies(int argc, char **argv)
{
    static const struct option opts[] = {{"catalogue", required_argument, 0, 'c'},
                                         {"pca", required_argument, 0, 'p'},
                                         {"seed", required_argument, 0, 's'},
                                         {"trees", required_argument, 0, 't'},
                                         {"output", required_argument, 0, 'o'},
                                         {"labels", required_argument, 0, 'l'},
                                         {"next", required_argument, 0, 'n'},
                                         {"kernel", required_argument, 0, 'K'},
                                         {"tradeoff", required_argument, 0, 'x'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cat = NULL, *dir = NULL, *out = NULL, *labels = NULL;
    uint64_t seed = 0;
    int trees = 100, next = 0, has_kernel = 0, c;
    double kernel[3] = {1, 1, 1}, tradeoff = 0.5;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            cat = optarg;
            break;
        case 'p':
            dir = optarg;
            break;
        case 's':
            seed = strtoull(optarg, NULL, 10);
            break;
        case 't':
            trees = atoi(optarg);
            break;
        case 'o':
            out = optarg;
            break;
        case 'l':
            labels = optarg;
            break;
        case 'n':
            next = atoi(optarg);
            break;
        case 'K':
            has_kernel = sscanf(optarg, "%lf,%lf,%lf", &kernel[0], &kernel[1], &kernel[2]) == 3 &&
                         kernel[0] > 0 && kernel[1] > 0 && kernel[2] > 0;
            if (!has_kernel) {
                fprintf(stderr, "morphcat: anomalies: --kernel takes three positive numbers L,A,S\n");
                return MC_EXIT_USAGE;
            }
            break;
        case 'x':
            tradeoff = atof(optarg);
            break;
        case 'h':
            anomalies_usage(stdout);
            return MC_EXIT_OK;
        default:
            anomalies_usage(stderr);
            return MC_EXIT_USAGE;
        }
    }
    if (!cat || !out || trees < 1 || next < 0 || optind != argc || ((next || has_kernel) && !labels)) {
        fprintf(stderr,
                "morphcat: anomalies: needs --catalogue and --output; --next and --kernel need --labels\n");
        return MC_EXIT_USAGE;
    }
    char err[MC_ERR_LEN];
    sci_cat *cc = NULL;
    sci_pca p = {0};
    double t0 = mc_now();
    int rc = sci_cat_open(cat, &cc, err);
    if (!rc && dir && !(rc = sci_pca_load(dir, &p, err))) rc = sci_pca_check(&p, dir, cc, err);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *f = NULL;
    if (!rc && !(f = fopen(tmp, "w"))) rc = mc_fail(err, "%s: cannot be written: %s", tmp, strerror(errno));
    if (!rc && labels) {
        rc = gp_rank(cc, dir ? &p : NULL, labels, next, has_kernel ? kernel : NULL, tradeoff, f, err);
    } else if (!rc) {
        int64_t *row = NULL, n = 0;
        double *score = NULL;
        rc = sci_iforest_scores(cc, dir ? &p : NULL, trees, seed, &row, &score, &n, err);
        if (!rc) rc = sci_rank_write(f, cc, row, score, n, err);
        if (!rc)
            printf("anomalies: isolation forest of %d trees (seed %llu) on %lld ok rows\n", trees,
                   (unsigned long long)seed, (long long)n);
        free(row);
        free(score);
    }
    if (f && fclose(f) && !rc) rc = mc_fail(err, "%s: cannot be written (disk full?)", tmp);
    if (!rc && rename(tmp, out))
        rc = mc_fail(err, "%s: cannot be renamed to %s: %s", tmp, out, strerror(errno));
    if (f && rc) remove(tmp);
    if (rc)
        fprintf(stderr, "morphcat: anomalies: %s\n", err);
    else
        printf("anomalies: %s in %.2f s\n", out, mc_now() - t0);
    sci_pca_free(&p);
    sci_cat_close(cc);
    return rc ? MC_EXIT_FAIL : MC_EXIT_OK;
}
