"""scripts/test-suite's own logic: which paths each phase runs, and the end-of-run tables."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "test-suite"


@pytest.fixture(scope="module")
def suite():
    loader = importlib.machinery.SourceFileLoader("test_suite_script", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def junit(path: Path, cases: dict[str, float]) -> Path:
    rows = "".join(
        f'<testcase classname="tests.{name.split("::")[0]}" name="{name.split("::")[1]}" time="{seconds}"/>'
        for name, seconds in cases.items()
    )
    path.write_text(f'<testsuites><testsuite name="pytest" tests="{len(cases)}">{rows}</testsuite></testsuites>')
    return path


def test_the_slowest_tests_of_both_phases_are_listed_slowest_first(suite, tmp_path, capsys):
    first = junit(tmp_path / "phase-0.xml", {"unit.a::test_quick": 0.1, "integration.b::test_slow": 40.0})
    second = junit(tmp_path / "phase-1.xml", {"cluster.c::test_install": 300.5, "k8s.d::test_mid": 12.0})
    suite.print_slowest([first, second, tmp_path / "missing.xml"], how_many=3)
    lines = [line for line in capsys.readouterr().out.splitlines() if " s  " in line]
    assert [line.split("  ")[-1] for line in lines] == [
        "tests.cluster.c::test_install",
        "tests.integration.b::test_slow",
        "tests.k8s.d::test_mid",
    ]
    assert lines[0].strip().startswith("300.5 s")


def test_no_report_prints_nothing(suite, tmp_path, capsys):
    suite.print_slowest([tmp_path / "missing.xml"])
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("args", "wanted", "expected"),
    [
        ([], {"unit", "cluster"}, [["tests/unit"], ["tests/cluster"]]),
        (["tests/integration/x.py", "-x"], {"unit", "integration", "cluster"}, [["tests/integration/x.py"], []]),
        (["tests"], {"compose", "k8s"}, [["tests/compose"], ["tests/k8s"]]),
        ([], {"unit", "integration", "compose"}, [["tests/compose", "tests/integration", "tests/unit"], []]),
    ],
)
def test_paths_on_the_command_line_narrow_the_phases(suite, args, wanted, expected):
    per_phase, others = suite.split_arguments(args, wanted)
    assert per_phase == expected
    assert others == [arg for arg in args if not arg.startswith("tests")]
