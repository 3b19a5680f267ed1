/* science/neighbours.c: exact k-nearest-neighbour search of many queries in one streamed pass (the paper's
 * similarity search: sklearn NearestNeighbors, 8 neighbours, the query itself first). Distances are computed
 * directly in double from the float32 features (no |x|^2 - 2xq + |q|^2 shortcut, whose cancellation would
 * misplace near-duplicates). Not here: finding the queries' rows (pipeline/cmd_similar.c). */
#include <math.h>

#include "science/science.h"

static double distance(sci_metric m, const float *x, const float *q, double qnorm, int d)
{
    double acc = 0;
    if (m == SCI_METRIC_EUCLIDEAN) {
        for (int j = 0; j < d; j++) {
            double v = (double)x[j] - q[j];
            acc += v * v;
        }
        return sqrt(acc);
    }
    if (m == SCI_METRIC_MANHATTAN) {
        for (int j = 0; j < d; j++) acc += fabs((double)x[j] - q[j]);
        return acc;
    }
    double xx = 0; /* cosine distance 1 - x.q / (|x||q|), as sklearn */
    for (int j = 0; j < d; j++) {
        acc += (double)x[j] * q[j];
        xx += (double)x[j] * x[j];
    }
    double den = sqrt(xx) * qnorm;
    return den > 0 ? 1.0 - acc / den : 1.0;
}

/* a before b: self first, then distance, then row */
static int better(const sci_neighbour *a, double dist, int self, int64_t row)
{
    if (a->self != self) return a->self;
    if (a->dist != dist) return a->dist < dist;
    return a->row < row;
}

int sci_neighbours(sci_cat *c, const sci_pca *pca, sci_metric m, const float *q, const int64_t *query_row,
                   int nq, int k, sci_neighbour *out, int *found, char *err)
{
    sci_stream s;
    sci_stream_open(&s, c, pca, 1, 0, -1);
    int d = s.dim, rc;
    size_t w = s.id_width;
    double *qn = mc_malloc(sizeof(double) * (size_t)nq);
    for (int i = 0; i < nq; i++) {
        double a = 0;
        for (int j = 0; j < d; j++) a += (double)q[(size_t)i * d + j] * q[(size_t)i * d + j];
        qn[i] = sqrt(a);
        found[i] = 0;
        for (int j = 0; j < k; j++) out[(size_t)i * k + j].id = mc_calloc(1, w);
    }
    while ((rc = sci_stream_next(&s, err)) == 1) {
        for (int64_t r = 0; r < s.n; r++) {
            const float *x = s.x + (size_t)r * d;
            for (int i = 0; i < nq; i++) {
                int self = s.row[r] == query_row[i];
                double dist = self ? 0.0 : distance(m, x, q + (size_t)i * d, qn[i], d);
                sci_neighbour *l = out + (size_t)i * k;
                int n = found[i];
                if (n == k && !better(&(sci_neighbour){dist, s.row[r], self, NULL}, l[k - 1].dist,
                                      l[k - 1].self, l[k - 1].row))
                    continue;
                /* insertion into the sorted list, the worst falling off the end */
                int at = n < k ? n : k - 1;
                char *spare = l[at].id;
                while (at > 0 && !better(&l[at - 1], dist, self, s.row[r])) {
                    l[at] = l[at - 1];
                    at--;
                }
                l[at] = (sci_neighbour){dist, s.row[r], self, spare};
                memcpy(spare, s.ids + r * w, w);
                if (n < k) found[i]++;
            }
        }
    }
    free(qn);
    sci_stream_close(&s);
    return rc < 0 ? -1 : 0;
}
