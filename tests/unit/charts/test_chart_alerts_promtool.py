"""The rendered PrometheusRule through promtool (Debian's prometheus package,
scripts/system-packages): `promtool check rules` on its groups, and `promtool test rules` with one
test file per alert (tests/unit/charts/promtool/<alert>.yaml: series written for it, the alert
firing when it should and not when it should not)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.charts.monitoring import ALL_ON

PROMTOOL_TESTS = Path(__file__).parent / "promtool"
ALERT_TESTS = sorted(PROMTOOL_TESTS.glob("*.yaml"))


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("needs promtool (Debian package prometheus: scripts/system-packages)")
    return path


@pytest.fixture(scope="module")
def rules_dir(render, tmp_path_factory) -> Path:
    """rules.yaml: the groups of the PrometheusRule with every alert (the test files name it)."""
    (rule,) = [o for o in render(ALL_ON) if o["kind"] == "PrometheusRule"]
    directory = tmp_path_factory.mktemp("promtool")
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return directory


def promtool_run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_promtool_accepts_the_rendered_rules(promtool, rules_dir):
    result = promtool_run(promtool, "check", "rules", "rules.yaml", cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_every_alert_has_a_promtool_test(rules_dir):
    groups = yaml.safe_load((rules_dir / "rules.yaml").read_text())["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"]}
    assert {path.stem for path in ALERT_TESTS} == alerts


@pytest.mark.parametrize("test_file", ALERT_TESTS, ids=[path.stem for path in ALERT_TESTS])
def test_each_alert_fires_when_it_should_and_not_otherwise(promtool, rules_dir, test_file):
    shutil.copy(test_file, rules_dir / test_file.name)
    result = promtool_run(promtool, "test", "rules", test_file.name, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every test of the file names this alert (a copied file testing another one would pass too).
    tests = yaml.safe_load(test_file.read_text())["tests"]
    for test in tests:
        named = [t["alertname"] for t in test.get("alert_rule_test", [])]
        named += [t["expr"] for t in test.get("promql_expr_test", [])]
        assert named and all(test_file.stem in n for n in named), test_file.name
