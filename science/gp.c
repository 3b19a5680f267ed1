/* science/gp.c: Gaussian-process regression of interest scores, the paper's personalised anomaly finder:
 * kernel RationalQuadratic(l, a) + WhiteKernel(s) on standardised features, zero prior mean (sklearn's
 * GaussianProcessRegressor with normalize_y=False), hyperparameters maximising the log marginal likelihood
 * (Rasmussen & Williams 2006, eq. 2.30 and 5.9) in log space within sklearn's bounds 1e-5..1e5, from
 * l = a = s = 1 as sklearn. Cholesky factor and solves by LAPACKE; the posterior per streamed chunk by
 * OpenBLAS. Not here: choosing which rows are labelled (pipeline/cmd_anomalies.c). */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>

#include "science/science.h"

static void rq_kernel(const double *x, int n, int d, double l, double a, double s, double *K, double *D2)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double r2 = 0;
            for (int k = 0; k < d; k++) {
                double v = x[(size_t)i * d + k] - x[(size_t)j * d + k];
                r2 += v * v;
            }
            if (D2) D2[(size_t)i * n + j] = D2[(size_t)j * n + i] = r2;
            double kv = pow(1.0 + r2 / (2.0 * a * l * l), -a) + (i == j ? s : 0);
            K[(size_t)i * n + j] = K[(size_t)j * n + i] = kv;
        }
}

typedef struct gp_ctx {
    const double *x, *y, *D2;
    int n, d;
    double *K, *Kinv, *alpha;
} gp_ctx;

/* negative log marginal likelihood and its gradient in theta = log(l, a, s) */
static double gp_nlml(const double *theta, double *grad, void *vctx)
{
    gp_ctx *c = vctx;
    int n = c->n;
    double l = exp(theta[0]), a = exp(theta[1]), s = exp(theta[2]);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double r2 = c->D2[(size_t)i * n + j];
            c->K[(size_t)i * n + j] = pow(1.0 + r2 / (2.0 * a * l * l), -a) + (i == j ? s : 0);
        }
    memcpy(c->Kinv, c->K, sizeof(double) * (size_t)n * n);
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, c->Kinv, n)) { /* not positive definite: far away */
        for (int i = 0; i < 3; i++) grad[i] = 0;
        return 1e300;
    }
    double logdet = 0;
    for (int i = 0; i < n; i++) logdet += 2.0 * log(c->Kinv[(size_t)i * n + i]);
    memcpy(c->alpha, c->y, sizeof(double) * (size_t)n);
    LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'L', n, 1, c->Kinv, n, c->alpha, 1);
    double yKy = 0;
    for (int i = 0; i < n; i++) yKy += c->y[i] * c->alpha[i];
    LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', n, c->Kinv, n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) c->Kinv[(size_t)j * n + i] = c->Kinv[(size_t)i * n + j];
    /* d lml / d theta = 0.5 tr((alpha alpha^T - K^-1) dK/dtheta) */
    double g[3] = {0, 0, 0};
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double r2 = c->D2[(size_t)i * n + j], b = 1.0 + r2 / (2.0 * a * l * l), k = pow(b, -a);
            double m = c->alpha[i] * c->alpha[j] - c->Kinv[(size_t)i * n + j];
            double dl = r2 / (l * l) * pow(b, -a - 1.0);            /* dk / dlog l */
            double da = k * (-a * log(b) + r2 / (2.0 * l * l * b)); /* dk / dlog a */
            g[0] += m * dl;
            g[1] += m * da;
            if (i == j) g[2] += m * s;
        }
    for (int i = 0; i < 3; i++) grad[i] = -0.5 * g[i];
    return 0.5 * yKy + 0.5 * logdet + 0.5 * n * log(2.0 * M_PI);
}

int sci_gp_fit(sci_gp *g, const float *x, const double *y, int n, int d, const double *mu, const double *sd,
               int optimise, char *err)
{
    if (n < 2) return mc_fail(err, "a Gaussian process needs two or more labelled galaxies (%d given)", n);
    g->n = n;
    g->d = d;
    g->x = mc_malloc(sizeof(double) * (size_t)n * d);
    g->y = mc_malloc(sizeof(double) * (size_t)n);
    g->mu = mc_malloc(sizeof(double) * (size_t)d);
    g->sd = mc_malloc(sizeof(double) * (size_t)d);
    memcpy(g->mu, mu, sizeof(double) * (size_t)d);
    memcpy(g->sd, sd, sizeof(double) * (size_t)d);
    memcpy(g->y, y, sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < d; k++) g->x[(size_t)i * d + k] = ((double)x[(size_t)i * d + k] - mu[k]) / sd[k];
    gp_ctx c = {.x = g->x, .y = g->y, .n = n, .d = d};
    double *D2 = mc_malloc(sizeof(double) * (size_t)n * n);
    c.K = mc_malloc(sizeof(double) * (size_t)n * n);
    c.Kinv = mc_malloc(sizeof(double) * (size_t)n * n);
    c.alpha = mc_malloc(sizeof(double) * (size_t)n);
    rq_kernel(g->x, n, d, 1, 1, 0, c.K, D2);
    c.D2 = D2;
    double theta[3] = {log(g->length_scale), log(g->alpha), log(g->noise)}, grad[3], f;
    if (optimise) {
        double lo[3], hi[3];
        for (int i = 0; i < 3; i++) {
            lo[i] = log(1e-5);
            hi[i] = log(1e5);
        }
        sci_lbfgs(gp_nlml, &c, theta, 3, lo, hi, 500, 1e-7, &f);
    }
    f = gp_nlml(theta, grad, &c);
    g->length_scale = exp(theta[0]);
    g->alpha = exp(theta[1]);
    g->noise = exp(theta[2]);
    g->lml = -f;
    free(c.Kinv);
    free(D2);
    int bad = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, c.K, n);
    if (bad) {
        free(c.K);
        free(c.alpha);
        return mc_fail(err,
                       "the Gaussian process kernel matrix is not positive definite (duplicate labelled rows "
                       "with a noise level near 0?)");
    }
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) c.K[(size_t)i * n + j] = 0;
    g->L = c.K;
    g->a = c.alpha;
    memcpy(g->a, g->y, sizeof(double) * (size_t)n);
    LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'L', n, 1, g->L, n, g->a, 1);
    return 0;
}

void sci_gp_predict(const sci_gp *g, const float *x, int64_t m, double *mean, double *sd)
{
    int n = g->n, d = g->d;
    const int64_t B = 256;
    double *Ks = mc_malloc(sizeof(double) * (size_t)n * B), *z = mc_malloc(sizeof(double) * (size_t)d);
    for (int64_t b0 = 0; b0 < m; b0 += B) {
        int64_t nb = m - b0 < B ? m - b0 : B;
        /* Ks (n, nb): the RQ kernel between training rows and this block (the white term is 0 off the
         * training set, as sklearn's WhiteKernel with two arguments) */
        for (int64_t r = 0; r < nb; r++) {
            for (int k = 0; k < d; k++) z[k] = ((double)x[(size_t)(b0 + r) * d + k] - g->mu[k]) / g->sd[k];
            for (int i = 0; i < n; i++) {
                double r2 = 0;
                for (int k = 0; k < d; k++) {
                    double v = g->x[(size_t)i * d + k] - z[k];
                    r2 += v * v;
                }
                Ks[(size_t)i * nb + r] =
                    pow(1.0 + r2 / (2.0 * g->alpha * g->length_scale * g->length_scale), -g->alpha);
            }
        }
        for (int64_t r = 0; r < nb; r++) {
            double acc = 0;
            for (int i = 0; i < n; i++) acc += Ks[(size_t)i * nb + r] * g->a[i];
            mean[b0 + r] = acc;
        }
        if (!sd) continue;
        cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, n, (int)nb, 1.0, g->L,
                    n, Ks, (int)nb);
        for (int64_t r = 0; r < nb; r++) {
            double v = 0;
            for (int i = 0; i < n; i++) v += Ks[(size_t)i * nb + r] * Ks[(size_t)i * nb + r];
            double var = 1.0 + g->noise - v; /* k(x, x) = RQ 1 + white noise, as sklearn's predict */
            sd[b0 + r] = var > 0 ? sqrt(var) : 0;
        }
    }
    free(Ks);
    free(z);
}

void sci_gp_free(sci_gp *g)
{
    free(g->x);
    free(g->y);
    free(g->L);
    free(g->a);
    free(g->mu);
    free(g->sd);
    memset(g, 0, sizeof *g);
}

double sci_expected_improvement(double mu, double sd, double best, double xi)
{
    double imp = mu - best - xi;
    if (sd <= 0) return imp > 0 ? imp : 0;
    double z = imp / sd;
    return imp * 0.5 * erfc(-z / M_SQRT2) + sd * exp(-0.5 * z * z) / sqrt(2.0 * M_PI);
}
