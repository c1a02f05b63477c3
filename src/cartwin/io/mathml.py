"""Expressions between sympy (cartwin's parsed declarations) and libsbml's MathML trees.

Written node by node rather than through libsbml's infix parser: the infix parser reads
``log(x)`` as a base-10 logarithm by default and takes names such as ``e`` or ``pi`` for
constants, and either would silently change a model. ``Max``/``Min`` become ``piecewise`` so
that simulators without SBML L3V2's ``max``/``min`` read them.
"""

from __future__ import annotations

from typing import Callable

import libsbml
import sympy as sp

from cartwin.io.errors import SBMLExportError, SBMLImportError

_RELATIONAL = {
    sp.StrictGreaterThan: libsbml.AST_RELATIONAL_GT,
    sp.GreaterThan: libsbml.AST_RELATIONAL_GEQ,
    sp.StrictLessThan: libsbml.AST_RELATIONAL_LT,
    sp.LessThan: libsbml.AST_RELATIONAL_LEQ,
    sp.Equality: libsbml.AST_RELATIONAL_EQ,
    sp.Unequality: libsbml.AST_RELATIONAL_NEQ,
}


def _node(kind: int, *children: libsbml.ASTNode) -> libsbml.ASTNode:
    n = libsbml.ASTNode(kind)
    for c in children:
        n.addChild(c)
    return n


def _number(value) -> libsbml.ASTNode:
    if isinstance(value, sp.Integer) or (isinstance(value, int)):
        n = libsbml.ASTNode(libsbml.AST_INTEGER)
        n.setValue(int(value))
        return n
    if isinstance(value, sp.Rational):
        return _node(libsbml.AST_DIVIDE, _number(sp.Integer(value.p)), _number(sp.Integer(value.q)))
    n = libsbml.ASTNode(libsbml.AST_REAL)
    n.setValue(float(value))
    return n


def to_ast(expr: sp.Expr, name_of: Callable[[sp.Symbol], str | None]) -> libsbml.ASTNode:
    """sympy -> libsbml AST. ``name_of(symbol)`` gives the SBML id, or None for model time."""

    def walk(e) -> libsbml.ASTNode:
        if e is sp.true or e is sp.S.true:
            return libsbml.ASTNode(libsbml.AST_CONSTANT_TRUE)
        if e is sp.false or e is sp.S.false:
            return libsbml.ASTNode(libsbml.AST_CONSTANT_FALSE)
        if isinstance(e, sp.Symbol):
            sid = name_of(e)
            if sid is None:
                n = libsbml.ASTNode(libsbml.AST_NAME_TIME)
                n.setName("time")
                return n
            n = libsbml.ASTNode(libsbml.AST_NAME)
            n.setName(sid)
            return n
        if e is sp.E:
            return libsbml.ASTNode(libsbml.AST_CONSTANT_E)
        if e is sp.pi:
            return libsbml.ASTNode(libsbml.AST_CONSTANT_PI)
        if isinstance(e, sp.Number):
            if e.is_negative:
                return _node(libsbml.AST_MINUS, _number(-e))
            if not e.is_finite:
                raise SBMLExportError(f"non-finite number {e} in an expression")
            return _number(e)
        if isinstance(e, sp.Add):
            return _node(libsbml.AST_PLUS, *[walk(a) for a in e.args])
        if isinstance(e, sp.Mul):
            coeff, rest = e.as_coeff_Mul()
            if coeff == -1:
                return _node(libsbml.AST_MINUS, walk(rest))
            num, den = [], []
            for f in e.args:
                if isinstance(f, sp.Pow) and f.exp.is_number and f.exp.is_negative:
                    den.append(sp.Pow(f.base, -f.exp))
                elif isinstance(f, sp.Rational) and not isinstance(f, sp.Integer) and f.p == 1:
                    den.append(sp.Integer(f.q))
                else:
                    num.append(f)
            top = (walk(num[0]) if len(num) == 1 else _node(libsbml.AST_TIMES, *[walk(a) for a in num])
                   if num else _number(1))
            if not den:
                return top
            bottom = walk(den[0]) if len(den) == 1 else _node(libsbml.AST_TIMES, *[walk(a) for a in den])
            return _node(libsbml.AST_DIVIDE, top, bottom)
        if isinstance(e, sp.Pow):
            base, exp = e.args
            if exp == -1:
                return _node(libsbml.AST_DIVIDE, _number(1), walk(base))
            if exp == sp.Rational(1, 2):
                return _node(libsbml.AST_FUNCTION_ROOT, _number(2), walk(base))
            return _node(libsbml.AST_POWER, walk(base), walk(exp))
        if isinstance(e, sp.exp):
            return _node(libsbml.AST_FUNCTION_EXP, walk(e.args[0]))
        if isinstance(e, sp.log):
            if len(e.args) != 1:
                raise SBMLExportError(f"logarithm with a base in {e}")
            return _node(libsbml.AST_FUNCTION_LN, walk(e.args[0]))
        if isinstance(e, (sp.Max, sp.Min)):
            op = sp.GreaterThan if isinstance(e, sp.Max) else sp.LessThan
            args = list(e.args)
            out = args[0]
            for a in args[1:]:
                out = sp.Piecewise((out, op(out, a)), (a, True), evaluate=False)
            return walk(out)
        if isinstance(e, sp.Piecewise):
            n = libsbml.ASTNode(libsbml.AST_FUNCTION_PIECEWISE)
            for value, cond in e.args:
                if cond is sp.true:
                    n.addChild(walk(value))  # otherwise
                    break
                n.addChild(walk(value))
                n.addChild(walk(cond))
            return n
        for cls, kind in _RELATIONAL.items():
            if isinstance(e, cls):
                return _node(kind, walk(e.lhs), walk(e.rhs))
        if isinstance(e, sp.And):
            return _node(libsbml.AST_LOGICAL_AND, *[walk(a) for a in e.args])
        if isinstance(e, sp.Or):
            return _node(libsbml.AST_LOGICAL_OR, *[walk(a) for a in e.args])
        if isinstance(e, sp.Not):
            return _node(libsbml.AST_LOGICAL_NOT, walk(e.args[0]))
        if isinstance(e, sp.Abs):
            return _node(libsbml.AST_FUNCTION_ABS, walk(e.args[0]))
        raise SBMLExportError(f"no SBML MathML for {type(e).__name__} in {e}")

    return walk(expr)


# --- MathML -> sympy ----------------------------------------------------------------------
_FUNCTIONS_1 = {
    libsbml.AST_FUNCTION_EXP: sp.exp, libsbml.AST_FUNCTION_LN: sp.log,
    libsbml.AST_FUNCTION_ABS: sp.Abs, libsbml.AST_FUNCTION_FLOOR: sp.floor,
    libsbml.AST_FUNCTION_CEILING: sp.ceiling,
    libsbml.AST_FUNCTION_SIN: sp.sin, libsbml.AST_FUNCTION_COS: sp.cos,
    libsbml.AST_FUNCTION_TAN: sp.tan, libsbml.AST_FUNCTION_TANH: sp.tanh,
}
_RELATIONAL_BACK = {
    libsbml.AST_RELATIONAL_GT: sp.StrictGreaterThan, libsbml.AST_RELATIONAL_GEQ: sp.GreaterThan,
    libsbml.AST_RELATIONAL_LT: sp.StrictLessThan, libsbml.AST_RELATIONAL_LEQ: sp.LessThan,
    libsbml.AST_RELATIONAL_EQ: sp.Eq, libsbml.AST_RELATIONAL_NEQ: sp.Ne,
}


def from_ast(node: libsbml.ASTNode, symbol: Callable[[str], sp.Symbol], time: sp.Symbol,
             functions: dict[str, tuple[list[str], libsbml.ASTNode]] | None = None,
             where: str = "") -> sp.Expr:
    """libsbml AST -> sympy. ``functions`` holds SBML function definitions (arguments, body),
    expanded in place. Constructs without a sympy meaning raise :class:`SBMLImportError`."""
    functions = functions or {}

    def walk(n: libsbml.ASTNode, bound: dict[str, sp.Expr]):
        t = n.getType()
        kids = [n.getChild(i) for i in range(n.getNumChildren())]
        if t == libsbml.AST_INTEGER:
            return sp.Integer(n.getInteger())
        if t in (libsbml.AST_REAL, libsbml.AST_REAL_E):
            v = n.getReal()
            if v != v or v in (float("inf"), float("-inf")):
                raise SBMLImportError(f"{where}: non-finite number in MathML")
            return sp.Float(v)
        if t == libsbml.AST_RATIONAL:
            return sp.Rational(n.getNumerator(), n.getDenominator())
        if t == libsbml.AST_NAME:
            name = n.getName()
            if name in bound:
                return bound[name]
            return symbol(name)
        if t == libsbml.AST_NAME_TIME:
            return time
        if t == libsbml.AST_CONSTANT_E:
            return sp.E
        if t == libsbml.AST_CONSTANT_PI:
            return sp.pi
        if t == libsbml.AST_CONSTANT_TRUE:
            return sp.true
        if t == libsbml.AST_CONSTANT_FALSE:
            return sp.false
        args = [walk(k, bound) for k in kids]
        if t == libsbml.AST_PLUS:
            return sp.Add(*args) if args else sp.Integer(0)
        if t == libsbml.AST_MINUS:
            return -args[0] if len(args) == 1 else args[0] - args[1]
        if t == libsbml.AST_TIMES:
            return sp.Mul(*args) if args else sp.Integer(1)
        if t == libsbml.AST_DIVIDE:
            return args[0] / args[1]
        if t in (libsbml.AST_POWER, libsbml.AST_FUNCTION_POWER):
            return args[0] ** args[1]
        if t == libsbml.AST_FUNCTION_ROOT:
            degree, base = (args if len(args) == 2 else (sp.Integer(2), args[0]))
            return base ** (1 / degree)
        if t == libsbml.AST_FUNCTION_LOG:
            base, x = (args if len(args) == 2 else (sp.Integer(10), args[0]))
            return sp.log(x) / sp.log(base)
        if t in _FUNCTIONS_1:
            return _FUNCTIONS_1[t](args[0])
        if t in (libsbml.AST_FUNCTION_REM, libsbml.AST_FUNCTION_QUOTIENT):
            # L3V2: rem(a, b) = a - b * quotient(a, b), quotient truncated towards zero (C's fmod)
            ratio = args[0] / args[1]
            quotient = sp.sign(ratio) * sp.floor(sp.Abs(ratio))
            return quotient if t == libsbml.AST_FUNCTION_QUOTIENT else args[0] - args[1] * quotient
        if t == libsbml.AST_LOGICAL_IMPLIES:
            return sp.Or(sp.Not(args[0]), args[1])
        if t == libsbml.AST_LOGICAL_XOR:
            return sp.Xor(*args)
        if t == libsbml.AST_FUNCTION_MAX:
            return sp.Max(*args)
        if t == libsbml.AST_FUNCTION_MIN:
            return sp.Min(*args)
        if t in _RELATIONAL_BACK:
            if len(args) != 2:
                raise SBMLImportError(f"{where}: relational with {len(args)} operands")
            return _RELATIONAL_BACK[t](args[0], args[1])
        if t == libsbml.AST_LOGICAL_AND:
            return sp.And(*args)
        if t == libsbml.AST_LOGICAL_OR:
            return sp.Or(*args)
        if t == libsbml.AST_LOGICAL_NOT:
            return sp.Not(args[0])
        if t == libsbml.AST_FUNCTION_PIECEWISE:
            pieces = [(args[i], args[i + 1]) for i in range(0, len(args) - 1, 2)]
            otherwise = args[-1] if len(args) % 2 == 1 else sp.nan
            return sp.Piecewise(*pieces, (otherwise, True))
        if t == libsbml.AST_FUNCTION:
            name = n.getName()
            if name not in functions:
                raise SBMLImportError(f"{where}: call of undefined function {name!r}")
            params, body = functions[name]
            if len(params) != len(args):
                raise SBMLImportError(f"{where}: function {name} called with {len(args)} arguments, "
                                      f"defined with {len(params)}")
            return walk(body, dict(zip(params, args)))
        raise SBMLImportError(f"{where}: unsupported MathML element {n.getName() or t!r} "
                              f"({libsbml.formulaToL3String(n)})")

    return walk(node, {})
