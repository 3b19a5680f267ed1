/* science/iforest.c: an isolation forest (Liu, Ting & Zhou 2008, "Isolation Forest", ICDM), as sklearn's
 * IsolationForest with its defaults: each tree grown on psi = min(256, n) rows drawn without replacement,
 * a random feature and a uniform split between the node's extremes, depth limited to ceil(log2 psi); a
 * row's path length is its leaf depth plus c(leaf size). Two streamed passes: one gathering the trees' rows,
 * one scoring every ok row. Not here: ranking (catalogue.c's sci_rank_write). */
#include <math.h>

#include "science/science.h"

typedef struct if_node {
    int feature; /* -1: leaf */
    float split;
    int left, right, size;
} if_node;

typedef struct if_tree {
    if_node *node;
    int n, cap;
} if_tree;

/* average path length of an unsuccessful search in a binary search tree of n points */
static double c_factor(double n)
{
    if (n <= 1) return 0;
    if (n <= 2) return 1;
    return 2.0 * (log(n - 1.0) + 0.5772156649015329) - 2.0 * (n - 1.0) / n;
}

static int tree_add(if_tree *t)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->node = mc_realloc(t->node, sizeof(if_node) * (size_t)t->cap);
    }
    return t->n++;
}

static int grow(if_tree *t, const float *X, int d, int *idx, int n, int depth, int max_depth, sci_rng *r,
                int *feat)
{
    int me = tree_add(t);
    t->node[me] = (if_node){-1, 0, -1, -1, n};
    if (n <= 1 || depth >= max_depth) return me;
    /* a random feature that is not constant on this node's rows (sklearn draws again past constant ones) */
    for (int j = 0; j < d; j++) feat[j] = j;
    for (int left = d; left > 0; left--) {
        int pick = (int)(sci_rng_next(r) % (uint64_t)left), f = feat[pick];
        feat[pick] = feat[left - 1];
        float lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < n; i++) {
            float v = X[(size_t)idx[i] * d + f];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        if (!(hi > lo)) continue;
        float split = (float)(lo + (hi - lo) * sci_rng_uniform(r));
        if (split >= hi) split = lo; /* rounding: keep both sides non-empty */
        int a = 0;
        for (int i = 0; i < n; i++)
            if (X[(size_t)idx[i] * d + f] <= split) {
                int tmp = idx[a];
                idx[a++] = idx[i];
                idx[i] = tmp;
            }
        t->node[me].feature = f;
        t->node[me].split = split;
        int l = grow(t, X, d, idx, a, depth + 1, max_depth, r, feat);
        int rr = grow(t, X, d, idx + a, n - a, depth + 1, max_depth, r, feat);
        t->node[me].left = l;
        t->node[me].right = rr;
        return me;
    }
    return me; /* every feature constant: a leaf */
}

static double path_length(const if_tree *t, const float *x)
{
    int at = 0, depth = 0;
    while (t->node[at].feature >= 0) {
        at = x[t->node[at].feature] <= t->node[at].split ? t->node[at].left : t->node[at].right;
        depth++;
    }
    return depth + c_factor(t->node[at].size);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int sci_iforest_scores(sci_cat *c, const sci_pca *pca, int trees, uint64_t seed, int64_t **row_out,
                       double **score_out, int64_t *n_out, char *err)
{
    int64_t n_ok;
    if (sci_cat_count_ok(c, &n_ok, err)) return -1;
    if (n_ok < 2)
        return mc_fail(err, "%s: %lld ok rows: an isolation forest needs two or more", sci_cat_path(c),
                       (long long)n_ok);
    int psi = n_ok < 256 ? (int)n_ok : 256, max_depth = (int)ceil(log2((double)psi));
    sci_rng r = {seed * 0x2545f4914f6cdd1dull + 1};
    /* each tree's psi distinct ok-row ordinals (Floyd's sampling), then one pass to fetch them */
    int64_t *ord = mc_malloc(sizeof(int64_t) * (size_t)trees * psi);
    for (int t = 0; t < trees; t++) {
        int64_t *o = ord + (size_t)t * psi;
        int m = 0;
        for (int64_t j = n_ok - psi; j < n_ok; j++) {
            int64_t v = (int64_t)(sci_rng_next(&r) % (uint64_t)(j + 1));
            for (int i = 0; i < m; i++)
                if (o[i] == v) {
                    v = j;
                    break;
                }
            o[m++] = v;
        }
    }
    int64_t total = (int64_t)trees * psi, nu = 0;
    int64_t *uniq = mc_malloc(sizeof(int64_t) * (size_t)total);
    memcpy(uniq, ord, sizeof(int64_t) * (size_t)total);
    qsort(uniq, (size_t)total, sizeof(int64_t), cmp_i64);
    for (int64_t i = 0; i < total; i++)
        if (!nu || uniq[nu - 1] != uniq[i]) uniq[nu++] = uniq[i];
    sci_stream s;
    sci_stream_open(&s, c, pca, 0, 0, -1);
    int d = s.dim, rc;
    float *X = mc_malloc(sizeof(float) * (size_t)nu * d);
    int64_t seen = 0, u = 0;
    while ((rc = sci_stream_next(&s, err)) == 1 && u < nu)
        for (int64_t i = 0; i < s.n; i++, seen++)
            if (u < nu && uniq[u] == seen)
                memcpy(X + (size_t)u++ * d, s.x + (size_t)i * d, sizeof(float) * d);
    sci_stream_close(&s);
    if (rc < 0) {
        free(ord);
        free(uniq);
        free(X);
        return -1;
    }
    MC_ASSERT(u == nu);
    if_tree *forest = mc_calloc((size_t)trees, sizeof(if_tree));
    int *idx = mc_malloc(sizeof(int) * (size_t)psi), *feat = mc_malloc(sizeof(int) * (size_t)d);
    for (int t = 0; t < trees; t++) {
        for (int i = 0; i < psi; i++) {
            int64_t *hit = bsearch(&ord[(size_t)t * psi + i], uniq, (size_t)nu, sizeof(int64_t), cmp_i64);
            idx[i] = (int)(hit - uniq);
        }
        grow(&forest[t], X, d, idx, psi, 0, max_depth, &r, feat);
    }
    free(idx);
    free(feat);
    free(X);
    free(ord);
    free(uniq);
    int64_t *row = mc_malloc(sizeof(int64_t) * (size_t)n_ok);
    double *score = mc_malloc(sizeof(double) * (size_t)n_ok), cn = c_factor(psi);
    int64_t n = 0;
    sci_stream_open(&s, c, pca, 0, 0, -1);
    while ((rc = sci_stream_next(&s, err)) == 1)
        for (int64_t i = 0; i < s.n && n < n_ok; i++) {
            double h = 0;
            for (int t = 0; t < trees; t++) h += path_length(&forest[t], s.x + (size_t)i * d);
            row[n] = s.row[i];
            score[n++] = pow(2.0, -(h / trees) / cn);
        }
    sci_stream_close(&s);
    for (int t = 0; t < trees; t++) free(forest[t].node);
    free(forest);
    if (rc < 0) {
        free(row);
        free(score);
        return -1;
    }
    *row_out = row;
    *score_out = score;
    *n_out = n;
    return 0;
}
