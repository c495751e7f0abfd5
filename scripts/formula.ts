// A tiny evaluator for the formula strings of src/manifest/plan.ts and kernels/manifest.json ("ceil(d/32)",
// "2*lambda/(n*d)", "n < d"). A native host needs the same ~60 lines in its own language; the grammar is
// FORMULA_GRAMMAR, also written into the manifest.

export const FORMULA_GRAMMAR =
  'numbers (64-bit float, e.g. 2, 0.5, 1e-4); names (bound by the host); + - * / (real division) and % (remainder); ' +
  'unary -; parentheses; ceil(x), floor(x), min(x, y, ...), max(x, y, ...); comparisons < <= > >= == != ' +
  '(1 when true, 0 when false; any comparison with NaN is false). Precedence: comparison < + - < * / % < unary -.';

export type Env = Readonly<Record<string, number>>;

const FUNCTIONS: Record<string, (...args: number[]) => number> = {
  ceil: (x) => Math.ceil(x),
  floor: (x) => Math.floor(x),
  min: (...xs) => Math.min(...xs),
  max: (...xs) => Math.max(...xs),
};

const COMPARISONS: Record<string, (x: number, y: number) => boolean> = {
  '<': (x, y) => x < y, '<=': (x, y) => x <= y, '>': (x, y) => x > y,
  '>=': (x, y) => x >= y, '==': (x, y) => x === y, '!=': (x, y) => x !== y,
};

const TOKEN = /\s*(?:(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)|([A-Za-z_]\w*)|(<=|>=|==|!=|[-+*/%(),<>]))/y;

function tokenize(formula: string): string[] {
  const tokens: string[] = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < formula.length) {
    if (/^\s*$/.test(formula.slice(TOKEN.lastIndex))) break;
    const start = TOKEN.lastIndex;
    const match = TOKEN.exec(formula);
    if (!match) throw new Error(`formula ${JSON.stringify(formula)}: unexpected character at ${start}`);
    tokens.push(match[1] ?? match[2] ?? match[3]);
  }
  return tokens;
}

/** The value of `formula` with its names bound by `env`; throws on a syntax error or an unbound name. */
export function evaluate(formula: string, env: Env): number {
  const tokens = tokenize(formula);
  let at = 0;
  const fail = (what: string): never => {
    throw new Error(`formula ${JSON.stringify(formula)}: ${what}`);
  };
  const peek = () => tokens[at];
  const take = (expected?: string) => {
    const token = tokens[at++];
    if (token === undefined || (expected !== undefined && token !== expected)) fail(`expected ${expected ?? 'more'}, got ${token ?? 'the end'}`);
    return token;
  };

  const comparison = (): number => {
    const left = sum();
    const op = peek();
    return op in COMPARISONS ? (take(), COMPARISONS[op](left, sum()) ? 1 : 0) : left;
  };
  const sum = (): number => {
    let value = product();
    while (peek() === '+' || peek() === '-') value = take() === '+' ? value + product() : value - product();
    return value;
  };
  const product = (): number => {
    let value = unary();
    while (peek() === '*' || peek() === '/' || peek() === '%') {
      const op = take();
      const right = unary();
      value = op === '*' ? value * right : op === '/' ? value / right : value % right;
    }
    return value;
  };
  const unary = (): number => (peek() === '-' ? (take(), -unary()) : primary());
  const primary = (): number => {
    const token = take();
    if (token === '(') {
      const value = comparison();
      take(')');
      return value;
    }
    if (/^\d/.test(token)) return Number(token);
    if (!/^[A-Za-z_]/.test(token)) fail(`unexpected ${token}`);
    if (peek() === '(') {
      const fn = FUNCTIONS[token] ?? fail(`unknown function ${token}`);
      take('(');
      const args = [comparison()];
      while (peek() === ',') {
        take();
        args.push(comparison());
      }
      take(')');
      return fn(...args);
    }
    const value = env[token];
    if (typeof value !== 'number') fail(`unbound name ${token}`);
    return value;
  };

  const value = comparison();
  if (at < tokens.length) fail(`unexpected ${tokens[at]}`);
  return value;
}

/** The names a formula uses (not the functions it calls). */
export function namesIn(formula: string): string[] {
  const tokens = tokenize(formula);
  return [...new Set(tokens.filter((t, i) => /^[A-Za-z_]/.test(t) && tokens[i + 1] !== '('))];
}

/** `env` extended with derived names, each formula evaluated in order (later ones may use earlier ones). */
export function bind(env: Env, definitions: Readonly<Record<string, string>>): Record<string, number> {
  const out: Record<string, number> = { ...env };
  for (const [name, formula] of Object.entries(definitions)) out[name] = evaluate(formula, out);
  return out;
}
