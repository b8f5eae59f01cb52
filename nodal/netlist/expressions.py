"""SPICE `{expressions}` read by a parser of our own: no `eval`, no `sympify` of netlist text.

The grammar, loosest binding first (what ngspice's `.param`/brace evaluator does)::

    ternary  := or ['?' ternary ':' ternary]
    or       := and ('||' and)*
    and      := equal ('&&' equal)*
    equal    := compare (('==' | '!=') compare)*
    compare  := sum (('<' | '<=' | '>' | '>=') sum)*
    sum      := product (('+' | '-') product)*
    product  := unary (('*' | '/') unary)*
    unary    := ('-' | '+' | '!')* power             -2^2 = -4, !1+1 = 1
    power    := primary (('^' | '**') ['-' | '+']* primary)*     left to right: 2^3^2 = 64
    primary  := number | name | function '(' args ')' | probe '(' raw args ')' | '(' ternary ')'

Numbers take SPICE scale suffixes (`2.2k`, `10n`, `1meg`, `4.7uF`, `1e-3`). Names are resolved
through the caller's `Scope` (`.param` names; a later behavioural source can resolve `time`
there too), and call-like names with raw arguments (`V(a)`, `V(a,b)`, `I(Vx)`) through its
`probes`. Functions come from one fixed table, `FUNCTIONS`, with ngspice's meanings where it
defines them, checked against ngspice itself (tests/nodal/test_expressions.py):

* `x**y` and `x^y` are ngspice's: |x|^y (`(-2)**3` is 8); `pow(x, y)` is C's pow (negative x
  needs an integer y); `pwr(x, y)` = |x|^y; `pwrs(x, y)` = sgn(x) |x|^y (LTspice).
* `log` and `ln` are the natural logarithm (both ngspice and LTspice), `log10` base 10.
* `int` truncates toward zero, `nint` rounds half to even (ngspice: nint(2.5) = 2).
* `u(x)` is the unit step with u(0) = 1/2 (ngspice's B source), `uramp(x)` = x u(x),
  `sgn`/`sign` is -1, 0 or 1, `limit(x, a, b)` clamps x between a and b (LTspice's meaning;
  ngspice's `.param` `limit` is a Monte-Carlo function, not modelled).
* Comparisons, `&&`, `||` and `!` give 1 or 0; `if(c, a, b)` (and ngspice's `ternary_fcn`)
  is `c ? a : b`.
* `table(x, x1, y1, x2, y2, ...)` interpolates linearly between the points and is flat outside
  them (LTspice's meaning; ngspice's `.param` has no `table`).
* A netlist's own functions (`.func f(x) {x*x}`, `.param f(x)={...}`) come in the `Scope`'s
  `functions`; a call reads the body with the arguments bound; a function calling itself is
  named.

Sub-expressions without symbols are folded in floating point with overflow, domain and
division-by-zero checks, so `1e308*1e308`, `10**(10**10)`, `1/0` or `sqrt(-1)` are named
errors, never inf, NaN or a complex number. The rest becomes a Sympy expression (sp.Add,
sp.Mul, sp.Pow, sp.Piecewise, sp.Min, sp.Max ...); powers of a symbol above `MAX_EXPONENT` are
refused. Chains (`a+b+c...`, `a*b*c...`) are built with one n-ary Sympy call, so the work stays
about linear in the text's length.
"""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import sympy as sp

from ..errors import NetlistError

SUFFIXES = {"t": 1e12, "g": 1e9, "meg": 1e6, "k": 1e3, "mil": 25.4e-6, "m": 1e-3,
            "u": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}
NUMBER = re.compile(r"((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)(meg|mil|[tgkmunpf])?[a-z]*")
MAX_DEPTH = 48          # nested parentheses, calls and ternaries
MAX_EXPONENT = 1000     # |n| of a power of a symbolic base

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?[a-z]*)
  | (?P<name>[a-z_][a-z0-9_]*)
  | (?P<op>\*\*|<=|>=|==|!=|&&|\|\||[-+*/^<>!?:(),])
""", re.VERBOSE)

# What a character that is not part of the language usually means, to say so in the error.
_FOREIGN = {
    ".": "attribute access `.` is not part of a SPICE expression",
    "[": "subscripts `[` are not part of a SPICE expression",
    "]": "subscripts `]` are not part of a SPICE expression",
    "'": "strings are not part of a SPICE expression",
    '"': "strings are not part of a SPICE expression",
    "{": "braces do not nest in a SPICE expression",
    "}": "braces do not nest in a SPICE expression",
    "=": "`=` is not an operator here (compare with `==`)",
    "%": "`%` is not one of + - * / ^ **",
    "&": "use `&&` for logical and",
    "|": "use `||` for logical or",
    ";": "`;` starts a comment; it cannot stand inside an expression",
}


def parse_number(token: str) -> float | None:
    """A SPICE number with an optional scale suffix (`2.2k`, `10n`, `1meg`, `4.7uF`), or None.

    Letters after the suffix are units and ignored, as in SPICE (`10kOhm` is 1e4; mind that
    `1F` is one femto). A number too large for a float is None, not inf.
    """
    m = NUMBER.fullmatch(token.strip().lower())
    if not m:
        m = re.fullmatch(r"[+-]" + NUMBER.pattern, token.strip().lower())
        if not m:
            return None
        sign = -1.0 if token.strip().startswith("-") else 1.0
    else:
        sign = 1.0
    value = sign * float(m.group(1)) * (SUFFIXES[m.group(2)] if m.group(2) else 1.0)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class UserFunction:
    """A netlist's own function: argument names and the body's text (lower case, no braces).
    A call parses the body with the arguments bound to the call's values, in the caller's
    scope, so a body may use `.param` names and call other functions (not itself)."""

    args: tuple[str, ...]
    body: str


@dataclass
class Scope:
    """What names mean to an expression.

    names: `.param` name -> value (a mapping, or a function returning None when unknown).
    probes: call-like names whose arguments are raw text, not expressions (`v` for V(a),
    V(a,b); `i` for I(Vx)): name -> function(list of argument strings) -> Sympy expression.
    The function may raise ValueError with a message; it is reported at the probe's line.
    functions: functions whose meaning differs in this context (ngspice's B source reads
    `pwr` and `pow` otherwise than its `.param` evaluator): name -> function(arguments (floats
    or Sympy expressions), description for messages) -> value; a ValueError is reported.
    """

    names: Mapping[str, sp.Expr] | Callable[[str], sp.Expr | None] = field(default_factory=dict)
    probes: Mapping[str, Callable[[list[str]], sp.Expr]] = field(default_factory=dict)
    #: functions of this context: user functions (`.func f(x, y) {expr}`, `.param f(x)=...`)
    #: as `UserFunction`s, and a device's own meanings of a name (a B source's `pwr`) as
    #: callables (args, what) -> value
    functions: Mapping[str, UserFunction | Callable[[list, str], sp.Expr | float]] = field(
        default_factory=dict)

    def lookup(self, name: str) -> sp.Expr | float | None:
        if callable(self.names):
            return self.names(name)
        return self.names.get(name)


@dataclass
class _Token:
    kind: str       # number, name, op, end
    text: str
    start: int
    end: int


class _Fail(Exception):
    """Raised inside the parser; `parse_expression` turns it into a NetlistError."""


def _token_at(text: str, pos: int) -> _Token:
    """The token starting at or after `pos` (spaces skipped)."""
    while True:
        if pos >= len(text):
            return _Token("end", "end of expression", len(text), len(text))
        m = _TOKEN.match(text, pos)
        if not m:
            ch = text[pos]
            reason = _FOREIGN.get(ch, "not part of a SPICE expression")
            raise _Fail(f"`{ch}` at column {pos + 1}: {reason}")
        if m.lastgroup != "space":
            word = m.group()
            if m.lastgroup == "name" and word.startswith("__"):
                raise _Fail(f"`{word}`: names with a leading double underscore are not "
                            "allowed in an expression")
            return _Token(m.lastgroup, word, m.start(), m.end())
        pos = m.end()


# -- numeric folding with checks -------------------------------------------------------------

def _finite(value: float, what: str) -> float:
    if isinstance(value, complex) or not math.isfinite(value):
        raise _Fail(f"{what} overflows (is not a finite real number)")
    return float(value)


def _call(fn: Callable, args: list[float], what: str) -> float:
    try:
        return _finite(fn(*args), what)
    except OverflowError:
        raise _Fail(f"{what} overflows") from None
    except ZeroDivisionError:
        raise _Fail(f"{what} divides by zero") from None
    except ValueError:
        raise _Fail(f"{what} is outside its domain (no real value)") from None


def _is_const(v) -> bool:
    return isinstance(v, float)


def _sym(v) -> sp.Expr:
    return sp.Float(v) if isinstance(v, float) else v


def _step(x, at_zero):
    return sp.Piecewise((sp.Integer(1), x > 0), (sp.Integer(0), x < 0), (at_zero, True))


def _sign(x):
    return sp.Piecewise((sp.Integer(1), x > 0), (sp.Integer(-1), x < 0), (sp.Integer(0), True))


def _truth(v):
    """A value as a condition: nonzero is true."""
    if isinstance(v, sp.Piecewise) and len(v.args) == 2 and v.args[0][0] == 1 \
            and v.args[1] == (0, True):
        return v.args[0][1]
    return sp.Ne(v, 0)


def _indicator(cond) -> sp.Expr:
    return sp.Piecewise((sp.Integer(1), cond), (sp.Integer(0), True))


def _check_power(expr: sp.Expr, what: str) -> sp.Expr:
    if isinstance(expr, sp.Pow) and expr.exp.is_number and not expr.base.is_number:
        exponent = float(abs(expr.exp)) if expr.exp.is_real else math.inf
        if exponent > MAX_EXPONENT:
            raise _Fail(f"{what}: a power of a parameter with exponent {expr.exp} (more than "
                        f"{MAX_EXPONENT}) is refused")
    return expr


def _abs_power(base, exponent, what: str):
    """ngspice's x**y: |x|^y."""
    if _is_const(base) and _is_const(exponent):
        if base == 0 and exponent < 0:
            raise _Fail(f"{what} divides by zero")
        return _call(math.pow, [abs(base), exponent], what)
    if _is_const(exponent) and abs(exponent) > MAX_EXPONENT:
        raise _Fail(f"{what}: a power of a parameter with exponent {exponent:g} (more than "
                    f"{MAX_EXPONENT}) is refused")
    b, e = _sym(base), _sym(exponent)
    even = _is_const(exponent) and exponent == int(exponent) and int(exponent) % 2 == 0
    if not (even or (_is_const(base) and base >= 0)):
        b = sp.Abs(b)
    if _is_const(exponent) and exponent == int(exponent):
        e = sp.Integer(int(exponent))
    return _check_power(sp.Pow(b, e), what)


def _c_pow(base, exponent, what: str):
    """C's pow(x, y): real only, so a negative x needs an integer y."""
    if _is_const(base) and _is_const(exponent):
        if base == 0 and exponent < 0:
            raise _Fail(f"{what} divides by zero")
        return _call(math.pow, [base, exponent], what)
    if _is_const(exponent) and abs(exponent) > MAX_EXPONENT:
        raise _Fail(f"{what}: exponent {exponent:g} is more than {MAX_EXPONENT}")
    e = sp.Integer(int(exponent)) if _is_const(exponent) and exponent == int(exponent) \
        else _sym(exponent)
    return _check_power(sp.Pow(_sym(base), e), what)


def _nint(x: float) -> float:
    return float(round(x))          # half to even, as ngspice's nint


def _sym_nint(x):
    f = sp.floor(x + sp.Rational(1, 2))
    tie = sp.And(sp.Eq(f - x, sp.Rational(1, 2)), sp.Eq(sp.Mod(f, 2), 1))
    return sp.Piecewise((f - 1, tie), (f, True))


def _limit(x, a, b):
    lo, hi = min(a, b), max(a, b)
    return min(max(x, lo), hi)


def _sym_limit(x, a, b):
    return sp.Min(sp.Max(x, sp.Min(a, b)), sp.Max(a, b))


def _positive(fn, name):
    def check(x):
        if x <= 0:
            raise ValueError(name)
        return fn(x)
    return check


def _nonnegative(fn, name):
    def check(x):
        if x < 0:
            raise ValueError(name)
        return fn(x)
    return check


@dataclass(frozen=True)
class Function:
    """One entry of the fixed function table: argument count, float form, Sympy form."""

    arity: int
    numeric: Callable[..., float]
    symbolic: Callable[..., sp.Expr]


FUNCTIONS: dict[str, Function] = {
    "min": Function(2, min, sp.Min),
    "max": Function(2, max, sp.Max),
    "abs": Function(1, abs, sp.Abs),
    "sqrt": Function(1, _nonnegative(math.sqrt, "sqrt"), sp.sqrt),
    "exp": Function(1, math.exp, sp.exp),
    "log": Function(1, _positive(math.log, "log"), sp.log),
    "ln": Function(1, _positive(math.log, "ln"), sp.log),
    "log10": Function(1, _positive(math.log10, "log10"), lambda x: sp.log(x, 10)),
    "sin": Function(1, math.sin, sp.sin),
    "cos": Function(1, math.cos, sp.cos),
    "tan": Function(1, math.tan, sp.tan),
    "asin": Function(1, math.asin, sp.asin),
    "acos": Function(1, math.acos, sp.acos),
    "atan": Function(1, math.atan, sp.atan),
    "atan2": Function(2, math.atan2, sp.atan2),
    "sinh": Function(1, math.sinh, sp.sinh),
    "cosh": Function(1, math.cosh, sp.cosh),
    "tanh": Function(1, math.tanh, sp.tanh),
    "hypot": Function(2, math.hypot, lambda x, y: sp.sqrt(x ** 2 + y ** 2)),
    "floor": Function(1, lambda x: float(math.floor(x)), sp.floor),
    "ceil": Function(1, lambda x: float(math.ceil(x)), sp.ceiling),
    "int": Function(1, lambda x: float(math.trunc(x)),
                    lambda x: sp.Piecewise((sp.floor(x), x >= 0), (sp.ceiling(x), True))),
    "nint": Function(1, _nint, _sym_nint),
    "sgn": Function(1, lambda x: float((x > 0) - (x < 0)), _sign),
    "sign": Function(1, lambda x: float((x > 0) - (x < 0)), _sign),
    "u": Function(1, lambda x: 1.0 if x > 0 else (0.0 if x < 0 else 0.5),
                  lambda x: _step(x, sp.Rational(1, 2))),
    "uramp": Function(1, lambda x: max(x, 0.0),
                      lambda x: sp.Piecewise((x, x > 0), (sp.Integer(0), True))),
    "limit": Function(3, _limit, _sym_limit),
}
def _table(x, points: list) -> float | sp.Expr:
    """ngspice's table(x, x1, y1, x2, y2, ...): linear between the points, flat outside."""
    xs, ys = points[0::2], points[1::2]
    if not all(_is_const(v) for v in xs):
        raise _Fail("table(...): the x values must be numbers")
    if any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
        raise _Fail("table(...): the x values must increase")
    if _is_const(x) and all(_is_const(v) for v in ys):
        if x <= xs[0]:
            return ys[0]
        for (x0, y0), (x1, y1) in zip(zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True),
                                      strict=False):
            if x <= x1:
                return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        return ys[-1]
    xv = _sym(x)
    pieces = [(_sym(ys[0]), xv <= xs[0])]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True),
                                  strict=False):
        pieces.append((_sym(y0) + (_sym(y1) - _sym(y0)) * (xv - x0) / (x1 - x0), xv <= x1))
    pieces.append((_sym(ys[-1]), True))
    return sp.Piecewise(*pieces)


# Functions whose two-argument power rules need the token for their messages.
_POWERS = {"pow": _c_pow, "pwr": _abs_power,
           "pwrs": lambda x, y, what: _pwrs(x, y, what)}
_CONDITIONAL = "if"
_ALIASES = {"ternary_fcn": "if"}          # ngspice's other name for if(c, a, b)
_VARIADIC = "table"


def _pwrs(x, y, what):
    magnitude = _abs_power(x, y, what)
    if _is_const(x):
        return _finite(math.copysign(1.0, x) * magnitude if x else 0.0 * magnitude, what)
    return _sign(x) * _sym(magnitude)


def function_names() -> list[str]:
    return sorted([*FUNCTIONS, *_POWERS, _CONDITIONAL, *_ALIASES, _VARIADIC])


class _Parser:
    def __init__(self, text: str, scope: Scope, depth: int = 0, calling: tuple[str, ...] = ()):
        self.text = text
        self.scope = scope
        self.tok = _token_at(text, 0)
        self.depth = depth
        self.calling = calling          # the user functions whose bodies are being read

    # -- token stream (read one token ahead, so that a probe can take its raw text) -------
    def take(self) -> _Token:
        t = self.tok
        self.tok = _token_at(self.text, t.end)
        return t

    def at(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    def expect(self, op: str, what: str) -> _Token:
        if not self.at(op):
            raise _Fail(f"expected `{op}` {what}, got `{self.tok.text}`")
        return self.take()

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Fail(f"`{self.tok.text}`: nested more than {MAX_DEPTH} levels deep")

    # -- grammar -------------------------------------------------------------------------
    def parse(self):
        if self.tok.kind == "end":
            raise _Fail("the expression is empty")
        value = self.ternary()
        if self.tok.kind != "end":
            t = self.tok
            if t.text == ",":
                raise _Fail("`,` outside a function call: an expression is one value")
            if t.text == ")":
                raise _Fail("`)` without a matching `(`")
            raise _Fail(f"unexpected `{t.text}` at column {t.start + 1}")
        return value

    def ternary(self):
        cond = self.logical_or()
        if not self.at("?"):
            return cond
        self.enter()
        self.take()
        a = self.ternary()
        self.expect(":", "in `c ? a : b`")
        b = self.ternary()
        self.depth -= 1
        return self.choose(cond, a, b)

    @staticmethod
    def choose(cond, a, b):
        if _is_const(cond):
            return a if cond != 0 else b
        return sp.Piecewise((_sym(a), _truth(cond)), (_sym(b), True))

    def logical_or(self):
        v = self.logical_and()
        while self.at("||"):
            self.take()
            w = self.logical_and()
            if _is_const(v) and _is_const(w):
                v = float(v != 0 or w != 0)
            else:
                v = _indicator(sp.Or(self._cond(v), self._cond(w)))
        return v

    def logical_and(self):
        v = self.equality()
        while self.at("&&"):
            self.take()
            w = self.equality()
            if _is_const(v) and _is_const(w):
                v = float(v != 0 and w != 0)
            else:
                v = _indicator(sp.And(self._cond(v), self._cond(w)))
        return v

    @staticmethod
    def _cond(v):
        if _is_const(v):
            return sp.true if v != 0 else sp.false
        return _truth(v)

    def equality(self):
        v = self.comparison()
        while self.at("==", "!="):
            op = self.take().text
            w = self.comparison()
            v = self.compare(op, v, w)
        return v

    def comparison(self):
        v = self.sum()
        while self.at("<", "<=", ">", ">="):
            op = self.take().text
            w = self.sum()
            v = self.compare(op, v, w)
        return v

    @staticmethod
    def compare(op: str, a, b):
        if _is_const(a) and _is_const(b):
            result = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b,
                      "!=": a != b}[op]
            return float(result)
        rel = {"<": sp.Lt, "<=": sp.Le, ">": sp.Gt, ">=": sp.Ge, "==": sp.Eq,
               "!=": sp.Ne}[op](_sym(a), _sym(b))
        return _indicator(rel)

    def sum(self):
        first = self.product()
        if not self.at("+", "-"):
            return first
        const, terms = 0.0, []
        items = [("+", first, None)]
        while self.at("+", "-"):
            op = self.take()
            items.append((op.text, self.product(), op))
        for op, v, _ in items:
            if _is_const(v):
                const = _finite(const + v if op == "+" else const - v, "the sum")
            else:
                terms.append(v if op == "+" else -v)
        if not terms:
            return const
        if const:
            terms.append(sp.Float(const))
        return sp.Add(*terms)

    def product(self):
        first = self.unary()
        if not self.at("*", "/"):
            return first
        const, factors = 1.0, []
        items = [("*", first, None)]
        while self.at("*", "/"):
            op = self.take()
            items.append((op.text, self.unary(), op))
        for op, v, tok in items:
            if _is_const(v):
                if op == "/":
                    if v == 0:
                        raise _Fail(f"`/` at column {tok.start + 1} divides by zero")
                    const = _call(lambda c, d: c / d, [const, v], "the quotient")
                else:
                    const = _finite(const * v, "the product")
            else:
                factors.append(v if op == "*" else sp.Pow(v, -1))
        if not factors:
            return const
        if const != 1.0:
            factors.append(sp.Float(const))
        return _check_power(sp.Mul(*factors), "the product")

    def unary(self):
        ops = []
        while self.at("-", "+", "!"):
            ops.append(self.take().text)
        v = self.power()
        for op in reversed(ops):
            if op == "-":
                v = -v if _is_const(v) else sp.Mul(-1, v)
            elif op == "!":
                v = float(v == 0) if _is_const(v) else _indicator(sp.Not(_truth(v)))
        return v

    def power(self):
        v = self.primary()
        while self.at("^", "**"):
            op = self.take()
            negative = False
            while self.at("-", "+"):
                negative ^= self.take().text == "-"
            e = self.primary()
            if negative:
                e = -e
            v = _abs_power(v, e, f"`{op.text}` at column {op.start + 1}")
        return v

    def primary(self):
        t = self.tok
        if t.kind == "number":
            self.take()
            value = parse_number(t.text)
            if value is None:
                raise _Fail(f"the number `{t.text}` is too large for a float")
            return value
        if t.kind == "name":
            self.take()
            if self.at("("):
                return self.call(t)
            return self.name(t)
        if self.at("("):
            self.enter()
            open_ = self.take()
            if self.at(")"):
                raise _Fail(f"empty parentheses `()` at column {open_.start + 1}")
            v = self.ternary()
            if not self.at(")"):
                if self.tok.kind == "end":
                    raise _Fail(f"`(` at column {open_.start + 1} is not closed")
                if self.at(","):
                    raise _Fail("`,` outside a function call: parentheses hold one value")
                raise _Fail(f"unexpected `{self.tok.text}` at column {self.tok.start + 1}")
            self.take()
            self.depth -= 1
            return v
        if t.kind == "end":
            raise _Fail("the expression ends where a value should be")
        raise _Fail(f"unexpected `{t.text}` at column {t.start + 1}: a value should be here")

    def name(self, t: _Token):
        value = self.scope.lookup(t.text)
        if value is None:
            if keyword.iskeyword(t.text) or t.text in ("true", "false", "none"):
                raise _Fail(f"`{t.text}` is a keyword, not a SPICE expression")
            if t.text in function_names() or t.text in self.scope.functions:
                raise _Fail(f"`{t.text}` is a function: call it as {t.text}(...)")
            raise _Fail(f"`{t.text}` is not defined: no `.param` gives it a value")
        if isinstance(value, (int, float)):
            return _finite(float(value), f"`{t.text}`")
        return value

    def call(self, t: _Token):
        name = t.text
        if name in self.scope.probes:
            return self.probe(t)
        name = _ALIASES.get(name, name)
        user = self.scope.functions.get(name)
        if user is None and name not in FUNCTIONS and name not in _POWERS and \
                name not in (_CONDITIONAL, _VARIADIC):
            if keyword.iskeyword(name):
                raise _Fail(f"`{name}` is a keyword, not a SPICE function")
            raise _Fail(f"`{name}` is not a known function; known: "
                        f"{', '.join(function_names())}")
        args = self.arguments(name)
        what = f"`{name}(...)` at column {t.start + 1}"
        if isinstance(user, UserFunction):
            return self.user_call(name, user, args)
        if user is not None:
            try:
                return user(args, what)
            except ValueError as exc:
                raise _Fail(f"{what}: {exc}") from None
        if name == _VARIADIC:
            if len(args) < 3 or len(args) % 2 == 0:
                raise _Fail("`table` takes x and then x, y pairs: table(x, x1, y1, x2, y2...)")
            return _table(args[0], args[1:])
        if name == _CONDITIONAL:
            self.arity(name, args, 3)
            return self.choose(*args)
        if name in _POWERS:
            self.arity(name, args, 2)
            return _POWERS[name](args[0], args[1], what)
        fn = FUNCTIONS[name]
        self.arity(name, args, fn.arity)
        if all(_is_const(a) for a in args):
            return _call(fn.numeric, args, what)
        return fn.symbolic(*[_sym(a) for a in args])

    def arguments(self, name: str) -> list:
        """The arguments of `name(...)`, the parenthesis being the current token."""
        self.enter()
        self.take()         # (
        args = []
        if not self.at(")"):
            args.append(self.ternary())
            while self.at(","):
                self.take()
                args.append(self.ternary())
        if not self.at(")"):
            if self.tok.kind == "end":
                raise _Fail(f"`{name}(` is not closed")
            raise _Fail(f"unexpected `{self.tok.text}` in {name}(...)")
        self.take()
        self.depth -= 1
        return args

    def user_call(self, name: str, fn: UserFunction, args: list):
        """A `.func`: its body parsed with the arguments bound, one level deeper (a function
        that calls itself runs into MAX_DEPTH and is named)."""
        self.arity(name, args, len(fn.args))
        bound = dict(zip(fn.args, args, strict=True))
        outer = self.scope

        def lookup(key: str):
            return bound[key] if key in bound else outer.lookup(key)

        inner = Scope(lookup, outer.probes, outer.functions)
        if name in self.calling:
            path = " -> ".join([*self.calling[self.calling.index(name):], name])
            raise _Fail(f"function `{name}` calls itself ({path}); SPICE functions cannot "
                        "recurse")
        try:
            return _Parser(fn.body, inner, self.depth + 1, (*self.calling, name)).parse()
        except _Fail as exc:
            if self.calling:
                raise
            raise _Fail(f"in the body of `.func {name}`: {exc}") from None

    @staticmethod
    def arity(name: str, args: list, n: int) -> None:
        if len(args) != n:
            raise _Fail(f"`{name}` takes {n} argument{'s' if n > 1 else ''}, got {len(args)}")

    def probe(self, t: _Token):
        """V(a), V(a,b), I(Vx): the raw text between the parentheses, split at commas."""
        start = self.tok.end            # just after `(`
        close = self.text.find(")", start)
        if close < 0:
            raise _Fail(f"`{t.text}(` is not closed")
        raw = self.text[start:close]
        if "(" in raw:
            raise _Fail(f"`(` inside {t.text}(...): its arguments are names")
        self.tok = _token_at(self.text, close + 1)
        args = [a.strip() for a in raw.split(",")]
        try:
            return self.scope.probes[t.text](args)
        except ValueError as exc:
            raise _Fail(f"{t.text}({raw}): {exc}") from None


def check_exponents(expr: sp.Expr) -> None:
    """Refuse a symbolic power above MAX_EXPONENT anywhere in `expr` (one linear walk)."""
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Pow):
            _check_power(node, "the expression")


def parse_expression(text: str, scope: Scope | None = None, file: str | None = None,
                     line: int | None = None, card: str | None = None) -> sp.Expr:
    """The Sympy value of a SPICE expression (without its braces).

    Raises NetlistError naming the offending token, at `file:line` (and quoting `card`).
    A constant expression comes back as an `sp.Float`.
    """
    scope = scope or Scope()
    try:
        value = _Parser(text.lower(), scope).parse()
        if _is_const(value):
            return sp.Float(value)
        check_exponents(value)
        return value
    except _Fail as exc:
        shown = text.strip() if len(text.strip()) <= 60 else text.strip()[:57] + "..."
        raise NetlistError(f"in the expression {{{shown}}}: {exc}", file, line,
                           card if card is None or len(card) <= 200 else card[:197] + "...") \
            from None
