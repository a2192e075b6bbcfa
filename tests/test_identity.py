"""Identity (service, host, pid, k8s.*) and the policy revision: in the report, the run.start event,
the journal on disk, and on every event."""
from __future__ import annotations

import json
import os
from importlib import resources

import jsonschema
import pytest

from helpers import clean_env, pyward
from pyward.config import load
from pyward.identity import effective_policy, policy_revision, resource_attributes

EVENT_SCHEMA = json.loads(resources.files("pyward.schema").joinpath("event-1.json").read_text())
REPORT_SCHEMA = json.loads(resources.files("pyward.schema").joinpath("report-1.json").read_text())

DENIES = ("import os\nfor name in ('A', 'B'):\n    try:\n        os.environ.get(name)\n"
          "    except PermissionError:\n        pass\n")


def run_report(tmp_path, *args: str, env: dict[str, str] | None = None) -> dict:
    (tmp_path / "app.py").write_text(DENIES)
    result = pyward("run", "-q", "--report", "r.json", *args, "app.py", cwd=tmp_path, env=env or clean_env())
    assert result.returncode == 0, result.stderr
    return json.loads((tmp_path / "r.json").read_text())


def test_schemas_are_valid():
    jsonschema.Draft202012Validator.check_schema(EVENT_SCHEMA)
    jsonschema.Draft202012Validator.check_schema(REPORT_SCHEMA)


def test_identity_in_the_report_and_the_start_event(tmp_path):
    env = clean_env(OTEL_SERVICE_NAME="billing", K8S_POD_NAME="billing-7d9f", K8S_NAMESPACE_NAME="prod",
                    OTEL_RESOURCE_ATTRIBUTES="k8s.cluster.name=east%201,team=core")
    data = run_report(tmp_path, "--deny-env", env=env)
    jsonschema.validate(data, REPORT_SCHEMA, cls=jsonschema.Draft202012Validator)
    identity = data["run"]["identity"]
    assert identity == {"service.name": "billing", "host.name": os.uname().nodename,
                        "process.pid": data["run"]["pid"], "k8s.pod.name": "billing-7d9f",
                        "k8s.namespace.name": "prod", "k8s.cluster.name": "east 1"}
    start = data["events"][0]
    assert start["kind"] == "run.start" and start["details"]["identity"] == identity
    assert start["details"]["policy"] == data["run"]["policy"]


def test_service_name_from_config_then_script_name(tmp_path):
    assert run_report(tmp_path)["run"]["identity"]["service.name"] == "app"
    (tmp_path / "pyward.toml").write_text('service = "from-config"\n')
    assert run_report(tmp_path)["run"]["identity"]["service.name"] == "from-config"
    env = clean_env(OTEL_SERVICE_NAME="from-env")
    assert run_report(tmp_path, env=env)["run"]["identity"]["service.name"] == "from-env"


def test_every_event_carries_the_policy_revision(tmp_path):
    data = run_report(tmp_path, "--deny-env")
    policy = data["run"]["policy"]
    assert policy["revision"] == f"sha256:{policy['revision'][7:]}" and policy["id"] == policy["revision"][7:19]
    assert policy["mode"] == "enforce"
    denials = [e for e in data["events"] if e["kind"] == "denied"]
    assert len(denials) == 2
    for event in data["events"]:
        assert event["policy"] == policy["id"]
        jsonschema.validate({k: v for k, v in event.items() if k != "chain"}, EVENT_SCHEMA,
                            cls=jsonschema.Draft202012Validator)


def test_the_revision_follows_the_rules_not_where_they_came_from(tmp_path):
    by_flag = run_report(tmp_path, "--allow-read=data", "--deny-env")["run"]["policy"]
    (tmp_path / "pyward.toml").write_text('[permissions]\nread = ["./data"]  # a comment\n\n'
                                          '[permissions.deny]\nenv = true\n')
    by_file = run_report(tmp_path)["run"]["policy"]
    assert by_file["revision"] == by_flag["revision"]
    assert by_file["source"] == str(tmp_path / "pyward.toml") and by_flag["source"] is None
    other = run_report(tmp_path, "--no-config", "--allow-read=other", "--deny-env")["run"]["policy"]
    assert other["revision"] != by_flag["revision"]
    watch = run_report(tmp_path, "--mode", "watch")["run"]["policy"]
    assert watch["revision"] != by_file["revision"] and watch["mode"] == "watch"


def test_effective_policy_is_canonical(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load(use_files=False, overrides={"permissions.read": "b,a,./a", "permissions.net": True})
    effective = effective_policy(settings)
    assert effective["permissions"]["read"]["allow"] == sorted({str(tmp_path / "a"), str(tmp_path / "b")})
    assert effective["permissions"]["net"] == {"all": True, "allow": [], "deny": []}
    assert policy_revision(settings) == policy_revision(load(use_files=False, overrides={
        "permissions.read": "a,b", "permissions.net": True}))


@pytest.mark.parametrize("value, expected", [
    ("a=1,b=two%2Cthree", {"a": "1", "b": "two,three"}),
    (" service.name = x ,broken,=v", {"service.name": "x"}),
    ("", {}),
])
def test_resource_attributes(value, expected):
    assert resource_attributes({"OTEL_RESOURCE_ATTRIBUTES": value}) == expected


def test_the_record_of_a_run_without_an_end_carries_identity_and_revision(tmp_path):
    (tmp_path / "app.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    pyward("run", "-q", "--report", "r.json", "app.py", cwd=tmp_path)
    data = json.loads((tmp_path / "r.json").read_text())  # the recorder's report of a run without an end
    assert data["format"] == "pyward.report" and data["run"]["exit_status"] is None
    assert data["run"]["identity"]["service.name"] == "app"
    assert data["events"] and all(item["policy"] == data["run"]["policy"]["id"] for item in data["events"]
                                  if item["engine"] != "pyward" or item["kind"] != "run.end")
