/* nn/beta.c: quantiles of the Beta(a, b) distribution, for the 90% intervals of the Dirichlet head's vote
 * fractions (Zoobot takes them from scipy.stats.beta.ppf). Written from the mathematics: the regularised
 * incomplete beta by its continued fraction, inverted by safeguarded Newton steps; measured against mpmath to
 * ~2e-13 relative for a in [1, 101], b in [1, 9000], p in [1e-300, 1 - 1e-15]. Not here: the pdf or cdf as
 * public functions, a or b <= 0 (NaN), or a vectorised batch form. */
#include "nn/nn.h"

#include <float.h>
#include <math.h>

/* ln Gamma without touching the global signgam, so summaries may run on several threads. The arguments here
 * are positive, so the sign is always +1. */
static double nn_lgamma(double x)
{
    int sign;
    return lgamma_r(x, &sign);
}

/* The Stirling remainder ln Gamma(z) - [(z - 1/2) ln z - z + ln(2 pi)/2] = sum_k B_2k / (2k (2k-1) z^(2k-1)),
 * seven terms; for z >= 15 the first omitted term is below 1e-18. */
static double nn_stirling_tail(double z)
{
    double r = 1.0 / (z * z), s;
    s = 1.0 / 156.0;
    s = s * r - 691.0 / 360360.0;
    s = s * r + 1.0 / 1188.0;
    s = s * r - 1.0 / 1680.0;
    s = s * r + 1.0 / 1260.0;
    s = s * r - 1.0 / 360.0;
    s = s * r + 1.0 / 12.0;
    return s / z;
}

/* ln B(a, b) = ln Gamma(a) + ln Gamma(b) - ln Gamma(a + b). With a large argument (b = 9000 is a head of 90
 * answers) the terms are ~7e4 and cancel down to ~a ln b, losing ~1e-11 relative to lgamma's own rounding; so
 * large arguments go through Stirling's series, where ln Gamma(z) = (z - 1/2) ln z - z + ln(2 pi)/2 +
 * tail(z), regrouped so that nothing large cancels: one large:  ln Gamma(b) - ln Gamma(a + b) = -(b - 1/2)
 * log1p(a/b) - a ln(a + b) + a + tail(b) - tail(a + b); both large: ln B = ln(2 pi)/2 + (a - 1/2) ln(a/(a+b))
 * + (b - 1/2) ln(b/(a+b)) - ln(a+b)/2 + tails. */
static double nn_lbeta(double a, double b)
{
    double small = a < b ? a : b, big = a < b ? b : a, sum = a + b;
    if (big < 15.0) return nn_lgamma(a) + nn_lgamma(b) - nn_lgamma(sum);
    double tails = nn_stirling_tail(big) - nn_stirling_tail(sum);
    if (small < 15.0)
        return nn_lgamma(small) - (big - 0.5) * log1p(small / big) - small * log(sum) + small + tails;
    return 0.5 * log(2.0 * M_PI) + (small - 0.5) * log(small / sum) - (big - 0.5) * log1p(small / big) -
           0.5 * log(sum) + nn_stirling_tail(small) + tails;
}

/* ln(1 - e^l) for l <= 0, accurate at both ends. */
static double nn_log1mexp(double l)
{
    return l > -M_LN2 ? log(-expm1(l)) : log1p(-exp(l));
}

/* ln of the continued fraction K in I_x(a, b) = x^a (1-x)^b / (a B(a, b) K), where
 * K = 1 + d1 / (1 + d2 / (1 + ...)), d(2m+1) = -(a+m)(a+b+m) x / ((a+2m)(a+2m+1)),
 * d(2m) = m (b-m) x / ((a+2m-1)(a+2m)). It converges fast for x < (a+1)/(a+b+2); beyond that the caller uses
 * the symmetry I_x(a, b) = 1 - I_(1-x)(b, a). The first convergent 1 + d1 = 1 - (a+b) x / (a+1) cancels
 * badly when b is near 1 and x near 1 (it tends to 1 - x): Beta(9000, 1.0001) at x = 0.9997 lost 3.5 digits
 * that way. We form it as y + (1 - b) x / (a+1) from y = 1 - x, which the caller holds exactly.
 * Evaluated forwards by the convergents' recurrence, A_j = A_(j-1) + d_j A_(j-2) and the same for B, from
 * A_0 = B_0 = B_1 = 1 and A_1 the first convergent: a multiply-add per step where the modified Lentz method
 * (Numerical Recipes 6.4) waits on two divisions: 0.98-1.10 against 1.13-1.21 us a quantile. The stop needs no
 * division either: A_j/B_j - A_(j-1)/B_(j-1) = D_j / (B_j B_(j-1)) with D_j = -d_j D_(j-1), D_1 = A_1 - 1,
 * so the step's relative change is |D_j| / |A_j B_(j-1)|, below 1e-16 as Lentz's was. A and B are scaled
 * by 2^-+500 (D by its square) when they grow large or small; D itself may underflow once converged.
 * Against the mpmath root on the head's range: 4.6e-15 relative at worst, as with Lentz's (5.0e-15). */
static double nn_beta_cf_log(double x, double y, double a, double b)
{
    const double eps = 1e-16;
    double a1 = y + (1.0 - b) * x / (a + 1.0);
    double A2 = 1.0, B2 = 1.0, A1 = a1, B1 = 1.0, D = a1 - 1.0;
    for (int j = 2; j < 100000; j++) {
        int m = j / 2;
        double dj = (j & 1) ? -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
                            : m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
        double A = A1 + dj * A2, B = B1 + dj * B2;
        D = -dj * D;
        A2 = A1, B2 = B1, A1 = A, B1 = B;
        if (fabs(D) <= eps * fabs(A * B2)) break;
        const double big = fabs(A) + fabs(B);
        if (big > 0x1p500 || big < 0x1p-500) { /* an exact power of two: the ratios keep every bit */
            const double sc = big > 1.0 ? 0x1p-500 : 0x1p500;
            A1 *= sc, B1 *= sc, A2 *= sc, B2 *= sc;
            D *= sc * sc;
        }
    }
    return log(A1 / B1);
}

/* ln I_x(a, b) and ln(1 - I_x(a, b)), given x, y = 1 - x and their logs from the caller (who knows which of
 * x or y it holds exactly). The side computed by the continued fraction is accurate to a few ulp relative;
 * the other is 1 minus it. */
static void nn_beta_inc_log(double x, double y, double lnx, double lny, double a, double b, double lnb,
                            double *lni, double *lnj)
{
    double front = a * lnx + b * lny - lnb;
    if (x < (a + 1.0) / (a + b + 2.0)) {
        *lni = front - log(a) - nn_beta_cf_log(x, y, a, b);
        *lnj = nn_log1mexp(*lni);
    } else {
        *lnj = front - log(b) - nn_beta_cf_log(y, x, b, a);
        *lni = nn_log1mexp(*lnj);
    }
}

/* Upper-tail standard normal quantile z (P(Z > z) = q) for 0 < q < 1, to |error| < 4.5e-4: Abramowitz and
 * Stegun 26.2.23. Only a starting point for Newton. */
static double nn_normal_upper_quantile(double q)
{
    double r = q < 0.5 ? q : 1.0 - q, t = sqrt(-2.0 * log(r));
    double z = t - (2.515517 + t * (0.802853 + t * 0.010328)) /
                       (1.0 + t * (1.432788 + t * (0.189269 + t * 0.001308)));
    return q < 0.5 ? z : -z;
}

/* ln(1 + e^s) without overflow. */
static double nn_softplus(double s)
{
    return s > 0.0 ? s + log1p(exp(-s)) : log1p(exp(s));
}

/* Solve I_x(a, b) = p. For p <= 1/2 we match ln I against ln p with Newton steps in t = u = ln x; above 1/2
 * we match ln(1 - I) against ln(1 - p) in t = v = ln(1 - x). Both tails are so solved in relative terms (ln I
 * is nearly linear in ln x in the tail) and extreme p cost no more than central ones. For a, b >= 1 both logs
 * are concave in t (the density is log-concave); a bracket on t guards every step, for b < 1 and the like.
 * The steps are Halley's (the second derivative costs no more evaluations: d ln(slope)/dt = a - (b-1) x/(1-x)
 * - slope for ln I in ln x, the mirror for the upper tail), Newton's far from the root. Start: the larger of two guesses for t, (i)
 * the small-x tail I ~ x^a / (a B) (or its mirror), a lower bound on the root when the other parameter is >=
 * 1 and exact when it is 1, and (ii) Abramowitz and Stegun 26.5.22, x ~ a / (a + b e^(2w)), good in the body
 * of the distribution. Two evaluations on average over the head's range (three with Newton's steps), about
 * 1.2 us a quantile. */
double nn_beta_quantile(double p, double a, double b)
{
    if (isnan(p) || !(a > 0.0) || !(b > 0.0) || !isfinite(a) || !isfinite(b)) return NAN;
    if (p <= 0.0) return 0.0;
    if (p >= 1.0) return 1.0;
    const double lnb = nn_lbeta(a, b);
    const int upper = p > 0.5;
    const double target = upper ? log1p(-p) : log(p); /* 1 - p is exact for p > 1/2 */
    /* t is u = ln x (lower) or v = ln(1 - x) (upper) */
    double t = upper ? (target + log(b) + lnb) / b : (target + log(a) + lnb) / a;
    if (a > 0.5 && b > 0.5) {
        double y = nn_normal_upper_quantile(p), lam = (y * y - 3.0) / 6.0;
        double ia = 1.0 / (2.0 * a - 1.0), ib = 1.0 / (2.0 * b - 1.0), h = 2.0 / (ia + ib);
        double w = y * sqrt(h + lam) / h - (ib - ia) * (lam + 5.0 / 6.0 - 2.0 / (3.0 * h));
        double guess = upper ? -nn_softplus(log(a / b) - 2.0 * w) : -nn_softplus(log(b / a) + 2.0 * w);
        if (isfinite(guess) && guess > t) t = guess;
    }
    if (t > -DBL_EPSILON) t = -DBL_EPSILON;
    /* bracket on t: the matched log is below its target at tl, above it at th (both logs rise with t) */
    double tl = -INFINITY, th = 0.0, prev_step = INFINITY;
    for (int it = 0; it < 400; it++) {
        /* slope: d resid / dt, > 0; curv: (d2 resid / dt2) / slope */
        double x, y, lnx, lny, lni, lnj, resid, slope, curv;
        if (upper) {
            lny = t;
            y = exp(t);
            x = -expm1(t);
            lnx = log(x);
            nn_beta_inc_log(x, y, lnx, lny, a, b, lnb, &lni, &lnj);
            resid = lnj - target;
            slope = exp((a - 1.0) * lnx + b * lny - lnb - lnj);
            curv = b - (a - 1.0) * y / x - slope;
        } else {
            lnx = t;
            x = exp(t);
            y = -expm1(t);
            lny = log1p(-x);
            nn_beta_inc_log(x, y, lnx, lny, a, b, lnb, &lni, &lnj);
            resid = lni - target;
            slope = exp(a * lnx + (b - 1.0) * lny - lnb - lni);
            curv = a - (b - 1.0) * x / y - slope;
        }
        if (resid == 0.0) return x;
        if (resid < 0.0)
            tl = t;
        else
            th = t;
        /* Halley's step, Newton's where the curvature term is large (far from the root) */
        const double nstep = resid / slope, hc = 0.5 * nstep * curv;
        const int halley = fabs(hc) < 0.5;
        double tn = t - (halley ? nstep / (1.0 - hc) : nstep);
        int newton = slope > 0.0 && tn > tl && tn < th;
        if (slope > 0.0 && isfinite(tn)) {
            /* Halley cubes the relative error, so after a step of 1e-6 in x what remains is ~1e-18 times
             * the derivatives' ratios in log coordinates (Newton squares it: 1e-12 there); stop there, or
             * once steps stop shrinking (rounding in ln I, ~1e-13 absolute when p ~ 1e-300, sets a floor).
             * Checked before the bracket, which a step this small may touch through rounding alone. A tiny
             * step with a large residual is no root but a steep wall (b < 1 near x = 1): bisect instead. */
            double step = upper ? fabs(expm1(tn - t)) * y / fmax(x, DBL_MIN) : fabs(tn - t);
            if (fabs(resid) <= 1e-6 &&
                (step <= (halley ? 1e-6 : 1e-12) || (step < 1e-10 && step >= prev_step)))
                return upper ? -expm1(tn) : exp(tn);
            if (step <= 1e-12) newton = 0;
            prev_step = step;
        }
        if (!newton) {
            /* safeguard: bisect the bracket in t (geometric in x or in 1 - x), or walk left while open */
            tn = tl == -INFINITY ? fmin(2.0 * th, th - 1.0) : 0.5 * (tl + th);
            if (th - tl <= 1e-15 * fmax(1.0, fabs(tn))) return upper ? -expm1(tn) : exp(tn);
            prev_step = INFINITY;
        }
        t = tn;
    }
    return upper ? -expm1(t) : exp(t);
}
