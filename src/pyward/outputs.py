"""Outputs for CI and for people: a report as SARIF, HTML or JSON, and the run's CI verdict.

* `pyward report REPORT --format sarif|html|json [-o FILE]` renders a report
  (integrations/sarif.py, integrations/html_report.py);
* `pyward run --sarif FILE` writes the SARIF log at the end of the run, when
  the report is written;
* `pyward run --fail-on denied,tamper,heal` turns a run that succeeded into
  a failure when any of those happened (`FAIL_ON`, exit statuses below).

The verdict on a report (verified, altered, incomplete) is report.verify's;
nothing here re-checks integrity.
"""
from __future__ import annotations

import os
import sys

from .config import FAIL_ON, check_fail_on  # noqa: F401 - check_fail_on: the option's check

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from .config import Settings
    from .runner import Session

FORMATS = ("json", "sarif", "html")

# --- --fail-on ----------------------------------------------------------------


def fail_on(settings: Settings) -> list[str]:
    """The kinds of events that fail a run, in FAIL_ON's order (`--fail-on-heal` is `--fail-on heal`)."""
    from .config import as_list

    wanted = set(as_list(settings.get("fail_on")))
    if "all" in wanted:
        wanted = set(FAIL_ON)
    if settings.get("heal.fail_on_heal"):
        wanted.add("heal")
    return [kind for kind in FAIL_ON if kind in wanted]


def happened(events: list[Any]) -> dict[str, int]:
    """How many denials, tamper alerts and heals the journal's events hold (as the report's summary counts them)."""
    from .journal import summarize

    counts = summarize([{"engine": e.engine, "kind": e.kind, "severity": e.severity, "name": e.name,
                         "details": e.details} for e in events], None)
    return {"denied": counts["denied"], "tamper": counts["tamper_alerts"], "heal": counts["healed"]}


def exit_status(session: Session, status: int) -> int:
    """The exit status of a run whose program ended with `status`, under --fail-on."""
    if status != 0:  # the program's own failure always wins
        return status
    kinds = fail_on(session.settings)
    if not kinds:
        return 0
    counts = happened(list(session.journal.events))
    hits = [kind for kind in kinds if counts[kind]]
    if not hits:
        return 0
    new = FAIL_ON[hits[0]]
    words = {"denied": "denied", "tamper": "tamper alert", "heal": "healed"}
    what = ", ".join(f"{counts[k]} {words[k]}" for k in hits)
    session.journal.emit("pyward", "fail_on", ",".join(hits), severity="error", where="",
                         message=f"the program succeeded, but {what}: --fail-on {','.join(kinds)}: exit status {new}",
                         details={"fail_on": kinds, "happened": {k: counts[k] for k in hits}, "exit_status": new})
    return new


# --- rendering ------------------------------------------------------------------


def verdict(data: dict[str, Any]) -> tuple[str, str | None]:
    """(verified | altered | incomplete, what is wrong) for a loaded report, from report.verify."""
    from . import report

    result = report.verify(data)
    if not result.ok:
        return "altered", result.problem
    ended = report.incomplete(data)
    if ended is not None:  # a run whose end was never recorded
        return "incomplete", ended
    return "verified", None


def render(data: dict[str, Any], fmt: str, source: str | None = None,
           judged: tuple[str, str | None] | None = None) -> tuple[str, str, str | None]:
    """(text, verdict, problem) of a loaded report in `fmt` (FORMATS); `judged`: the
    verdict already made (a journal a run left, see load_journal)."""
    import json

    word, problem = judged or verdict(data)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n", word, problem
    if fmt == "sarif":
        from .integrations import sarif

        return sarif.dumps(sarif.to_sarif(data, word)), word, problem
    if fmt == "html":
        from .integrations import html_report

        return html_report.render(data, word, problem, source), word, problem
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def write_text(path: str, text: str) -> None:
    """Write atomically (a CI step never picks up half a file); the temporary file is
    PATH.PID.tmp, as the report's (the sandbox lets pyward write exactly those)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_sarif(session: Session, data: dict[str, Any]) -> str | None:
    """`--sarif FILE` at the end of a run: None when written, else the error line to show."""
    from .config import display_path
    from .integrations import sarif

    path = session.settings["sarif"]
    try:
        write_text(path, sarif.dumps(sarif.to_sarif(data, verdict(data)[0])))
    except OSError as exc:
        return f"SARIF not written to {display_path(path)}: {exc.strerror or exc}"
    return None


# --- the command ----------------------------------------------------------------


def add_commands(subparsers: Any, handlers: dict[str, Any]) -> None:
    report = subparsers.add_parser(
        "report", help="render a report as SARIF (for code scanning), HTML (for people) or JSON",
        allow_abbrev=False,
        description="Render REPORT in another format. sarif: SARIF 2.1.0, one result per denial, tamper alert, "
                    "heal and unhealed crash, for CI code scanning; html: one self-contained page (no network) "
                    "with the verdict, the run, the events (filterable), the summary and the integrity data; "
                    "json: the report as it is, indented. The report is verified first: exit status 0 when it "
                    "is intact, 1 when it is altered (the output is still written, and says so), 2 when it "
                    "cannot be read or the output cannot be written.")
    report.add_argument("report", metavar="REPORT")
    report.add_argument("--format", "-f", choices=FORMATS, default="json", help="output format (default: json)")
    report.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    handlers["report"] = cmd_report


def _fail(message: str, status: int = 2) -> int:
    sys.stderr.write(f"[pyward][error] {message}\n")
    return status


def load_journal(path: str) -> tuple[dict[str, Any], tuple[str, str | None]] | str:
    """The journal a run that did not end normally left at its report path, shaped
    like a report (run, events, summary, integrity as far as it was sealed), with
    its verdict (incomplete or altered); or what makes it unreadable."""
    from .checkpoint import describe, verify_journal
    from .journal import summarize

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    judged = verify_journal(raw)
    if judged.status == 2:
        return f"{path}: {judged.problem}"
    import json

    events = []
    for line in raw.split(b"\n")[1:1 + judged.events + judged.checkpoint]:
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):
            break
        if isinstance(item, dict) and "checkpoint" not in item:
            events.append(item)
    bare = [{k: v for k, v in e.items() if k != "chain"} for e in events]
    data = {"format": "pyward.journal", "run": judged.run, "events": events,
            "summary": summarize(bare, (judged.ended or {}).get("exit_status")),
            "integrity": {"events": judged.events, "checkpoint": judged.checkpoint, "sealed": judged.sealed,
                          "chain_head": events[-1]["chain"] if events else None}}
    word = ("altered", judged.problem) if judged.status == 1 else ("incomplete", describe(judged))
    return data, word


def cmd_report(args: argparse.Namespace) -> int:
    from . import report

    try:
        return _report(args)
    except report.MALFORMED as exc:  # a crafted report or journal: one line and status 2, never a traceback
        return _fail(report.malformed(args.report, exc))


def _report(args: argparse.Namespace) -> int:
    from . import report
    from .checkpoint import is_journal

    judged = None
    if is_journal(args.report):  # a run that did not end normally left its journal there
        loaded = load_journal(args.report)
        if isinstance(loaded, str):
            return _fail(loaded)
        data, judged = loaded
    else:
        try:
            _, data = report.load(args.report)
        except report.ReportError as exc:
            return _fail(str(exc))
    text, word, problem = render(data, args.format, args.report, judged)
    if args.output:
        try:
            write_text(args.output, text)
        except OSError as exc:
            return _fail(f"cannot write {args.output}: {exc.strerror or exc}")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if word == "altered":
        sys.stderr.write(f"[pyward] report: {args.report}: ALTERED: {problem}\n")
        return 1
    if word == "incomplete":
        sys.stderr.write(f"[pyward] report: {args.report}: {problem or 'the run did not end normally'}\n")
    return 0
