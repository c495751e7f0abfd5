/* A recursive-descent evaluator of the manifest's formulas (formula.h); precedence, lowest first:
 * comparison, + -, * / %, unary -. */
#include "formula.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int formula_bind(formula_env *env, const char *name, double value) {
  if (strlen(name) >= FORMULA_NAME_LENGTH) return -1;
  for (size_t i = 0; i < env->count; i++) {
    if (strcmp(env->names[i], name) == 0) {
      env->values[i] = value;
      return 0;
    }
  }
  if (env->count == FORMULA_MAX_NAMES) return -1;
  strcpy(env->names[env->count], name);
  env->values[env->count++] = value;
  return 0;
}

typedef struct parser {
  const char *at;
  const formula_env *env;
  const char *error;
} parser;

static double comparison(parser *p);

static void skip_space(parser *p) {
  while (isspace((unsigned char)*p->at)) p->at++;
}

/* Consumes `token` if it comes next. */
static int accept(parser *p, const char *token) {
  skip_space(p);
  size_t length = strlen(token);
  if (strncmp(p->at, token, length) != 0) return 0;
  p->at += length;
  return 1;
}

static double fail(parser *p, const char *what) {
  if (!p->error) p->error = what;
  return 0;
}

static double call(parser *p, const char *name, size_t length) {
  double args[16];
  size_t count = 0;
  do {
    if (count == 16) return fail(p, "too many arguments");
    args[count++] = comparison(p);
  } while (accept(p, ","));
  if (!accept(p, ")")) return fail(p, "expected ')' after the arguments");
  if (length == 4 && strncmp(name, "ceil", 4) == 0 && count == 1) return ceil(args[0]);
  if (length == 5 && strncmp(name, "floor", 5) == 0 && count == 1) return floor(args[0]);
  int is_min = length == 3 && strncmp(name, "min", 3) == 0;
  int is_max = length == 3 && strncmp(name, "max", 3) == 0;
  if (!is_min && !is_max) return fail(p, "unknown function");
  double value = args[0];
  for (size_t i = 1; i < count; i++) {
    /* As JavaScript's Math.min/max: NaN wins. */
    if (isnan(args[i]) || isnan(value)) value = NAN;
    else value = is_min ? fmin(value, args[i]) : fmax(value, args[i]);
  }
  return value;
}

static double primary(parser *p) {
  skip_space(p);
  if (accept(p, "(")) {
    double value = comparison(p);
    if (!accept(p, ")")) return fail(p, "expected ')'");
    return value;
  }
  if (isdigit((unsigned char)*p->at) || *p->at == '.') {
    char *end;
    double value = strtod(p->at, &end);
    p->at = end;
    return value;
  }
  if (isalpha((unsigned char)*p->at) || *p->at == '_') {
    const char *name = p->at;
    while (isalnum((unsigned char)*p->at) || *p->at == '_') p->at++;
    size_t length = (size_t)(p->at - name);
    if (accept(p, "(")) return call(p, name, length);
    for (size_t i = 0; i < p->env->count; i++) {
      if (strlen(p->env->names[i]) == length && strncmp(p->env->names[i], name, length) == 0) return p->env->values[i];
    }
    return fail(p, "unbound name");
  }
  return fail(p, "unexpected character");
}

static double unary(parser *p) {
  if (accept(p, "-")) return -unary(p);
  return primary(p);
}

static double product(parser *p) {
  double value = unary(p);
  for (;;) {
    if (accept(p, "*")) value *= unary(p);
    else if (accept(p, "/")) value /= unary(p);
    else if (accept(p, "%")) value = fmod(value, unary(p));
    else return value;
  }
}

static double sum(parser *p) {
  double value = product(p);
  for (;;) {
    if (accept(p, "+")) value += product(p);
    else if (accept(p, "-")) value -= product(p);
    else return value;
  }
}

static double comparison(parser *p) {
  double left = sum(p);
  /* Two-character operators first, so that "<=" is not read as "<". */
  if (accept(p, "<=")) return left <= sum(p);
  if (accept(p, ">=")) return left >= sum(p);
  if (accept(p, "==")) return left == sum(p);
  if (accept(p, "!=")) { double right = sum(p); return !isnan(left) && !isnan(right) && left != right; }
  if (accept(p, "<")) return left < sum(p);
  if (accept(p, ">")) return left > sum(p);
  return left;
}

double formula_eval(const char *formula, const formula_env *env, const char **error) {
  parser p = {formula, env, NULL};
  double value = comparison(&p);
  skip_space(&p);
  if (!p.error && *p.at != '\0') p.error = "unexpected text after the formula";
  if (p.error) {
    if (error) *error = p.error;
    return 0;
  }
  return value;
}
