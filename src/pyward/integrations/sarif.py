"""A report as SARIF 2.1.0, for code scanning in CI (GitHub, GitLab, Azure DevOps...).

One result per finding: a sandbox denial, a tamper alert, a heal (a guard
made, or a stored guard that fired) and an unhealed crash.  Each kind of
finding has a stable rule id (`RULES`, documented in docs/ci.md); the
location is the program's `file:line` that caused it; `partialFingerprints`
hash what the finding is and where, never pids or times, so that the same
finding in the next run is recognised as the same.  Identical findings (the
same rule, place and subject, as a loop produces, or the repeats the journal
only counted) are one result with its `occurrenceCount`.

Offline only: this runs in `pyward report` and at the end of a run, never
inside the program while it runs.
"""
from __future__ import annotations

import hashlib
import re

from .._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT = "pywardFinding/v1"

#: rule id -> (name, short description, default level, help).  Stable: CI
#: systems key their alerts on these; add, never rename.
RULES: dict[str, tuple[str, str, str, str]] = {
    **{f"pyward.sandbox.denied.{perm}": (
        f"Denied{perm.capitalize()}", f"the sandbox denied a {perm} operation the policy does not allow", "warning",
        f"The program attempted a '{perm}' operation that pyward's policy does not allow, and it was denied. "
        f"Allow it with --allow-{perm}=LIST or the [tool.pyward.permissions] {perm} key if it is intended.")
        for perm in ("read", "write", "net", "run", "env", "ffi", "import")},
    "pyward.sandbox.denied": (
        "Denied", "the sandbox denied an operation the policy does not allow", "warning",
        "The program attempted an operation that pyward's policy does not allow, and it was denied."),
    "pyward.sandbox.policy_tainted": (
        "PolicyTainted", "the sandbox's policy was changed while the program ran", "error",
        "Something changed pyward's permission policy from inside the program."),
    "pyward.tamper.replaced": (
        "TamperReplaced", "a sealed function or object was replaced", "error",
        "A function or object that pyward sealed at start was rebound to something else."),
    "pyward.tamper.deleted": (
        "TamperDeleted", "a sealed function or object was deleted", "error",
        "A function or object that pyward sealed at start was removed from its namespace."),
    "pyward.tamper.code_changed": (
        "TamperCodeChanged", "the code of a sealed function was rewritten", "error",
        "The code object of a function pyward sealed at start changed."),
    "pyward.tamper.swapped": (
        "TamperSwapped", "an attribute of a sealed function was swapped", "error",
        "An attribute of a sealed function (its code, defaults, globals...) was swapped for another."),
    "pyward.tamper.cleared": (
        "TamperCleared", "a sealed namespace was cleared", "error",
        "A namespace holding sealed functions was cleared."),
    "pyward.tamper.refused": (
        "TamperRefused", "a change to a sealed target was refused (--fail-closed)", "error",
        "The program tried to change a sealed target; pyward refused the change."),
    "pyward.tamper.module_replaced": (
        "TamperModuleReplaced", "a module in sys.modules was replaced by another object", "error",
        "An entry of sys.modules was replaced by an object that is not the module imported."),
    "pyward.tamper.alert": (
        "TamperAlert", "a sealed target changed", "error",
        "pyward's tamper engine raised an alert about a sealed target."),
    "pyward.heal.healed": (
        "Healed", "a crash was healed by a synthesised guard", "warning",
        "The program crashed on a structural bug; pyward guarded the failing instruction so it could go on. "
        "Fix the bug: the guard only hides it."),
    "pyward.heal.fired": (
        "HealGuardFired", "a stored heal guard took effect", "note",
        "A guard from pyward's patch store took effect: the bug it covers is still in the code."),
    "pyward.heal.unhealed": (
        "Unhealed", "a crash could not be healed", "error",
        "The program crashed and pyward's heal engine could not heal it."),
}

_LEVELS = {"error": "error", "alert": "error", "warning": "warning"}  # notice, info, debug: note
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def _dict(value: object) -> dict[str, Any]:
    """`value` if it is a dict, else {}: a report's fields are checked, not trusted."""
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    """`value` if it is a list, else []."""
    return value if isinstance(value, list) else []


def rule_of(event: dict[str, Any]) -> str | None:
    """The rule id of a report event, or None when it is not a finding."""
    engine, kind, severity = event.get("engine"), event.get("kind"), event.get("severity")
    details = _dict(event.get("details"))
    if engine == "sandbox" and kind == "denied":
        rule = f"pyward.sandbox.denied.{details.get('permission')}"
        return rule if rule in RULES else "pyward.sandbox.denied"
    if engine == "sandbox" and kind == "policy.tainted":
        return "pyward.sandbox.policy_tainted"
    if engine == "tamper" and severity == "alert":
        change = str(details.get("change") or "")
        if change.endswith(" swapped"):
            change = "swapped"
        elif not change and str(event.get("name", "")).startswith("sys.modules["):
            change = "module_replaced"
        rule = f"pyward.tamper.{change.replace(' ', '_')}"
        return rule if rule in RULES else "pyward.tamper.alert"
    if engine == "heal" and kind in ("healed", "fired", "unhealed"):
        return f"pyward.heal.{kind}"
    return None


def _file_uri(path: str) -> str:
    from urllib.parse import quote

    return "file://" + quote(path if path.endswith("/") else path, safe="/:@!$&'()*+,;=-._~")


def _split_where(where: Any) -> tuple[str | None, int | None]:
    if not isinstance(where, str) or not where:
        return None, None
    file, sep, line = where.rpartition(":")
    if not sep or not line.isdigit():
        return where, None
    return file, int(line)


class _Places:
    """Paths under the run's working directory become relative to %SRCROOT%."""

    def __init__(self, cwd: Any) -> None:
        self.root = cwd.rstrip("/") + "/" if isinstance(cwd, str) and cwd.startswith("/") else None

    def relative(self, path: str) -> str:
        if self.root and path.startswith(self.root):
            return path[len(self.root):]
        return path

    def artifact(self, file: str) -> dict[str, Any] | None:
        from urllib.parse import quote

        if file.startswith("<"):  # <string>, <stdin>: no file to point at
            return None
        rel = self.relative(file)
        if not rel.startswith("/"):
            location = {"uri": quote(rel, safe="/:@!$&'()*+,;=-._~")}
            if self.root:
                location["uriBaseId"] = "SRCROOT"
            return location
        return {"uri": _file_uri(rel)}


def _location(event: dict[str, Any], places: _Places, fallback: str | None) -> dict[str, Any] | None:
    file, line = _split_where(event.get("where"))
    function = event.get("function")
    location: dict[str, Any] = {}
    artifact = places.artifact(file) if file else None
    if artifact is None and fallback:  # no site: the program as a whole
        artifact, line = places.artifact(fallback), None
    if artifact is not None:
        physical: dict[str, Any] = {"artifactLocation": artifact}
        if line is not None and line >= 1:
            physical["region"] = {"startLine": line}
        location["physicalLocation"] = physical
    if isinstance(function, str) and function:
        location["logicalLocations"] = [{"fullyQualifiedName": function, "kind": "function"}]
    return location or None


def fingerprint(rule: str, event: dict[str, Any], places: _Places) -> str:
    """What the finding is and where, stable across runs (no pid, time or sequence number)."""
    file, line = _split_where(event.get("where"))
    parts = [rule, places.relative(file) if file else "", str(line or ""), str(event.get("function") or ""),
             places.relative(str(event.get("name", "")))]
    return hashlib.sha256("\0".join(parts).encode("utf-8", "backslashreplace")).hexdigest()[:32]


def _rules() -> list[dict[str, Any]]:
    return [{"id": rule, "name": name, "shortDescription": {"text": short}, "fullDescription": {"text": help},
             "defaultConfiguration": {"level": level}, "help": {"text": help}}
            for rule, (name, short, level, help) in RULES.items()]


def results(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The SARIF results of a report (identical findings merged, in order of first occurrence)."""
    run = _dict(data.get("run"))
    places = _Places(run.get("cwd"))
    target = _dict(run.get("target"))
    fallback = target.get("value") if target.get("kind") == "script" and isinstance(target.get("value"), str) \
        else None
    if fallback and not fallback.startswith("/") and places.root:
        fallback = places.root + fallback
    index = {rule: i for i, rule in enumerate(RULES)}
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    # the one event standing for repeats the journal only counted has none of their details:
    # its rule is that of the recorded events of the same engine, kind and subject
    rules_of: dict[tuple[Any, Any, Any], str | None] = {}
    events = _list(data.get("events"))
    for event in events:
        if not isinstance(event, dict):
            continue
        details = _dict(event.get("details"))
        key = (event.get("engine"), event.get("kind"), event.get("name"))
        rule = rules_of[key] if "repeated" in details and key in rules_of else rule_of(event)
        rules_of[key] = rule
        if rule is None:
            continue
        # the one event standing for repeats the journal only counted (REPEAT_LIMIT) counts them all
        times = details.get("repeated") if type(details.get("repeated")) is int else 1
        mark = fingerprint(rule, event, places)
        seen = merged.get((rule, mark))
        if seen is not None:
            seen["occurrenceCount"] += times
            continue
        result: dict[str, Any] = {
            "ruleId": rule,
            "ruleIndex": index[rule],
            "level": _LEVELS.get(str(event.get("severity")), "note"),
            "message": {"text": str(event.get("message") or rule)},
            "partialFingerprints": {FINGERPRINT: mark},
            "occurrenceCount": times,
            "properties": {"engine": event.get("engine"), "kind": event.get("kind"),
                           "severity": event.get("severity"), "subject": event.get("name"),
                           "seq": event.get("seq")},
        }
        location = _location(event, places, fallback)
        if location is not None:
            result["locations"] = [location]
        merged[(rule, mark)] = result
    out = list(merged.values())
    for result in out:
        if result["occurrenceCount"] > 1:
            result["message"]["text"] += f" (seen {result['occurrenceCount']} times in this run)"
    return out


def to_sarif(data: dict[str, Any], verdict: str | None = None) -> dict[str, Any]:
    """The SARIF log of a loaded report; `verdict` (verified, altered, incomplete) goes in the run's properties."""
    import shlex

    run = _dict(data.get("run"))
    invocation: dict[str, Any] = {"executionSuccessful": True}
    command = run.get("command")
    if isinstance(command, list) and all(isinstance(a, str) for a in command):
        invocation["commandLine"] = shlex.join(command)
    if type(run.get("exit_status")) is int:
        invocation["exitCode"] = run["exit_status"]
    for key, field in (("start", "startTimeUtc"), ("end", "endTimeUtc")):
        if isinstance(run.get(key), str) and _TIME.match(run[key]):
            invocation[field] = run[key]
    sarif_run: dict[str, Any] = {
        "tool": {"driver": {"name": "pyward", "version": __version__, "semanticVersion": __version__,
                            "rules": _rules()}},
        "invocations": [invocation],
        "results": results(data),
        "columnKind": "unicodeCodePoints",
    }
    cwd = run.get("cwd")
    if isinstance(cwd, str) and cwd.startswith("/"):
        root = {"uri": _file_uri(cwd.rstrip("/") + "/")}
        invocation["workingDirectory"] = root
        sarif_run["originalUriBaseIds"] = {"SRCROOT": root}
    integrity = _dict(data.get("integrity"))
    sarif_run["properties"] = {"pyward": {
        "verdict": verdict, "summary": data.get("summary"), "merkleRoot": integrity.get("merkle_root"),
        "events": integrity.get("events"), "exitReason": run.get("exit_reason")}}
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [sarif_run]}


def dumps(log: dict[str, Any]) -> str:
    import json

    return json.dumps(log, indent=2) + "\n"

