"""``make mutate``: mutation testing of the core modules, and each module's score.

Runs ``mutmut run`` from a clean ``mutants/`` (mutmut keeps the verdicts of unchanged
functions even when the tests changed, so a reused cache can report a killed mutant as
surviving and the reverse), then prints for each module of ``[tool.mutmut] only_mutate``::

    score = (killed + timeout) / (mutants - equivalent)

A timeout counts as detected: the tests noticed the change by never finishing. The
equivalent mutants (changes no test can notice because the behaviour is the same) are the
ones listed in docs/testing-internals.md, each with its reason; a listed mutant that a test
kills, or that no longer exists, is reported so the list stays true.

Exits 1 when a module scores under ``--min-score`` or a mutant was left unchecked.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.mutmut_focus import FOCUSED_TESTS, module_of

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
EQUIVALENTS_DOC = ROOT / "docs" / "testing-internals.md"

# mutmut's exit codes per mutant (mutmut/stats.py): 1 and 3 are failing tests, 0 a passing
# run, the rest of "timeout" the wall-clock or CPU limit (SIGXCPU, or its exit statuses).
KILLED = frozenset({1, 3})
SURVIVED = frozenset({0})
TIMEOUT = frozenset({24, -24, 36, 152, 255})
#: No test runs the mutated code ("no tests"): unchecked, unless listed as equivalent (a
#: ``Protocol`` method's default, which no code ever runs).
NO_TESTS = frozenset({33})
#: The verdicts an equivalent mutant may have.
UNDETECTED = SURVIVED | NO_TESTS

_EQUIVALENT_ROW = re.compile(r"^\|\s*`(?P<name>certpoll\.[^`]+__mutmut_\d+)`")


@dataclass(frozen=True, slots=True)
class ModuleScore:
    """The verdicts on one module's mutants."""

    module: str
    mutants: int
    killed: int
    timeout: int
    equivalent: int
    #: Surviving mutants not listed as equivalent: the gaps in the tests.
    survivors: tuple[str, ...]
    #: Mutants with no verdict: not run, no test, or a crash of the run itself.
    unchecked: tuple[str, ...]

    @property
    def score(self) -> float:
        """Detected mutants over the non-equivalent ones, in percent."""
        real = self.mutants - self.equivalent
        return 100.0 if real == 0 else 100.0 * (self.killed + self.timeout) / real


def equivalent_mutants(doc: str) -> frozenset[str]:
    """The mutant names of the table rows of docs/testing-internals.md."""
    return frozenset(
        match["name"] for line in doc.splitlines() if (match := _EQUIVALENT_ROW.match(line))
    )


def score_module(
    module: str, exit_codes: Mapping[str, int | None], equivalent: Iterable[str]
) -> ModuleScore:
    """Count one module's verdicts; a listed equivalent only counts when it went undetected
    (it survived, or no test runs it)."""
    listed = frozenset(equivalent)
    counts: Counter[str] = Counter()
    survivors: list[str] = []
    unchecked: list[str] = []
    for name, code in sorted(exit_codes.items()):
        if code in KILLED:
            counts["killed"] += 1
        elif code in TIMEOUT:
            counts["timeout"] += 1
        elif code in UNDETECTED and name in listed:
            counts["equivalent"] += 1
        elif code in SURVIVED:
            survivors.append(name)
        else:
            unchecked.append(name)
    return ModuleScore(
        module=module,
        mutants=len(exit_codes),
        killed=counts["killed"],
        timeout=counts["timeout"],
        equivalent=counts["equivalent"],
        survivors=tuple(survivors),
        unchecked=tuple(unchecked),
    )


def stale_equivalents(equivalent: Iterable[str], exit_codes: Mapping[str, int | None]) -> list[str]:
    """Listed equivalents that a test kills or that mutmut no longer generates."""
    return sorted(name for name in equivalent if exit_codes.get(name, -1) not in UNDETECTED)


def check_config(pyproject: Path) -> list[str]:
    """The modules ``[tool.mutmut]`` mutates, once checked against ``FOCUSED_TESTS``.

    mutmut reads its settings from pyproject.toml only; the plugin needs the same modules and
    test files, so a difference is an error, not a silent change of what is measured.
    """
    config = tomllib.loads(pyproject.read_text("utf-8"))["tool"]["mutmut"]
    modules = [path.removesuffix(".py").replace("/", ".") for path in config["only_mutate"]]
    focused = sorted({path for paths in FOCUSED_TESTS.values() for path in paths})
    if sorted(modules) != sorted(FOCUSED_TESTS):
        raise SystemExit(f"only_mutate {modules} differs from FOCUSED_TESTS")
    if sorted(config["pytest_add_cli_args_test_selection"]) != focused:
        raise SystemExit(f"pytest_add_cli_args_test_selection differs from {focused}")
    return modules


def exit_codes_of(module: str) -> dict[str, int | None]:
    """mutmut's verdict per mutant of ``module``, from its ``.meta`` file."""
    meta = MUTANTS / (module.replace(".", "/") + ".py.meta")
    if not meta.exists():
        return {}
    codes: dict[str, int | None] = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
    return codes


def report(scores: Sequence[ModuleScore], stale: Sequence[str]) -> str:
    """The table ``make mutate`` prints, then every gap by name."""
    lines = [
        f"{'module':<30} {'mutants':>7} {'killed':>6} {'timeout':>7} {'equiv':>5} "
        f"{'survived':>8} {'unchecked':>9} {'score':>7}"
    ]
    for s in scores:
        lines.append(
            f"{s.module:<30} {s.mutants:>7} {s.killed:>6} {s.timeout:>7} {s.equivalent:>5} "
            f"{len(s.survivors):>8} {len(s.unchecked):>9} {s.score:>6.1f}%"
        )
    for s in scores:
        lines.extend(f"  survived:  {name}   (mutmut show {name})" for name in s.survivors)
        lines.extend(f"  unchecked: {name}" for name in s.unchecked)
    lines.extend(f"  listed as equivalent but killed or gone: {name}" for name in stale)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--max-children", type=int, default=2, help="parallel mutant runs")
    parser.add_argument("--min-score", type=float, default=95.0, help="percent, per module")
    parser.add_argument(
        "--scores-only", action="store_true", help="print the scores of the last run; run nothing"
    )
    args = parser.parse_args(argv)

    modules = check_config(ROOT / "pyproject.toml")
    if not args.scores_only:
        shutil.rmtree(MUTANTS, ignore_errors=True)
        mutmut = Path(sys.executable).with_name("mutmut")
        command = [str(mutmut), "run", "--max-children", str(args.max_children)]
        subprocess.run(command, cwd=ROOT, check=True)  # noqa: S603 (our own fixed command)

    equivalent = equivalent_mutants(EQUIVALENTS_DOC.read_text("utf-8"))
    scores: list[ModuleScore] = []
    stale: list[str] = []
    for module in modules:
        codes = exit_codes_of(module)
        listed = [name for name in equivalent if module_of(name) == module]
        scores.append(score_module(module, codes, listed))
        stale.extend(stale_equivalents(listed, codes))
    print(report(scores, stale))
    failed = [s for s in scores if s.score < args.min_score or s.unchecked or not s.mutants]
    return 1 if failed or stale else 0


if __name__ == "__main__":
    sys.exit(main())
