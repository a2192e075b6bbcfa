"""SARIF output: `pyward run --sarif` and `pyward report --format sarif`, validated against SARIF 2.1.0's schema."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from ci_programs import BUGGY, BUGGY_LINE, ENFORCE, FINDINGS, PATCH_LINE, PEEK_LINE, SCAN_LINE, run
from helpers import pyward
from pyward import __version__
from pyward.integrations import sarif
from pyward.policy import PERMISSIONS

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
DOCS = Path(__file__).resolve().parents[2] / "docs" / "ci.md"


def validate(log: dict) -> None:
    jsonschema.Draft4Validator.check_schema(SCHEMA)
    validator = jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def by_rule(log: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for result in log["runs"][0]["results"]:
        out.setdefault(result["ruleId"], []).append(result)
    return out


def place(result: dict) -> tuple[str, int | None]:
    physical = result["locations"][0]["physicalLocation"]
    return physical["artifactLocation"]["uri"], physical.get("region", {}).get("startLine")


@pytest.fixture(scope="module")
def findings(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("findings")
    result = run(tmp_path, FINDINGS, *ENFORCE, "--sarif", "out.sarif")
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr
    return tmp_path, json.loads((tmp_path / "out.sarif").read_text())


def test_run_sarif_is_valid_sarif_2_1_0(findings):
    _, log = findings
    validate(log)
    assert log["version"] == "2.1.0"
    driver = log["runs"][0]["tool"]["driver"]
    assert driver["name"] == "pyward" and driver["version"] == __version__
    assert [r["id"] for r in driver["rules"]] == list(sarif.RULES)


def test_one_result_per_finding_at_the_programs_line(findings):
    _, log = findings
    rules = by_rule(log)
    assert sorted(rules) == ["pyward.sandbox.denied.env", "pyward.sandbox.denied.read", "pyward.tamper.replaced"]
    (read,) = rules["pyward.sandbox.denied.read"]
    assert place(read) == ("app.py", SCAN_LINE)
    assert read["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] == "SRCROOT"
    assert read["level"] == "warning"
    (env,) = rules["pyward.sandbox.denied.env"]
    assert place(env) == ("app.py", PEEK_LINE)
    assert "X<script>" in env["message"]["text"]  # SARIF is JSON: text stays text
    (alert,) = rules["pyward.tamper.replaced"]
    assert place(alert) == ("app.py", PATCH_LINE) and alert["level"] == "error"
    driver_rules = [r["id"] for r in log["runs"][0]["tool"]["driver"]["rules"]]
    for result in log["runs"][0]["results"]:
        assert driver_rules[result["ruleIndex"]] == result["ruleId"]


def test_repeats_beyond_the_journal_limit_are_one_result_with_the_count(findings):
    tmp_path, log = findings
    (read,) = by_rule(log)["pyward.sandbox.denied.read"]
    assert read["occurrenceCount"] == 150
    assert "seen 150 times" in read["message"]["text"]
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["summary"]["denied"] == 151  # the report agrees: 150 reads and one variable


def test_fingerprints_are_stable_across_runs(findings, tmp_path):
    _, first = findings
    result = run(tmp_path, FINDINGS, *ENFORCE, "--sarif", "again.sarif")
    assert result.returncode == 0, result.stderr
    second = json.loads((tmp_path / "again.sarif").read_text())

    def prints(log):
        return {r["ruleId"]: r["partialFingerprints"] for r in log["runs"][0]["results"]}

    assert prints(first) == prints(second)  # another directory, pid and time: same findings
    assert len({p[sarif.FINGERPRINT] for p in prints(first).values()}) == 3


def test_report_command_gives_the_same_sarif_as_the_run(findings):
    tmp_path, log = findings
    out = pyward("report", "report.json", "--format", "sarif", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == log
    assert log["runs"][0]["properties"]["pyward"]["verdict"] == "verified"
    assert log["runs"][0]["invocations"][0]["exitCode"] == 0


def test_heal_is_a_result_at_the_crashing_line(tmp_path):
    result = run(tmp_path, BUGGY, "--no-config", "--heal", "--sarif", "heal.sarif")
    assert result.returncode == 0, result.stderr
    log = json.loads((tmp_path / "heal.sarif").read_text())
    validate(log)
    rules = by_rule(log)
    assert "pyward.heal.healed" in rules, rules
    assert place(rules["pyward.heal.healed"][0]) == ("app.py", BUGGY_LINE)


def test_rule_ids_cover_every_permission_and_tamper_change():
    for perm in PERMISSIONS:
        assert sarif.rule_of({"engine": "sandbox", "kind": "denied", "details": {"permission": perm}}) \
            == f"pyward.sandbox.denied.{perm}"
    changes = {"replaced": "replaced", "deleted": "deleted", "code changed": "code_changed",
               "__code__ swapped": "swapped", "cleared": "cleared", "refused": "refused", "odd": "alert"}
    for change, rule in changes.items():
        event = {"engine": "tamper", "kind": "alert", "severity": "alert", "details": {"change": change}}
        assert sarif.rule_of(event) == f"pyward.tamper.{rule}"
    assert sarif.rule_of({"engine": "tamper", "kind": "alert", "severity": "alert", "name": "sys.modules['x']",
                          "details": {}}) == "pyward.tamper.module_replaced"
    assert sarif.rule_of({"engine": "tamper", "kind": "authorised", "severity": "info"}) is None
    assert sarif.rule_of({"engine": "heal", "kind": "unhealed", "severity": "error"}) == "pyward.heal.unhealed"


def test_rule_ids_are_documented():
    documented = re.findall(r"^\| `(pyward\.[a-z_.]+)` \|", DOCS.read_text(), re.M)
    assert documented == list(sarif.RULES)


def test_a_result_without_a_site_points_at_the_script():
    data = {"run": {"cwd": "/p", "target": {"kind": "script", "value": "app.py"}, "exit_status": 0},
            "events": [{"engine": "tamper", "kind": "alert", "severity": "alert", "name": "os.system",
                        "message": "os.system replaced (found at exit)", "where": None, "function": None,
                        "details": {"change": "replaced"}, "seq": 1}]}
    log = sarif.to_sarif(data, "verified")
    validate(log)
    (result,) = log["runs"][0]["results"]
    assert place(result) == ("app.py", None)
