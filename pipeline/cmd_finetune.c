/* pipeline/cmd_finetune.c: `morphcat finetune` (a linear head on the frozen features from a few hundred
 * labels, the paper's rings experiment, with stratified k-fold cross-validated accuracy) and `morphcat
 * predict` (that head on every ok row of a catalogue). The head is a JSON file. Not here: the fitting
 * (science/linear.c). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>

#include "pipeline/cli.h"
#include "science/science.h"

static void finetune_usage(FILE *f)
{
    fprintf(
        f,
        "usage: morphcat finetune --catalogue CAT.h5 --labels L.csv [--pca DIR] [--l2 C] [--regression]\n"
        "                         [--folds K] --out HEAD.json\n"
        "       morphcat predict --catalogue CAT.h5 --head HEAD.json [--pca DIR] --output OUT.csv\n\n"
        "finetune: a linear classifier on the frozen features of the labelled ok rows (L.csv: id_str,label;\n"
        "two or more classes): multinomial logistic regression, binary for two classes, as scikit-learn's\n"
        "LogisticRegression(C) (--l2 C, default 1: inverse L2 strength, intercept not penalised). Prints "
        "the\n"
        "stratified K-fold cross-validated accuracy (K = --folds, default 5, at most the smallest class).\n"
        "--regression: ridge regression of a numeric label (sklearn Ridge(alpha=1/C)); prints CV R^2 and "
        "RMSE.\n"
        "With --pca DIR the features are the PCA projection (the head remembers DIR).\n"
        "predict: writes id_str,p_<class>... (or id_str,value) for every ok row.\n");
}

typedef struct class_sort {
    const char *name;
    double num;
} class_sort;

static int numeric_classes;

static int cmp_class(const void *a, const void *b)
{
    const class_sort *x = a, *y = b;
    if (numeric_classes) return (x->num > y->num) - (x->num < y->num);
    return strcmp(x->name, y->name);
}

static int is_number(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return end != s && !*end && isfinite(*v);
}

/* Labels to class indices (classes sorted as sklearn's np.unique: numerically when every label is a number).
 */
static int make_classes(const sci_labels *l, const char *path, double *y, char ***names, int *n_classes,
                        char *err)
{
    sci_idset *set = sci_idset_init(16);
    numeric_classes = 1;
    double v;
    for (int64_t i = 0; i < l->n; i++) {
        sci_idset_add(set, l->value[i]);
        if (!is_number(l->value[i], &v)) numeric_classes = 0;
    }
    int K = (int)sci_idset_size(set);
    if (K < 2) {
        mc_fail(
            err,
            "%s: %lld labels but only one class ('%s'): fewer classes than a classifier needs (two or more; "
            "--regression for a numeric label)",
            path, (long long)l->n, sci_idset_key(set, 0));
        sci_idset_free(set);
        return -1;
    }
    class_sort *cs = mc_malloc(sizeof *cs * (size_t)K);
    for (int k = 0; k < K; k++) {
        cs[k].name = sci_idset_key(set, k);
        cs[k].num = numeric_classes ? strtod(cs[k].name, NULL) : 0;
    }
    qsort(cs, (size_t)K, sizeof *cs, cmp_class);
    *names = mc_malloc(sizeof(char *) * (size_t)K);
    for (int k = 0; k < K; k++) (*names)[k] = mc_strdup(cs[k].name);
    for (int64_t i = 0; i < l->n; i++)
        for (int k = 0; k < K; k++)
            if (!strcmp(l->value[i], (*names)[k])) y[i] = k;
    free(cs);
    sci_idset_free(set);
    *n_classes = K;
    return 0;
}

/* Stratified folds: the rows of each class, in label-file order, go to folds 0, 1, ..., K-1, 0, ... */
static void cross_validate(const float *x, const double *y, int64_t n, int d, int K, int regression, double C,
                           int folds, int *fold, double *acc, double *rmse)
{
    int64_t *seen = mc_calloc((size_t)(regression ? 1 : K), sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) fold[i] = (int)(seen[regression ? 0 : (int)y[i]]++ % folds);
    free(seen);
    float *xt = mc_malloc(sizeof(float) * (size_t)n * d);
    double *yt = mc_malloc(sizeof(double) * (size_t)n),
           *out = mc_malloc(sizeof(double) * (size_t)(K > 1 ? K : 1));
    int64_t right = 0;
    double se = 0, ss = 0, ym = 0;
    for (int64_t i = 0; i < n; i++) ym += y[i] / (double)n;
    for (int f = 0; f < folds; f++) {
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++)
            if (fold[i] != f) {
                memcpy(xt + (size_t)m * d, x + (size_t)i * d, sizeof(float) * (size_t)d);
                yt[m++] = y[i];
            }
        sci_linear h;
        char err[MC_ERR_LEN];
        if (sci_linear_fit(&h, xt, yt, m, d, K, regression, C, err)) continue;
        for (int64_t i = 0; i < n; i++) {
            if (fold[i] != f) continue;
            sci_linear_predict(&h, x + (size_t)i * d, 1, out);
            if (regression) {
                se += (out[0] - y[i]) * (out[0] - y[i]);
                ss += (y[i] - ym) * (y[i] - ym);
            } else {
                int best = 0;
                for (int k = 1; k < K; k++)
                    if (out[k] > out[best]) best = k;
                right += best == (int)y[i];
            }
        }
        sci_linear_free(&h);
    }
    *acc = regression ? (ss > 0 ? 1.0 - se / ss : 0) : (double)right / (double)n;
    *rmse = sqrt(se / (double)n);
    free(xt);
    free(yt);
    free(out);
}

static cJSON *json_array(const double *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static int write_head(const char *path, const sci_linear *h, char **names, const char *pca_dir,
                      int64_t n_labels, int folds, double acc, double rmse, const char *cat, char *err)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "morphcat_head", "linear-1");
    cJSON_AddStringToObject(o, "kind", h->regression ? "ridge" : "logistic");
    cJSON_AddNumberToObject(o, "C", h->C);
    cJSON_AddNumberToObject(o, "dim", h->d);
    if (pca_dir)
        cJSON_AddStringToObject(o, "pca", pca_dir);
    else
        cJSON_AddNullToObject(o, "pca");
    if (!h->regression) {
        cJSON *c = cJSON_AddArrayToObject(o, "classes");
        for (int k = 0; k < h->n_classes; k++) cJSON_AddItemToArray(c, cJSON_CreateString(names[k]));
    }
    cJSON *coef = cJSON_AddArrayToObject(o, "coef");
    for (int r = 0; r < h->rows; r++)
        cJSON_AddItemToArray(coef, json_array(h->coef + (size_t)r * h->d, h->d));
    cJSON_AddItemToObject(o, "intercept", json_array(h->intercept, h->rows));
    cJSON_AddNumberToObject(o, "n_labels", (double)n_labels);
    cJSON_AddNumberToObject(o, "cv_folds", folds);
    if (folds > 1) cJSON_AddNumberToObject(o, h->regression ? "cv_r2" : "cv_accuracy", acc);
    if (folds > 1 && h->regression) cJSON_AddNumberToObject(o, "cv_rmse", rmse);
    cJSON_AddStringToObject(o, "trained_on", cat);
    char *txt = cJSON_Print(o);
    cJSON_Delete(o);
    FILE *f = fopen(path, "w");
    int rc = 0;
    if (!f)
        rc = mc_fail(err, "%s: cannot be written: %s", path, strerror(errno));
    else {
        fputs(txt, f);
        fputc('\n', f);
        if (fclose(f)) rc = mc_fail(err, "%s: cannot be written (disk full?)", path);
    }
    free(txt);
    return rc;
}

int cmd_finetune(int argc, char **argv)
{
    static const struct option opts[] = {{"catalogue", required_argument, 0, 'c'},
                                         {"labels", required_argument, 0, 'l'},
                                         {"pca", required_argument, 0, 'p'},
                                         {"l2", required_argument, 0, 'C'},
                                         {"regression", no_argument, 0, 'r'},
                                         {"folds", required_argument, 0, 'k'},
                                         {"out", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cat = NULL, *labels = NULL, *dir = NULL, *out = NULL;
    double C = 1.0;
    int regression = 0, folds = 5, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            cat = optarg;
            break;
        case 'l':
            labels = optarg;
            break;
        case 'p':
            dir = optarg;
            break;
        case 'C':
            C = atof(optarg);
            break;
        case 'r':
            regression = 1;
            break;
        case 'k':
            folds = atoi(optarg);
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            finetune_usage(stdout);
            return MC_EXIT_OK;
        default:
            finetune_usage(stderr);
            return MC_EXIT_USAGE;
        }
    }
    if (!cat || !labels || !out || !(C > 0) || folds < 0 || optind != argc) {
        fprintf(stderr,
                "morphcat: finetune: needs --catalogue, --labels and --out; --l2 C must be positive\n");
        return MC_EXIT_USAGE;
    }
    char err[MC_ERR_LEN];
    sci_cat *cc = NULL;
    sci_pca p = {0};
    sci_labels l = {0};
    double t0 = mc_now();
    int rc = sci_cat_open(cat, &cc, err);
    if (!rc && dir && !(rc = sci_pca_load(dir, &p, err))) rc = sci_pca_check(&p, dir, cc, err);
    if (!rc) rc = sci_labels_read(labels, &l, err);
    if (rc) {
        fprintf(stderr, "morphcat: finetune: %s\n", err);
        sci_pca_free(&p);
        sci_cat_close(cc);
        return MC_EXIT_FAIL;
    }
    int d = dir ? p.k : sci_cat_dim(cc), K = 1;
    double *y = mc_malloc(sizeof(double) * (size_t)l.n);
    char **names = NULL;
    if (regression) {
        for (int64_t i = 0; i < l.n && !rc; i++)
            if (!is_number(l.value[i], &y[i]))
                rc = mc_fail(err, "%s: line %lld: label '%s' is not a number (--regression)", labels,
                             (long long)l.line[i], l.value[i]);
        if (!rc && l.n < 2) rc = mc_fail(err, "%s: one label: a regression needs two or more", labels);
    } else {
        rc = make_classes(&l, labels, y, &names, &K, err);
    }
    float *x = mc_malloc(sizeof(float) * (size_t)l.n * d);
    int64_t *row = mc_malloc(sizeof(int64_t) * (size_t)l.n);
    if (!rc) rc = sci_labels_gather(&l, labels, cc, dir ? &p : NULL, row, x, err);
    sci_linear h = {0};
    double acc = 0, rmse = 0;
    int kf = folds;
    if (!rc) {
        double t1 = mc_now();
        rc = sci_linear_fit(&h, x, y, l.n, d, K, regression, C, err);
        double fit_s = mc_now() - t1;
        if (!regression) { /* at most the smallest class's size, as sklearn's StratifiedKFold requires */
            int64_t *cnt = mc_calloc((size_t)K, sizeof(int64_t));
            for (int64_t i = 0; i < l.n; i++) cnt[(int)y[i]]++;
            for (int k = 0; k < K; k++)
                if (cnt[k] < kf) kf = (int)cnt[k];
            free(cnt);
        } else if (l.n < kf) {
            kf = (int)l.n;
        }
        if (!rc && kf >= 2) {
            int *fold = mc_malloc(sizeof(int) * (size_t)l.n);
            cross_validate(x, y, l.n, d, K, regression, C, kf, fold, &acc, &rmse);
            free(fold);
        }
        if (!rc) rc = write_head(out, &h, names, dir, l.n, kf >= 2 ? kf : 0, acc, rmse, cat, err);
        if (!rc) {
            if (kf < 2)
                printf("finetune: no cross-validation (a class has a single label)\n");
            else if (regression)
                printf("finetune: %d-fold cross-validated R^2 %.4f, RMSE %.6g\n", kf, acc, rmse);
            else
                printf("finetune: %d-fold cross-validated accuracy %.4f\n", kf, acc);
            printf("finetune: %s on %lld labels (%d %s), %d features%s, C=%g: fit %.3f s, total %.2f s: %s\n",
                   regression ? "ridge regression" : "logistic regression", (long long)l.n,
                   regression ? 1 : K, regression ? "target" : "classes", d, dir ? " (PCA)" : "", C, fit_s,
                   mc_now() - t0, out);
        }
    }
    if (rc) fprintf(stderr, "morphcat: finetune: %s\n", err);
    sci_linear_free(&h);
    if (names)
        for (int k = 0; k < K; k++) free(names[k]);
    free(names);
    free(x);
    free(y);
    free(row);
    sci_labels_free(&l);
    sci_pca_free(&p);
    sci_cat_close(cc);
    return rc ? MC_EXIT_FAIL : MC_EXIT_OK;
}

/* ---- predict --------------------------------------------------------------------------------------------
 */
static int read_head(const char *path, sci_linear *h, char ***names, char **pca_dir, char *err)
{
    memset(h, 0, sizeof *h);
    FILE *f = fopen(path, "rb");
    if (!f) return mc_fail(err, "%s: cannot be opened: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *txt = mc_malloc((size_t)len + 1);
    size_t got = fread(txt, 1, (size_t)len, f);
    fclose(f);
    txt[got] = 0;
    cJSON *o = cJSON_Parse(txt);
    free(txt);
    const cJSON *kind = cJSON_GetObjectItem(o, "kind"), *dim = cJSON_GetObjectItem(o, "dim"),
                *coef = cJSON_GetObjectItem(o, "coef"), *icpt = cJSON_GetObjectItem(o, "intercept"),
                *cls = cJSON_GetObjectItem(o, "classes"), *pca = cJSON_GetObjectItem(o, "pca");
    if (!o || !cJSON_IsString(kind) || !cJSON_IsNumber(dim) || !cJSON_IsArray(coef) || !cJSON_IsArray(icpt)) {
        cJSON_Delete(o);
        return mc_fail(err, "%s: not a morphcat head (JSON with kind, dim, coef, intercept)", path);
    }
    h->regression = !strcmp(kind->valuestring, "ridge");
    h->d = dim->valueint;
    h->rows = cJSON_GetArraySize(coef);
    h->n_classes = h->regression ? 1 : cJSON_GetArraySize(cls);
    int ok = h->d > 0 && h->rows > 0 && cJSON_GetArraySize(icpt) == h->rows &&
             (h->regression ? h->rows == 1 : (h->n_classes == 2 ? h->rows == 1 : h->rows == h->n_classes));
    if (ok) {
        h->coef = mc_malloc(sizeof(double) * (size_t)h->rows * h->d);
        h->intercept = mc_malloc(sizeof(double) * (size_t)h->rows);
        for (int r = 0; r < h->rows && ok; r++) {
            const cJSON *row = cJSON_GetArrayItem(coef, r);
            ok = cJSON_GetArraySize(row) == h->d;
            for (int k = 0; k < h->d && ok; k++)
                h->coef[(size_t)r * h->d + k] = cJSON_GetArrayItem(row, k)->valuedouble;
            h->intercept[r] = cJSON_GetArrayItem(icpt, r)->valuedouble;
        }
    }
    if (ok && !h->regression) {
        *names = mc_calloc((size_t)h->n_classes, sizeof(char *));
        for (int k = 0; k < h->n_classes; k++) {
            const cJSON *s = cJSON_GetArrayItem(cls, k);
            (*names)[k] = mc_strdup(cJSON_IsString(s) ? s->valuestring : "?");
        }
    }
    *pca_dir = cJSON_IsString(pca) ? mc_strdup(pca->valuestring) : NULL;
    cJSON_Delete(o);
    if (!ok) {
        sci_linear_free(h);
        return mc_fail(err, "%s: the head's coef/intercept/classes do not agree in shape", path);
    }
    return 0;
}

int cmd_predict(int argc, char **argv)
{
    static const struct option opts[] = {{"catalogue", required_argument, 0, 'c'},
                                         {"head", required_argument, 0, 'H'},
                                         {"pca", required_argument, 0, 'p'},
                                         {"output", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cat = NULL, *head = NULL, *dir = NULL, *out = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            cat = optarg;
            break;
        case 'H':
            head = optarg;
            break;
        case 'p':
            dir = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            finetune_usage(stdout);
            return MC_EXIT_OK;
        default:
            finetune_usage(stderr);
            return MC_EXIT_USAGE;
        }
    }
    if (!cat || !head || !out || optind != argc) {
        fprintf(stderr, "morphcat: predict: needs --catalogue, --head and --output\n");
        return MC_EXIT_USAGE;
    }
    char err[MC_ERR_LEN], **names = NULL, *head_pca = NULL, tmp[4200];
    sci_cat *cc = NULL;
    sci_pca p = {0};
    sci_linear h = {0};
    int rc = sci_cat_open(cat, &cc, err), use_pca = 0;
    if (!rc) rc = read_head(head, &h, &names, &head_pca, err);
    if (!dir) dir = head_pca;
    if (!rc && dir) {
        use_pca = 1;
        if (!(rc = sci_pca_load(dir, &p, err))) rc = sci_pca_check(&p, dir, cc, err);
    }
    int d = use_pca ? p.k : (cc ? sci_cat_dim(cc) : 0);
    if (!rc && d != h.d)
        rc = mc_fail(err, "%s: the head takes %d features but %s gives %d (%s): mismatched PCA dimensions",
                     head, h.d, cat, d, use_pca ? "its PCA projection" : "its raw embeddings");
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *f = NULL;
    if (!rc && !(f = fopen(tmp, "w"))) rc = mc_fail(err, "%s: cannot be written: %s", tmp, strerror(errno));
    int64_t n = 0;
    if (!rc) {
        fprintf(f, "id_str");
        if (h.regression)
            fprintf(f, ",value");
        else
            for (int k = 0; k < h.n_classes; k++) fprintf(f, ",p_%s", names[k]);
        fprintf(f, "\n");
        sci_stream s;
        sci_stream_open(&s, cc, use_pca ? &p : NULL, 1, 0, -1);
        int cols = h.regression ? 1 : h.n_classes, r;
        double *o = mc_malloc(sizeof(double) * (size_t)s.chunk * cols);
        while ((r = sci_stream_next(&s, err)) == 1) {
            sci_linear_predict(&h, s.x, s.n, o);
            for (int64_t i = 0; i < s.n; i++) {
                sci_csv_id(f, s.ids + i * s.id_width);
                for (int k = 0; k < cols; k++) fprintf(f, ",%.9g", o[(size_t)i * cols + k]);
                fputc('\n', f);
            }
            n += s.n;
        }
        if (r < 0) rc = -1;
        free(o);
        sci_stream_close(&s);
    }
    if (f && fclose(f) && !rc) rc = mc_fail(err, "%s: cannot be written (disk full?)", tmp);
    if (!rc && rename(tmp, out))
        rc = mc_fail(err, "%s: cannot be renamed to %s: %s", tmp, out, strerror(errno));
    if (f && rc) remove(tmp);
    if (rc)
        fprintf(stderr, "morphcat: predict: %s\n", err);
    else
        printf("predict: %lld ok rows: %s\n", (long long)n, out);
    if (names)
        for (int k = 0; k < h.n_classes; k++) free(names[k]);
    free(names);
    free(head_pca);
    sci_linear_free(&h);
    sci_pca_free(&p);
    sci_cat_close(cc);
    return rc ? MC_EXIT_FAIL : MC_EXIT_OK;
}
