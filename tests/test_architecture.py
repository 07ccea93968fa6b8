"""The architecture page (docs/architecture.md) names every module, and only modules that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "certpoll"
PAGE = (ROOT / "docs" / "architecture.md").read_text()


def _modules() -> set[str]:
    """The package's modules by the name the page gives them (backends as one folder)."""
    names = {path.name for path in PACKAGE.glob("*.py")} - {"__init__.py"}
    names |= {
        f"_connectors/{path.name}"
        for path in (PACKAGE / "_connectors").glob("*.py")
        if path.name != "__init__.py"
    }
    return names


def test_the_page_names_every_module() -> None:
    missing = {
        name
        for name in _modules()
        if name not in PAGE and name.removeprefix("_connectors/").removesuffix(".py") not in PAGE
    }
    assert not missing


def test_every_module_the_page_names_exists() -> None:
    named = set(re.findall(r"(?<![\w/])(_[a-z_]+\.py)", PAGE))
    assert named
    existing = {path.name for path in PACKAGE.rglob("*.py")}
    assert named <= existing


def test_the_page_is_in_the_navigation() -> None:
    assert "architecture.md" in (ROOT / "mkdocs.yml").read_text()


def _layers() -> dict[str, int]:
    """Each module's layer as the picture under "The layers" draws it.

    A numbered line starts a layer; the lines below it, up to the next number, belong to
    it. A bare CA module name (``sectigo.py``) on a line about ``_connectors/`` is one of
    the connectors; ``_backends/`` stands for every module in that folder (the files it
    lists in parentheses are not layers of their own).
    """
    picture = PAGE.split("## The layers", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    layers: dict[str, int] = {}
    layer = 0
    for line in picture.splitlines():
        number = re.match(r"\s*(\d+)\s", line)
        if number:
            layer = int(number.group(1))
        for name in re.findall(r"(?<![\w/])((?:_connectors/)?\w+\.py|_backends/)", line):
            if not name.startswith("_"):  # a connector, or a file inside _backends/
                if "_connectors/" not in line:
                    continue
                name = f"_connectors/{name}"
            layers[name] = layer
    return layers


def _layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The layer of a module named by its path below certpoll/ (``_connectors/_base.py``)."""
    if module.startswith("_backends/"):
        return layers["_backends/"]
    return layers.get(module)


def _imports(path: Path) -> set[str]:
    """The certpoll modules ``path`` imports (anywhere in it), by path below certpoll/."""
    package = path.parent.relative_to(PACKAGE).parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.ImportFrom) and node.level):
            continue
        base = list(package[: len(package) - (node.level - 1)])
        target = [*base, *(node.module.split(".") if node.module else [])]
        for alias in node.names:
            for candidate in ([*target, alias.name], target):
                module = "/".join(candidate)
                if (PACKAGE / f"{module}.py").is_file():
                    found.add(f"{module}.py")
                    break
                if (PACKAGE / module).is_dir():
                    found.add(f"{module}/")
                    break
    return found


def test_every_import_stays_in_its_layer_or_goes_down() -> None:
    layers = _layers()
    assert len(set(layers.values())) >= 5, "the parser found no layers: the picture changed"
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        own = _layer_of(module, layers)
        if own is None:  # __init__.py, instrumentation.py (re-exports), testing/ (beside)
            continue
        for imported in _imports(path):
            if imported.startswith("testing/"):
                assert own == max(layers.values()), f"{module} imports the simulator"
                continue
            below = _layer_of(imported, layers)
            assert below is not None, f"{module} imports {imported}, which has no layer"
            if below > own:
                upward.append(f"{module} (layer {own}) imports {imported} (layer {below})")
    assert not upward
