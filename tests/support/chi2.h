/* chi2.h: Pearson's chi-square test for the sampling tests (the
 * speculative-sampling rule against the full model's distribution). */
#ifndef LS_CHI2_H
#define LS_CHI2_H

/* P(chi2_df >= x) */
double chi2_sf(double x, int df);
/* Pearson's test of counts[0..n) against probabilities want[0..n); cells
 * expecting fewer than 5 are pooled. A count where want is 0 gives p = 0
 * and *df_out = -1. */
double chi2_pvalue(const long *counts, const double *want, int n, long total, int *df_out);

#endif
