"""`{expressions}`: a parser of our own, checked against Python's math, closed forms and ngspice.

Netlist text never reaches `eval`/`sympify`: the code-execution netlists below must fail with a
NetlistError naming the offending token and must not run anything (a marker file stays absent).
"""

import math
import re
import shutil
import subprocess

import pytest
import sympy as sp

from nodal.errors import NetlistError
from nodal.netlist import parse, read
from nodal.netlist.expressions import Scope, function_names, parse_expression

HEADER = "* expressions\n*@ input Vin\n*@ output out\nVin in 0 DC 0\nR2 out 0 1k\n"


def netlist(card: str) -> str:
    return HEADER + card + "\n.end\n"


def value(expr: str, **names: float) -> float:
    result = parse_expression(expr, Scope({k: sp.Float(v) for k, v in names.items()}))
    assert result.is_number
    return float(result)


# -- no code runs ------------------------------------------------------------------------------

def _attacks(marker):
    shell = f"touch {marker}"
    return [
        "{().__class__.__base__.__subclasses__()[140].__init__.__globals__['system']"
        f"('{shell}')*0+1000}}",
        "{().__class__}",                                   # attribute access
        "{(1,2)[0]}",                                       # subscript (and a tuple)
        "{__import__}",                                     # dunder name
        "{__builtins__}",
        "{lambda: 1}",                                      # lambda
        "{[x for x in (1, 2)]}",                            # comprehension
        "{'abc'}",                                          # string literal (quote form)
        '{"abc"}',                                          # string literal
        "{import os}",                                      # keyword
        f"{{exec('open(\"{marker}\", \"w\")')}}",           # unknown function with a string
        "{eval}",
        "{1 if 1 else 2}",
        "{not 0}",
    ]


@pytest.mark.parametrize("k", range(14))
def test_code_in_an_element_value_is_a_named_error_and_runs_nothing(tmp_path, k):
    marker = tmp_path / "marker"
    attack = _attacks(marker)[k]
    with pytest.raises(NetlistError) as info:
        parse(netlist(f"R1 in out {attack}"), "attack.cir")
    assert info.value.line == 6 and info.value.file == "attack.cir"
    assert not marker.exists()
    assert "`" in info.value.reason            # the offending token is quoted


@pytest.mark.parametrize("where", [
    ".param r={CODE}\nR1 in out {r}",
    ".model dx D(IS={CODE})\nR1 in out 1k\nD1 out 0 dx",
    "V2 x 0 SIN(0 {CODE} 1k)\nR1 in out 1k\nR3 x 0 1k",
    "V2 x 0 DC {CODE}\nR1 in out 1k\nR3 x 0 1k",
    "E1 out 0 in 0 {CODE}\nR1 in out 1k",
])
def test_code_in_params_models_and_sources_runs_nothing(tmp_path, where):
    marker = tmp_path / "marker"
    code = ("().__class__.__base__.__subclasses__()[140].__init__.__globals__['system']"
            f"('touch {marker}')*0+1")
    path = tmp_path / "attack.cir"
    path.write_text(netlist(where.replace("CODE", code)))
    with pytest.raises(NetlistError, match=r"`\(\)`|`\.`") as info:
        read(path)
    assert info.value.line == 6
    assert not marker.exists()


@pytest.mark.parametrize("expr, token", [
    ("x.real", "`.`"), ("a[0]", "`[`"), ("__class__", "`__class__`"), ("lambda: 1", "`lambda`"),
    ("1,2", "`,`"), ("", "empty"), ("(1+2", "`(`"), ("1+2)", "`)`"), ("foo(1)", "`foo`"),
    ("import", "`import`"), ("2 % 3", "`%`"), ("1 = 1", "`=`"), ("'s'", "`'`"),
    ("{1}", "`{`"), ("1 2", "`2`"), ("sqrt(1, 2)", "`sqrt`"), ("sqrt", "`sqrt`"),
    ("undefined_name", "`undefined_name`"), ("max(1,)", "`)`"), ("()", "`()`"),
])
def test_every_foreign_token_is_named(expr, token):
    with pytest.raises(NetlistError) as info:
        parse_expression(expr, Scope({"x": sp.Symbol("x")}), "f.cir", 7, "R1 a b {...}")
    assert token in info.value.reason and info.value.line == 7 and info.value.file == "f.cir"


# -- bounded work -------------------------------------------------------------------------------

@pytest.mark.parametrize("expr, what", [
    ("1e308*1e308", "overflow"), ("10**(10**10)", "overflow"), ("1/0", "divides by zero"),
    ("sqrt(-1)", "domain"), ("log(0)", "domain"), ("exp(1e4)", "overflow"),
    ("asin(2)", "domain"), ("pow(-8, 1/3)", "domain"), ("0^-1", "divides by zero"),
    ("1e999", "too large"), ("x^100000", "refused"), ("x^2^2^2^2^2^2^2^2^2^2^2", "refused"),
    ("cosh(1000)", "overflow"), ("-1e308-1e308", "overflow"),
])
def test_constant_folding_names_overflow_domain_and_huge_powers(expr, what):
    with pytest.raises(NetlistError, match=what):
        parse_expression(expr, Scope({"x": sp.Symbol("x")}))


def test_a_ten_thousand_character_expression_parses_without_hanging():
    x = sp.Symbol("x")
    long_sum = "+".join(["x*2"] * 2500)                      # 10,000 characters
    assert float(parse_expression(long_sum, Scope({"x": x})).subs(x, 1)) == 5000.0
    assert value("+".join(["1.5"] * 2500)) == pytest.approx(3750.0)
    assert value("-" * 10000 + "1") == 1.0
    with pytest.raises(NetlistError, match="nested"):
        parse_expression("(" * 5000 + "1" + ")" * 5000)


# -- meaning: precedence and functions against Python's math -----------------------------------

@pytest.mark.parametrize("expr, expected", [
    ("1+2*3", 7.0), ("(1+2)*3", 9.0), ("2-3-4", -5.0), ("8/2/2", 2.0), ("-2^2", -4.0),
    ("-3**2", -9.0), ("2**3**2", 64.0), ("2^-1", 0.5), ("-2**-2", -0.25), ("(-2)**3", 8.0),
    ("2*3^2", 18.0), ("!1+1", 1.0), ("!0", 1.0), ("1<2", 1.0), ("2<=1", 0.0),
    ("3 > 2 == 1", 1.0), ("1 != 1", 0.0), ("1 && 0", 0.0), ("0 || 2", 1.0), ("1&&0||1", 1.0),
    ("2<1 ? 5 : 6", 6.0), ("1 ? 2 : 0 ? 3 : 4", 2.0), ("0 ? 2 : 0 ? 3 : 4", 4.0),
    ("+-+1", -1.0), ("1e-3*1k", 1.0), ("2.2k", 2200.0), ("10n*1meg", 1e-2),
    ("4.7uF*1", 4.7e-6), ("1mil", 25.4e-6), ("3m+3meg", 3e6 + 3e-3), ("10kOhm/10", 1000.0),
    (".5+5.", 5.5), ("1e3", 1000.0), ("2.5e+2f", 2.5e-13),
])
def test_operator_precedence_and_suffixes(expr, expected):
    assert value(expr) == pytest.approx(expected, rel=1e-14)


FUNCTION_CASES = [
    ("table(1.5, 1, 10, 2, 20)", 15.0), ("ternary_fcn(0, 2, 3)", 3.0),
    ("min(3, 2)", 2.0), ("max(3, -2)", 3.0), ("abs(-3.5)", 3.5), ("sqrt(2)", math.sqrt(2)),
    ("exp(1.5)", math.exp(1.5)), ("log(10)", math.log(10)), ("ln(10)", math.log(10)),
    ("log10(200)", math.log10(200)), ("pwr(-2, 3)", 8.0), ("pow(-2, 3)", -8.0),
    ("pow(2, 0.5)", math.sqrt(2)), ("pwrs(-2, 2)", -4.0), ("pwrs(3, 2)", 9.0),
    ("limit(5, 0, 2)", 2.0), ("limit(-5, 2, 0)", 0.0), ("limit(1, 0, 2)", 1.0),
    ("sin(0.3)", math.sin(0.3)), ("cos(0.3)", math.cos(0.3)), ("tan(0.3)", math.tan(0.3)),
    ("asin(0.3)", math.asin(0.3)), ("acos(0.3)", math.acos(0.3)), ("atan(0.3)", math.atan(0.3)),
    ("atan2(1, -2)", math.atan2(1, -2)), ("sinh(0.3)", math.sinh(0.3)),
    ("cosh(0.3)", math.cosh(0.3)), ("tanh(0.3)", math.tanh(0.3)), ("floor(-2.5)", -3.0),
    ("ceil(-2.5)", -2.0), ("int(-2.7)", -2.0), ("int(2.7)", 2.0), ("nint(2.5)", 2.0),
    ("nint(3.5)", 4.0), ("nint(-2.5)", -2.0), ("nint(2.6)", 3.0), ("sgn(-3)", -1.0),
    ("sgn(0)", 0.0), ("sign(4)", 1.0), ("u(2)", 1.0), ("u(-2)", 0.0), ("u(0)", 0.5),
    ("uramp(-1)", 0.0), ("uramp(2)", 2.0), ("hypot(3, 4)", 5.0), ("if(1, 2, 3)", 2.0),
    ("if(0, 2, 3)", 3.0),
]


@pytest.mark.parametrize("expr, expected", FUNCTION_CASES)
def test_every_function_against_its_closed_form(expr, expected):
    assert value(expr) == pytest.approx(expected, rel=1e-14, abs=1e-300)


def test_the_function_table_is_fixed_and_covered():
    tested = {re.match(r"\w+", e).group() for e, _ in FUNCTION_CASES}
    assert set(function_names()) == tested


# ngspice's own `.param`/brace evaluator on the functions it defines (u, uramp, if, pwrs, atan2,
# hypot, sign and limit are LTspice's or B-source functions, not its `.param` functions).
NGSPICE_CASES = ["1+2*3", "-2^2", "-3**2", "2**3**2", "2^3^2", "(-2)**3", "(-2)^3",
                 "pow(-2,3)", "pwr(-2,3)", "pow(2,-1)", "nint(2.5)", "nint(-2.5)", "nint(3.5)",
                 "int(-2.7)", "sgn(-3)", "log(10)", "ln(10)", "log10(100)", "floor(-2.5)",
                 "ceil(-2.5)", "min(3,2)", "max(3,2)", "!1+1", "3 > 2 == 1", "2<1?5:6",
                 "1&&0", "0||2", "2^-1", "-2**-2", "exp(1)*tanh(0.5)", "sqrt(2)*atan(1)",
                 "2.2k*10n", "1meg/4.7u", "abs(-3)+cosh(0.2)"]


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice is not installed")
def test_constant_expressions_match_ngspice():
    cards = "\n".join(f"V{k} n{k} 0 {{{e}}}\nR{k} n{k} 0 1" for k, e in enumerate(NGSPICE_CASES))
    deck = f"t\n{cards}\n.control\nset numdgt=15\nop\nprint all\n.endc\n.end\n"
    out = subprocess.run(["ngspice", "-b", "/dev/stdin"], input=deck, capture_output=True,
                         text=True, timeout=60).stdout
    theirs = {int(m.group(1)): float(m.group(2))
              for m in re.finditer(r"^n(\d+) = (\S+)", out, re.M)}
    assert len(theirs) == len(NGSPICE_CASES), out
    for k, expr in enumerate(NGSPICE_CASES):
        assert value(expr) == pytest.approx(theirs[k], rel=1e-12, abs=1e-300), expr


# -- symbols: parameters, conditions and the probe hook ---------------------------------------

def test_symbolic_results_evaluate_like_python():
    x, y = sp.Symbol("x"), sp.Symbol("y")
    scope = Scope({"x": x, "y": y})
    for expr, fn in [("x^3", lambda a, b: abs(a) ** 3), ("pow(x, 3)", lambda a, b: a ** 3),
                     ("x > y ? x : 2*y", lambda a, b: a if a > b else 2 * b),
                     ("max(x, y) - min(x, y)", lambda a, b: abs(a - b)),
                     ("u(x) + uramp(y)", lambda a, b: float(a > 0) + max(b, 0)),
                     ("(x < y) * 3 + !(x < y)", lambda a, b: 3.0 if a < b else 1.0),
                     ("x && y || 0", lambda a, b: float(bool(a) and bool(b))),
                     ("limit(x, -1, 1)", lambda a, b: min(max(a, -1), 1)),
                     ("nint(x) + int(y)", lambda a, b: round(a) + math.trunc(b)),
                     ("sgn(x) * pwrs(y, 2)",
                      lambda a, b: math.copysign(1, a) * math.copysign(b * b, b))]:
        e = parse_expression(expr, scope)
        for a, b in [(-1.5, 0.5), (2.5, -3.25), (0.7, 0.7)]:
            got = float(e.subs({x: a, y: b}))
            assert got == pytest.approx(fn(a, b), rel=1e-12), (expr, a, b)


def test_probe_hook_for_behavioural_sources_v_i_and_time():
    seen = []

    def v(args):
        seen.append(args)
        if len(args) not in (1, 2):
            raise ValueError("V takes one or two nodes")
        return sp.Symbol("v_" + "_".join(args))

    scope = Scope(names=lambda n: sp.Symbol("t") if n == "time" else None,
                  probes={"v": v, "i": lambda a: sp.Symbol("i_" + a[0])})
    e = parse_expression("V(a) - v(x1.out, 0) + 2*I(Vx) * sin(time)", scope)
    assert sp.simplify(e - (sp.Symbol("v_a") - sp.Symbol("v_x1.out_0")
                            + 2 * sp.Symbol("i_vx") * sp.sin(sp.Symbol("t")))) == 0
    assert seen == [["a"], ["x1.out", "0"]]
    with pytest.raises(NetlistError, match="one or two nodes"):
        parse_expression("v(a,b,c)", scope)


def test_param_chains_and_expressions_in_a_netlist():
    text = netlist(".param a=2k b={a*2} c={b+a/2}\n.param d = 'c*2'\nR1 in out {c*10n*1meg}\n"
                   "R3 out 0 d")
    net = parse(text)
    from nodal.netlist import evaluate
    assert net.defaults["a"] == 2000.0 and evaluate(net.params["b"], net.defaults) == 4000.0
    assert evaluate(net.element("r1").value, net.defaults) == pytest.approx(5000 * 1e-2)
    assert evaluate(net.element("r3").value, net.defaults) == pytest.approx(10000.0)
    # b follows a: the chain stays symbolic
    assert evaluate(net.params["c"], {**net.defaults, "a": 1000.0}) == pytest.approx(2500.0)


def test_an_error_names_the_token_and_the_line():
    text = netlist(".param a=1k\nR1 in out {a*foo}")
    with pytest.raises(NetlistError) as info:
        parse(text, "named.cir")
    assert info.value.line == 7 and "`foo`" in str(info.value) and "named.cir:7" in str(info.value)
