"""No certpoll module reads another certpoll module's underscore names.

A name starting with one underscore belongs to the module that defines it: a module that
imports it (``from ._x import _y``) or reads it as an attribute (``obj._y``) while defining
no ``_y`` of its own depends on another module's insides. A subclass's own ``self._y`` (a
connector calling ``self._send`` of its base) is the base's contract with it, not a read of
another module's object. Read from the source with ``ast``.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "certpoll"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def defined(tree: ast.AST) -> set[str]:
    """The underscore names a module defines: functions, classes, assignments, attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {name for name in names if _private(name)}


def foreign_reads(source: str, own_elsewhere: set[str]) -> Iterator[str]:
    """Each read, in ``source``, of an underscore name only another certpoll module defines."""
    tree = ast.parse(source)
    mine = defined(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or node.module == "certpoll"):
            for alias in node.names:
                if _private(alias.name) and alias.name in own_elsewhere:
                    yield f"line {node.lineno}: from {node.module} import {alias.name}"
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Load)
            and _private(node.attr)
            and node.attr in own_elsewhere
            and node.attr not in mine
            and not _own_object(node.value)
        ):
            yield f"line {node.lineno}: {ast.unparse(node)}"


def _own_object(node: ast.expr) -> bool:
    """``self``, ``cls`` or ``super()``: the reading class's own object."""
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and ast.unparse(node.func) == "super"


@functools.cache
def _defined_in(path: Path) -> frozenset[str]:
    return frozenset(defined(ast.parse(path.read_text())))


def _defined_by_others(path: Path) -> set[str]:
    """Underscore names other modules define (module files excluded: importing one is fine)."""
    modules = {module.stem for module in MODULES}
    return {
        name
        for other in MODULES
        if other != path
        for name in _defined_in(other)
        if name not in modules
    }


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_reads_another_modules_underscore_names(path: Path) -> None:
    assert list(foreign_reads(path.read_text(), _defined_by_others(path))) == []


def test_the_check_sees_a_foreign_read() -> None:
    others = {"_acquire", "_run"}
    source = "from ._gate import _acquire\n\ndef f(gate):\n    return gate._run()\n"
    assert list(foreign_reads(source, others)) == [
        "line 1: from _gate import _acquire",
        "line 4: gate._run",
    ]


def test_the_check_lets_a_module_read_its_own_names_and_a_subclass_its_base() -> None:
    source = "class A:\n    def _run(self):\n        pass\n\ndef f(a):\n    return a._run()\n"
    assert list(foreign_reads(source, {"_run"})) == []
    subclass = "class B(Base):\n    def run(self):\n        return self._send() or super()._get()\n"
    assert list(foreign_reads(subclass, {"_send", "_get"})) == []
