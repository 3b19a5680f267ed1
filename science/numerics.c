/* science/numerics.c: a limited-memory BFGS minimiser (Nocedal & Wright, Numerical Optimization, 2nd ed.,
 * algorithm 7.4, two-loop recursion, backtracking Armijo line search) with box bounds handled by projection
 * (free variables only, as in projected L-BFGS), and a seeded splitmix64 generator. Not here: objectives. */
#include <math.h>

#include "science/science.h"

#define LBFGS_M 10

static void clamp(double *x, int n, const double *lo, const double *hi)
{
    for (int i = 0; i < n; i++) {
        if (lo && x[i] < lo[i]) x[i] = lo[i];
        if (hi && x[i] > hi[i]) x[i] = hi[i];
    }
}

/* variables at a bound whose gradient pushes them outward are held fixed this iteration */
static void mask_active(const double *x, const double *g, int n, const double *lo, const double *hi,
                        double *gm)
{
    for (int i = 0; i < n; i++) {
        gm[i] = g[i];
        if (lo && x[i] <= lo[i] && g[i] > 0) gm[i] = 0;
        if (hi && x[i] >= hi[i] && g[i] < 0) gm[i] = 0;
    }
}

int sci_lbfgs(sci_objective fg, void *ctx, double *x, int n, const double *lo, const double *hi, int max_iter,
              double gtol, double *fmin)
{
    size_t sz = sizeof(double) * (size_t)n;
    double *g = mc_malloc(sz), *gm = mc_malloc(sz), *p = mc_malloc(sz), *xn = mc_malloc(sz),
           *gn = mc_malloc(sz);
    double *S = mc_malloc(sz * LBFGS_M), *Y = mc_malloc(sz * LBFGS_M), rho[LBFGS_M], al[LBFGS_M];
    clamp(x, n, lo, hi);
    double f = fg(x, g, ctx);
    int hist = 0, head = 0, it;
    for (it = 0; it < max_iter; it++) {
        mask_active(x, g, n, lo, hi, gm);
        double gmax = 0;
        for (int i = 0; i < n; i++) gmax = fmax(gmax, fabs(gm[i]));
        if (gmax <= gtol) break;
        /* two-loop recursion on the masked gradient */
        memcpy(p, gm, sz);
        for (int j = 0; j < hist; j++) {
            int s = (head - 1 - j + LBFGS_M) % LBFGS_M;
            double a = 0;
            for (int i = 0; i < n; i++) a += S[(size_t)s * n + i] * p[i];
            al[s] = rho[s] * a;
            for (int i = 0; i < n; i++) p[i] -= al[s] * Y[(size_t)s * n + i];
        }
        if (hist) {
            int s = (head - 1 + LBFGS_M) % LBFGS_M;
            double sy = 0, yy = 0;
            for (int i = 0; i < n; i++) {
                sy += S[(size_t)s * n + i] * Y[(size_t)s * n + i];
                yy += Y[(size_t)s * n + i] * Y[(size_t)s * n + i];
            }
            for (int i = 0; i < n; i++) p[i] *= sy / yy;
        } else {
            double gn2 = 0;
            for (int i = 0; i < n; i++) gn2 += gm[i] * gm[i];
            for (int i = 0; i < n; i++) p[i] /= fmax(1.0, sqrt(gn2)); /* a first step of at most 1 */
        }
        for (int j = hist - 1; j >= 0; j--) {
            int s = (head - 1 - j + LBFGS_M) % LBFGS_M;
            double b = 0;
            for (int i = 0; i < n; i++) b += Y[(size_t)s * n + i] * p[i];
            b *= rho[s];
            for (int i = 0; i < n; i++) p[i] += S[(size_t)s * n + i] * (al[s] - b);
        }
        for (int i = 0; i < n; i++) p[i] = gm[i] == 0 && g[i] != 0 ? 0 : -p[i];
        double dg = 0;
        for (int i = 0; i < n; i++) dg += p[i] * g[i];
        if (dg >= 0) { /* not a descent direction: restart from steepest descent */
            hist = 0;
            for (int i = 0; i < n; i++) p[i] = -gm[i];
            dg = 0;
            for (int i = 0; i < n; i++) dg += p[i] * g[i];
        }
        double t = 1, fnew = f;
        int ok = 0;
        for (int ls = 0; ls < 60; ls++, t *= 0.5) {
            for (int i = 0; i < n; i++) xn[i] = x[i] + t * p[i];
            clamp(xn, n, lo, hi);
            double dd = 0;
            for (int i = 0; i < n; i++) dd += g[i] * (xn[i] - x[i]);
            fnew = fg(xn, gn, ctx);
            if (fnew <= f + 1e-4 * dd) {
                ok = 1;
                break;
            }
        }
        if (!ok) break; /* no decrease representable: at the optimum to rounding */
        double sy = 0;
        for (int i = 0; i < n; i++) {
            S[(size_t)head * n + i] = xn[i] - x[i];
            Y[(size_t)head * n + i] = gn[i] - g[i];
            sy += S[(size_t)head * n + i] * Y[(size_t)head * n + i];
        }
        if (sy > 1e-300) {
            rho[head] = 1.0 / sy;
            head = (head + 1) % LBFGS_M;
            if (hist < LBFGS_M) hist++;
        }
        double df = f - fnew;
        memcpy(x, xn, sz);
        memcpy(g, gn, sz);
        f = fnew;
        if (df <= 1e-16 * fmax(1.0, fabs(f)) && it > 0) {
            mask_active(x, g, n, lo, hi, gm);
            double gmax2 = 0;
            for (int i = 0; i < n; i++) gmax2 = fmax(gmax2, fabs(gm[i]));
            if (gmax2 <= gtol * 100) break;
        }
    }
    *fmin = f;
    free(g);
    free(gm);
    free(p);
    free(xn);
    free(gn);
    free(S);
    free(Y);
    return it;
}

uint64_t sci_rng_next(sci_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double sci_rng_uniform(sci_rng *r)
{
    return (double)(sci_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}
