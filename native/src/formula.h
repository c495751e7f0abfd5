/* The manifest's formula language ("ceil(d/32)", "2*lambda/(n*d)", "n < d"): numbers, names bound by
 * the host, + - * / %, unary -, parentheses, ceil floor min max, comparisons giving 1 or 0 (false with
 * NaN). Evaluated in double precision, as kernels/manifest.json's formulas.grammar says. */
#ifndef VICREG_FORMULA_H
#define VICREG_FORMULA_H

#include <stddef.h>

#define FORMULA_MAX_NAMES 64
#define FORMULA_NAME_LENGTH 32

/* Names and their values; later bindings of a name replace earlier ones. */
typedef struct formula_env {
  size_t count;
  char names[FORMULA_MAX_NAMES][FORMULA_NAME_LENGTH];
  double values[FORMULA_MAX_NAMES];
} formula_env;

/* Binds `name` to `value`; returns 0, or -1 where the name is too long or the env is full. */
int formula_bind(formula_env *env, const char *name, double value);

/* The value of `formula` in `env`. On a syntax error or an unbound name it returns 0 with `*error`
 * (if given) set to a static description, else leaves `*error` untouched. */
double formula_eval(const char *formula, const formula_env *env, const char **error);

#endif
