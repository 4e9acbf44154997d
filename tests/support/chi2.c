/* chi2.c: see chi2.h. */
#include "chi2.h"

#include <math.h>

/* regularized lower incomplete gamma P(a, x): series for x < a + 1 */
static double gamma_p_series(double a, double x) {
    double term = 1.0 / a, sum = term;
    for (int n = 1; n < 10000; n++) {
        term *= x / (a + n);
        sum += term;
        if (fabs(term) < fabs(sum) * 1e-15) break;
    }
    return sum * exp(-x + a * log(x) - lgamma(a));
}

/* regularized upper incomplete gamma Q(a, x): continued fraction (modified
 * Lentz) for x >= a + 1 */
static double gamma_q_cf(double a, double x) {
    const double tiny = 1e-300;
    double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
    for (int i = 1; i < 10000; i++) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < tiny) d = tiny;
        c = b + an / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-15) break;
    }
    return exp(-x + a * log(x) - lgamma(a)) * h;
}

/* P(chi2_df >= x) */
double chi2_sf(double x, int df) {
    if (x <= 0) return 1;
    double a = df / 2.0, hx = x / 2.0;
    return hx < a + 1 ? 1 - gamma_p_series(a, hx) : gamma_q_cf(a, hx);
}

/* Pearson's test of counts[0..n) against probabilities want[0..n); cells
 * expecting fewer than 5 are pooled. A count where want is 0 gives p = 0. */
double chi2_pvalue(const long *counts, const double *want, int n, long total, int *df_out) {
    double stat = 0, pool_obs = 0, pool_exp = 0;
    int cells = 0;
    for (int i = 0; i < n; i++) {
        double e = want[i] * total;
        if (want[i] <= 0) {
            if (counts[i] > 0) { *df_out = -1; return 0; }
            continue;
        }
        if (e < 5) { pool_obs += counts[i]; pool_exp += e; continue; }
        stat += (counts[i] - e) * (counts[i] - e) / e;
        cells++;
    }
    if (pool_exp > 0) {
        stat += (pool_obs - pool_exp) * (pool_obs - pool_exp) / pool_exp;
        cells++;
    }
    *df_out = cells - 1;
    return cells > 1 ? chi2_sf(stat, cells - 1) : 1;
}
