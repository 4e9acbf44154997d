/* heatmap.h: write a labelled heat map (rows x cols of values) as a PNG. */
#ifndef LS_HEATMAP_H
#define LS_HEATMAP_H

#include <stdbool.h>
#include <stdint.h>

/* values[r * n_cols + c], printed in their cells with `decimals` digits and
 * a suffix (e.g. 2, "x"); rows are labelled row_label and the number, columns
 * by their names (e.g. "4", "auto") under col_label;
 * text may use digits, space . , : / ( ) = - % x E k and the lower-case
 * letters a c d e g i l n o p r s t u v (a built-in font) */
bool ls_heatmap_png(const char *path, const char *title, const int *rows, int n_rows, const char *row_label,
                    const char *const *cols, int n_cols, const char *col_label, const double *values,
                    int decimals, const char *suffix);

#endif
