"""Every type in a public signature is public: a user can import whatever certpoll hands out.

The walk starts at every name of ``certpoll.__all__`` and ``certpoll.testing.__all__`` and
reads the annotations (``typing.get_type_hints``) of each function, and of each class's own
attributes, properties and public methods (``__init__`` and ``__call__`` included). Every
class named there must be a public name of certpoll or certpoll.testing, or come from the
standard library or a library whose objects certpoll takes or returns (httpx, pydantic,
cryptography, and the optional integrations' libraries).
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Iterator
from typing import get_args, get_origin

import pytest

import certpoll
import certpoll.testing

PACKAGES = (certpoll, certpoll.testing)

#: Libraries outside the standard library whose public types may stand in a signature.
OTHER_LIBRARIES = frozenset(
    {
        "httpx",
        "pydantic",
        "pydantic_settings",  # the settings' sources hook, which pydantic calls
        "cryptography",
        "opentelemetry",
        "prometheus_client",
        "structlog",
    }
)

#: Methods a user calls by syntax rather than by name.
DUNDERS = ("__init__", "__call__")


def public_types() -> dict[int, str]:
    """Every class that is a public name, by identity, with its public spelling."""
    found: dict[int, str] = {}
    for package in PACKAGES:
        for name in package.__all__:
            value = getattr(package, name)
            if isinstance(value, type):
                found[id(value)] = f"{package.__name__}.{name}"
    return found


@functools.cache
def type_checking_names(module: types.ModuleType) -> dict[str, object]:
    """The names ``module`` imports only for type checkers (``if TYPE_CHECKING:``).

    ``get_type_hints`` cannot resolve those from the module's globals, so they are imported
    here the same way, relative imports included.
    """
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return {}
    names: dict[str, object] = {"__name__": module.__name__, "__package__": module.__package__}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            block = ast.Module(
                body=[s for s in node.body if isinstance(s, ast.Import | ast.ImportFrom)],
                type_ignores=[],
            )
            exec(compile(block, module.__name__, "exec"), names)  # noqa: S102 - its own imports
    return names


def hints(thing: object, module_name: str) -> dict[str, object]:
    """``typing.get_type_hints`` of ``thing``, TYPE_CHECKING imports of its module included."""
    module = sys.modules[module_name]
    localns = dict(type_checking_names(module))
    return typing.get_type_hints(thing, globalns=vars(module), localns=localns)


def class_hints(cls: type) -> dict[str, object]:
    """``typing.get_type_hints`` of a class: each class of its MRO read in its own module.

    Given no ``globalns``, ``get_type_hints`` evaluates each base's annotations in that
    base's module; the TYPE_CHECKING imports of certpoll's modules on the way are added.
    """
    localns: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("certpoll"):
            localns.update(type_checking_names(sys.modules[klass.__module__]))
    return typing.get_type_hints(cls, localns=localns)


def classes_in(hint: object) -> Iterator[type]:
    """The classes an annotation names, at any depth (``Literal`` values are not classes)."""
    if isinstance(hint, list | tuple):  # Callable's parameter list
        for item in hint:
            yield from classes_in(item)
        return
    if isinstance(hint, typing.TypeVar):
        yield from classes_in(hint.__bound__)
        yield from classes_in(hint.__constraints__)
        return
    origin = get_origin(hint)
    if origin is typing.Literal:
        return
    if origin is not None:
        arguments = get_args(hint)
        if origin is typing.Annotated:
            arguments = arguments[:1]
        elif origin not in (typing.Union, types.UnionType) and isinstance(origin, type):
            yield origin
        yield from classes_in(arguments)
        return
    if isinstance(hint, type) and hint is not type(None):
        yield hint


def is_public(cls: type, public: dict[int, str]) -> bool:
    if id(cls) in public:
        return True
    root = cls.__module__.partition(".")[0]
    return root in sys.stdlib_module_names or root in OTHER_LIBRARIES


def own_members(cls: type) -> Iterator[tuple[str, object]]:
    """The public attributes, properties and methods certpoll itself defines on ``cls``."""
    for klass in cls.__mro__:
        if not klass.__module__.startswith("certpoll"):
            continue
        annotated = vars(klass).get("__annotations__", {})
        if annotated:
            resolved = class_hints(klass)
            for name in annotated:
                if not name.startswith("_"):
                    yield f"{klass.__qualname__}.{name}", resolved[name]
        for name, member in vars(klass).items():
            if name.startswith("_") and name not in DUNDERS:
                continue
            function = member.fget if isinstance(member, property) else member
            if isinstance(function, classmethod | staticmethod):
                function = function.__func__
            if inspect.isfunction(function) and function.__module__.startswith("certpoll"):
                for hint in hints(function, function.__module__).values():
                    yield f"{klass.__qualname__}.{name}", hint


def signatures() -> Iterator[tuple[str, object]]:
    """``(where, annotation)`` for everything the public names expose."""
    for package in PACKAGES:
        for name in package.__all__:
            value = getattr(package, name)
            where = f"{package.__name__}.{name}"
            if isinstance(value, type):
                for member, hint in own_members(value):
                    yield f"{package.__name__}.{member}", hint
            elif inspect.isfunction(value):
                for hint in hints(value, value.__module__).values():
                    yield where, hint
            elif get_origin(value) is not None:  # an alias such as AttemptResult
                yield where, value


def violations() -> set[tuple[str, str]]:
    public = public_types()
    found = set()
    for where, hint in signatures():
        for cls in classes_in(hint):
            if not is_public(cls, public):
                found.add((where, f"{cls.__module__}.{cls.__qualname__}"))
    return found


def test_every_type_in_a_public_signature_is_public() -> None:
    unexpected = violations()
    assert not unexpected, "private types in public signatures:\n" + "\n".join(
        f"  {where}: {name}" for where, name in sorted(unexpected)
    )


def unannotated_attributes() -> set[tuple[str, str]]:
    """Public attributes an ``__init__`` sets whose type no annotation the walk reads gives.

    One assigned straight from a parameter of the same ``__init__`` has that parameter's
    type, which the walk reads.
    """
    found = set()
    for package in PACKAGES:
        for name in package.__all__:
            cls = getattr(package, name)
            init = vars(cls).get("__init__") if isinstance(cls, type) else None
            if not inspect.isfunction(init) or not init.__module__.startswith("certpoll"):
                continue
            if init.__code__.co_filename.startswith("<"):
                continue  # written by dataclasses from the annotations the walk reads
            parameters = set(inspect.signature(init).parameters)
            annotated = {a for klass in cls.__mro__ for a in vars(klass).get("__annotations__", {})}
            for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(init)))):
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    target, value = node.targets[0], node.value
                elif isinstance(node, ast.AnnAssign):
                    target, value = node.target, None
                else:
                    continue
                if not (
                    isinstance(target, ast.Attribute)
                    and ast.unparse(target.value) == "self"
                    and not target.attr.startswith("_")
                    and target.attr not in annotated
                ):
                    continue
                if isinstance(value, ast.Name) and value.id in parameters:
                    continue
                found.add((f"{package.__name__}.{name}", target.attr))
    return found


def test_public_instance_attributes_are_annotated_in_the_class_body() -> None:
    assert unannotated_attributes() == set(), "annotate these in the class body"


def test_the_walk_sees_what_it_must() -> None:
    """The walk reaches a method's parameters, a property, a dataclass field, an alias and a
    TYPE_CHECKING import: a private type in any of them would be found."""
    seen = {(where, cls) for where, hint in signatures() for cls in classes_in(hint)}
    assert ("certpoll.testing.Credentials.settings", certpoll.CASettings) in seen
    assert ("certpoll.Poller.__init__", certpoll.BackoffPolicy) in seen
    assert ("certpoll.PollHook.__call__", certpoll.PollDetails) in seen
    assert ("certpoll.AttemptResult", certpoll.Pending) in seen
    assert ("certpoll.testing.TestPKI.root", certpoll.testing.Authority) in seen
    opentelemetry_trace = pytest.importorskip("opentelemetry.trace")
    assert ("certpoll.opentelemetry_hook", opentelemetry_trace.TracerProvider) in seen


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (int | None, {int}),
        (typing.Literal["a", "b"], set()),
        (Callable[[certpoll.PollDetails], None], {Callable, certpoll.PollDetails}),
        (dict[str, tuple[certpoll.Done[int], ...]], {dict, str, tuple, certpoll.Done, int}),
        (typing.Annotated[float, "seconds"], {float}),
    ],
)
def test_classes_in_reads_through_every_kind_of_annotation(
    hint: object, expected: set[type]
) -> None:
    assert set(classes_in(hint)) == expected


def test_a_private_class_is_caught() -> None:
    class Hidden:
        pass

    Hidden.__module__ = "certpoll._hidden"
    assert not is_public(Hidden, public_types())
    assert is_public(certpoll.testing.Authority, public_types())
