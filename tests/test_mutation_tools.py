"""``make mutate``'s own parts: the per-module focus, the scores and the equivalents list.

``make mutate`` itself is not part of ``make test`` (it runs for minutes); these tests keep
its configuration from drifting: pyproject.toml, the focus plugin and the list of
equivalent mutants in docs/testing-internals.md must agree with each other and with the
repository.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tools.mutate import (
    EQUIVALENTS_DOC,
    ROOT,
    ModuleScore,
    check_config,
    equivalent_mutants,
    score_module,
    stale_equivalents,
)
from tools.mutmut_focus import (
    FOCUSED_TESTS,
    focused_files,
    module_of,
    pytest_collection_modifyitems,
)


def test_the_mutmut_settings_agree_with_the_focus_plugin() -> None:
    assert check_config(ROOT / "pyproject.toml") == list(FOCUSED_TESTS)


def test_every_focused_file_and_mutated_module_exists() -> None:
    for module, files in FOCUSED_TESTS.items():
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file()
        for path in files:
            assert (ROOT / path).is_file(), path


def test_every_listed_equivalent_names_a_mutated_module() -> None:
    listed = equivalent_mutants(EQUIVALENTS_DOC.read_text("utf-8"))
    assert listed, "docs/testing-internals.md lists no equivalent mutant"
    assert {module_of(name) for name in listed} <= set(FOCUSED_TESTS)


def test_the_table_rows_are_read_and_nothing_else() -> None:
    doc = "\n".join(
        [
            "| mutant | change | why |",
            "|---|---|---|",
            "| `certpoll._triage.x__retry_after_of__mutmut_4` | `Retry-After` | headers |",
            "Prose that names `certpoll._triage.x_parse_retry_after__mutmut_1` is not a row.",
            "| `certpoll._gate.xǁUpstreamGateǁhold__mutmut_12` | `x` | y |",
        ]
    )
    assert equivalent_mutants(doc) == {
        "certpoll._triage.x__retry_after_of__mutmut_4",
        "certpoll._gate.xǁUpstreamGateǁhold__mutmut_12",
    }


def test_a_mutant_meets_only_its_own_modules_tests() -> None:
    assert focused_files("certpoll._triage.xǁTriageǁresponse__mutmut_11") == set(
        FOCUSED_TESTS["certpoll._triage"]
    )
    everything = {path for paths in FOCUSED_TESTS.values() for path in paths}
    for outside_a_mutant in ("", "stats", "fail", "list_all_tests"):
        assert focused_files(outside_a_mutant) == everything


class _Item:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid


class _Hook:
    def __init__(self) -> None:
        self.deselected: list[object] = []

    def pytest_deselected(self, *, items: list[object]) -> None:
        self.deselected.extend(items)


class _Config:
    def __init__(self) -> None:
        self.hook = _Hook()


def test_the_plugin_deselects_other_modules_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUTANT_UNDER_TEST", "certpoll._poller.xǁPollerǁpoll__mutmut_3")
    own = _Item("tests/test_poller.py::test_a")
    other = _Item("tests/test_triage.py::test_b")
    items = [own, other]
    config = _Config()
    pytest_collection_modifyitems(config, items)  # type: ignore[arg-type]
    assert items == [own]
    assert config.hook.deselected == [other]


codes = st.sampled_from([None, 0, 1, 3, 5, 24, -24, 33, 36, 152, 255, -9, -11])


@given(st.dictionaries(st.from_regex(r"m\.x_f__mutmut_[0-9]{1,3}", fullmatch=True), codes))
def test_every_mutant_is_counted_once(exit_codes: dict[str, int | None]) -> None:
    survivors = [name for name, code in exit_codes.items() if code == 0]
    equivalent = survivors[: len(survivors) // 2]
    s = score_module("m", exit_codes, equivalent)
    assert s.mutants == len(exit_codes)
    parts = s.killed + s.timeout + s.equivalent + len(s.survivors) + len(s.unchecked)
    assert parts == s.mutants
    assert s.equivalent == len(equivalent)
    assert 0.0 <= s.score <= 100.0


def test_the_score_leaves_out_equivalents_and_counts_timeouts_as_detected() -> None:
    exit_codes: dict[str, int | None] = {"a": 1, "b": 1, "c": -24, "d": 0, "e": 0, "f": None}
    s = score_module("m", exit_codes, ["e"])
    assert s == ModuleScore(
        module="m",
        mutants=6,
        killed=2,
        timeout=1,
        equivalent=1,
        survivors=("d",),
        unchecked=("f",),
    )
    assert s.score == pytest.approx(60.0)  # 3 detected of 5 real


def test_an_equivalent_that_a_test_kills_or_that_is_gone_is_stale() -> None:
    exit_codes: dict[str, int | None] = {"a": 0, "b": 1}
    assert stale_equivalents(["a", "b", "gone"], exit_codes) == ["b", "gone"]


def test_an_equivalent_no_test_runs_counts_as_equivalent_and_only_if_listed() -> None:
    exit_codes: dict[str, int | None] = {"a": 33, "b": 33, "c": 1}
    s = score_module("m", exit_codes, ["a"])
    assert (s.equivalent, s.survivors, s.unchecked) == (1, (), ("b",))
    assert s.score == pytest.approx(50.0)  # 1 detected of 2 real: "b" is no equivalent
    assert stale_equivalents(["a"], exit_codes) == []
