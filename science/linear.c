/* science/linear.c: linear heads on frozen features (the paper's "GZ Frozen" arm and Zoobot's linear check):
 * L2-regularised logistic regression as sklearn's LogisticRegression(C=C) with lbfgs: multinomial softmax for
 * three or more classes, one weight vector for two (sklearn fits binary problems that way), the intercept not
 * penalised; ridge regression (sklearn Ridge(alpha=1/C)) for a continuous label, by LAPACK's dposv on centred
 * normal equations. Minimised to a tight gradient tolerance. Not here: folds, files
 * (pipeline/cmd_finetune.c). */
#include <lapacke.h>
#include <math.h>

#include "science/science.h"

typedef struct lr_ctx {
    const float *x;
    const double *y;
    int64_t n;
    int d, K, rows; /* classes, weight rows (1 when binary) */
    double C;
    double *z; /* (rows) logits scratch */
} lr_ctx;

/* 0.5 |W|^2 + C sum_i -log p(y_i | x_i); parameters: rows x (d + 1), intercept last in each row */
static double lr_loss(const double *w, double *g, void *vctx)
{
    lr_ctx *c = vctx;
    int d = c->d, R = c->rows, P = d + 1;
    double f = 0;
    memset(g, 0, sizeof(double) * (size_t)R * P);
    double z[64], pr[64], *zz = R + 1 <= 64 ? z : mc_malloc(sizeof(double) * (size_t)(R + 1)),
                          *pp = R + 1 <= 64 ? pr : mc_malloc(sizeof(double) * (size_t)(R + 1));
    for (int64_t i = 0; i < c->n; i++) {
        const float *x = c->x + (size_t)i * d;
        int yi = (int)c->y[i];
        for (int r = 0; r < R; r++) {
            double a = w[(size_t)r * P + d];
            for (int k = 0; k < d; k++) a += w[(size_t)r * P + k] * x[k];
            zz[r] = a;
        }
        if (R == 1) { /* binary: p(class 1) = sigmoid(z) */
            double t = yi == 1 ? zz[0] : -zz[0];
            f += t > 0 ? log1p(exp(-t)) : -t + log1p(exp(t));
            double p1 = 1.0 / (1.0 + exp(-zz[0]));
            pp[0] = p1 - (yi == 1);
        } else {
            double mx = zz[0];
            for (int r = 1; r < R; r++) mx = fmax(mx, zz[r]);
            double se = 0;
            for (int r = 0; r < R; r++) se += exp(zz[r] - mx);
            double lse = mx + log(se);
            f += lse - zz[yi];
            for (int r = 0; r < R; r++) pp[r] = exp(zz[r] - lse) - (r == yi);
        }
        for (int r = 0; r < R; r++) {
            double e = c->C * pp[r];
            for (int k = 0; k < d; k++) g[(size_t)r * P + k] += e * x[k];
            g[(size_t)r * P + d] += e;
        }
    }
    f *= c->C;
    for (int r = 0; r < R; r++)
        for (int k = 0; k < d; k++) {
            f += 0.5 * w[(size_t)r * P + k] * w[(size_t)r * P + k];
            g[(size_t)r * P + k] += w[(size_t)r * P + k];
        }
    if (zz != z) free(zz);
    if (pp != pr) free(pp);
    return f;
}

int sci_linear_fit(sci_linear *h, const float *x, const double *y, int64_t n, int d, int n_classes,
                   int regression, double C, char *err)
{
    memset(h, 0, sizeof *h);
    if (!(C > 0)) return mc_fail(err, "--l2 %g: C (the inverse regularisation strength) must be positive", C);
    h->regression = regression;
    h->d = d;
    h->C = C;
    h->n_classes = regression ? 1 : n_classes;
    h->rows = regression || n_classes == 2 ? 1 : n_classes;
    h->coef = mc_calloc((size_t)h->rows * d, sizeof(double));
    h->intercept = mc_calloc((size_t)h->rows, sizeof(double));
    if (regression) {
        /* (Xc^T Xc + I/C) w = Xc^T yc, b = mean(y) - mean(x).w */
        double *mx = mc_calloc((size_t)d, sizeof(double)), my = 0;
        for (int64_t i = 0; i < n; i++) {
            my += y[i];
            for (int k = 0; k < d; k++) mx[k] += x[(size_t)i * d + k];
        }
        my /= (double)n;
        for (int k = 0; k < d; k++) mx[k] /= (double)n;
        double *A = mc_calloc((size_t)d * d, sizeof(double)), *b = mc_calloc((size_t)d, sizeof(double));
        double *xc = mc_malloc(sizeof(double) * (size_t)d);
        for (int64_t i = 0; i < n; i++) {
            for (int k = 0; k < d; k++) xc[k] = x[(size_t)i * d + k] - mx[k];
            for (int a = 0; a < d; a++) {
                b[a] += xc[a] * (y[i] - my);
                for (int c = a; c < d; c++) A[(size_t)a * d + c] += xc[a] * xc[c];
            }
        }
        for (int a = 0; a < d; a++) A[(size_t)a * d + a] += 1.0 / C;
        int info = LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', d, 1, A, d, b, 1);
        MC_ASSERT(info == 0); /* X^T X + I/C is positive definite for C > 0 */
        double b0 = my;
        for (int k = 0; k < d; k++) {
            h->coef[k] = b[k];
            b0 -= mx[k] * b[k];
        }
        h->intercept[0] = b0;
        free(mx);
        free(A);
        free(b);
        free(xc);
        return 0;
    }
    int P = d + 1;
    double *w = mc_calloc((size_t)h->rows * P, sizeof(double)), f;
    lr_ctx c = {.x = x, .y = y, .n = n, .d = d, .K = n_classes, .rows = h->rows, .C = C};
    sci_lbfgs(lr_loss, &c, w, h->rows * P, NULL, NULL, 20000, 1e-9 * fmax(1.0, C * (double)n), &f);
    for (int r = 0; r < h->rows; r++) {
        for (int k = 0; k < d; k++) h->coef[(size_t)r * d + k] = w[(size_t)r * P + k];
        h->intercept[r] = w[(size_t)r * P + d];
    }
    free(w);
    return 0;
}

void sci_linear_predict(const sci_linear *h, const float *x, int64_t m, double *out)
{
    int d = h->d, R = h->rows, K = h->n_classes;
    double z[64], *zz = R <= 64 ? z : mc_malloc(sizeof(double) * (size_t)R);
    for (int64_t i = 0; i < m; i++) {
        for (int r = 0; r < R; r++) {
            double a = h->intercept[r];
            for (int k = 0; k < d; k++) a += h->coef[(size_t)r * d + k] * x[(size_t)i * d + k];
            zz[r] = a;
        }
        if (h->regression) {
            out[i] = zz[0];
        } else if (R == 1) {
            double p1 = 1.0 / (1.0 + exp(-zz[0]));
            out[(size_t)i * 2] = 1.0 - p1;
            out[(size_t)i * 2 + 1] = p1;
        } else {
            double mx = zz[0], se = 0;
            for (int r = 1; r < R; r++) mx = fmax(mx, zz[r]);
            for (int r = 0; r < R; r++) se += exp(zz[r] - mx);
            for (int r = 0; r < K; r++) out[(size_t)i * K + r] = exp(zz[r] - mx) / se;
        }
    }
    if (zz != z) free(zz);
}

void sci_linear_free(sci_linear *h)
{
    free(h->coef);
    free(h->intercept);
    memset(h, 0, sizeof *h);
}
