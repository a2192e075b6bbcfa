"""A report as one self-contained HTML page, for a person to read.

No network: the CSS and the script are inline, and the page's Content
Security Policy lets nothing else load or run (the one script is allowed by
its hash).  Everything taken from the report is HTML-escaped: event text
comes from the program, and a `<script>` in a path or a message must stay
text.  The script only filters rows; it reads the page, never builds HTML.
"""
from __future__ import annotations

import base64
import hashlib
import json
from html import escape

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ENGINES = ("sandbox", "tamper", "heal", "pyward")
SEVERITIES = ("debug", "info", "notice", "warning", "alert", "error")

#: verdict (also its CSS class) -> the banner's title
VERDICTS = {
    "verified": "Verified: the report is intact",
    "altered": "ALTERED: the report does not match its integrity data",
    "incomplete": "Incomplete run: intact as far as it goes, but the run did not end normally",
}

_CSS = """
:root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#fff;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg);margin:0;
 padding:24px 32px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:18px 0 6px}
.verdict{padding:12px 16px;border-radius:6px;color:#fff;font-weight:600;font-size:16px}
.verdict .problem{display:block;font-weight:400;font-size:14px;margin-top:4px}
.verdict.verified{background:var(--ok)}.verdict.altered{background:var(--bad)}
.verdict.incomplete{background:var(--warn)}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0;word-break:break-all}
.counts{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}
.count{border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:110px}
.count b{display:block;font-size:20px}.count span{color:var(--muted)}
.filters{display:flex;flex-wrap:wrap;gap:12px;align-items:center;margin:8px 0 4px}
.filters input[type=search]{min-width:280px;padding:4px 8px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f6f8fa;position:sticky;top:0}
td.where,td.fn{font-family:ui-monospace,monospace;word-break:break-all}
td.msg{white-space:pre-wrap;word-break:break-word}
tr.sev-warning td.sev{color:var(--warn)}tr.sev-alert td.sev,tr.sev-error td.sev{color:var(--bad);font-weight:600}
tr.sev-debug,tr.sev-info{color:var(--muted)}
pre{margin:2px 0;white-space:pre-wrap;word-break:break-all;font-size:12px}
code{font-family:ui-monospace,monospace}
.hidden{display:none}
"""

# Filters rows by text, lowest severity and engine; keeps the shown counts up to date.
_JS = """
(function(){
  var order = {debug:0, info:1, notice:2, warning:3, alert:4, error:5};
  var text = document.getElementById('filter');
  var floor = document.getElementById('severity');
  var boxes = Array.prototype.slice.call(document.querySelectorAll('input.engine'));
  function apply(){
    var needle = text.value.toLowerCase();
    var least = order[floor.value] || 0;
    var total = 0;
    var on = {};
    boxes.forEach(function(b){ on[b.value] = b.checked; });
    document.querySelectorAll('section.engine').forEach(function(section){
      var shown = 0;
      var engineOn = on[section.getAttribute('data-engine')] !== false;
      section.querySelectorAll('tbody tr').forEach(function(row){
        var ok = engineOn && order[row.getAttribute('data-severity')] >= least &&
                 (!needle || row.textContent.toLowerCase().indexOf(needle) >= 0);
        row.classList.toggle('hidden', !ok);
        if (ok) { shown++; }
      });
      section.querySelector('.shown').textContent = String(shown);
      section.classList.toggle('hidden', !engineOn);
      total += shown;
    });
    document.getElementById('shown-total').textContent = String(total);
  }
  text.addEventListener('input', apply);
  floor.addEventListener('change', apply);
  boxes.forEach(function(b){ b.addEventListener('change', apply); });
  apply();
})();
"""


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_JS.encode()).digest()).decode()
    return f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; img-src data:"


def _e(value: Any) -> str:
    """Any value from the report as HTML text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, default=str)
    # a lone surrogate (a program's undecodable file name) cannot be written as UTF-8
    value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return escape(value, quote=True)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _meta(run: dict[str, Any]) -> str:
    target = _dict(run.get("target"))
    python = _dict(run.get("python"))
    pyward = _dict(run.get("pyward"))
    command = run.get("command")
    rows = [
        ("command", " ".join(map(str, command)) if isinstance(command, list) else command),
        ("target", f"{target.get('kind', '')} {target.get('value', '')}".strip()),
        ("working directory", run.get("cwd")),
        ("python", " ".join(str(python.get(k, "")) for k in ("implementation", "version")).strip()),
        ("pyward", pyward.get("version")),
        ("config", pyward.get("config") or "(none)"),
        ("pid", run.get("pid")),
        ("start", run.get("start")),
        ("end", run.get("end")),
        ("duration", f"{run['duration_s']} s" if isinstance(run.get("duration_s"), (int, float)) else None),
        ("exit status", run.get("exit_status")),
        ("exit reason", run.get("exit_reason")),
    ]
    items = "".join(f"<dt>{_e(k)}</dt><dd id=\"run-{_e(k.replace(' ', '-'))}\">{_e(v)}</dd>" for k, v in rows)
    return f'<dl class="meta">{items}</dl>'


def _summary(summary: dict[str, Any]) -> str:
    main = [("events", "events"), ("denied", "denied"), ("tamper_alerts", "tamper alerts"), ("healed", "healed"),
            ("internal_errors", "internal errors"), ("attempts", "attempts"), ("guard_firings", "guard firings"),
            ("degraded_runs", "degraded runs")]
    boxes = "".join(f'<div class="count"><b id="count-{key}">{_e(summary.get(key, 0))}</b><span>{label}</span></div>'
                    for key, label in main if key in summary or key in ("events", "denied", "tamper_alerts",
                                                                          "healed"))
    parts = [f'<div class="counts">{boxes}</div>']
    for key, label in (("by_engine", "by engine"), ("by_severity", "by severity")):
        table = _dict(summary.get(key))
        cells = ", ".join(f"{_e(k)}: <b>{_e(v)}</b>" for k, v in table.items())
        parts.append(f"<p>{label}: {cells or '-'}</p>")
    return "".join(parts)


def _row(event: Any) -> str:
    if not isinstance(event, dict):
        return f'<tr data-severity="error"><td colspan="8">not an event: {_e(event)}</td></tr>'
    severity = event.get("severity") if event.get("severity") in SEVERITIES else "info"
    details = event.get("details")
    detail_html = f"<details><summary>details</summary><pre>{_e(details)}</pre></details>" if details else ""
    return (f'<tr class="sev-{severity}" data-severity="{severity}">'
            f'<td class="seq">{_e(event.get("seq"))}</td>'
            f'<td class="time">{_e(event.get("time"))}</td>'
            f'<td class="sev">{_e(event.get("severity"))}</td>'
            f'<td class="kind">{_e(event.get("kind"))}</td>'
            f'<td class="name">{_e(event.get("name"))}</td>'
            f'<td class="where">{_e(event.get("where"))}</td>'
            f'<td class="fn">{_e(event.get("function"))}</td>'
            f'<td class="msg">{_e(event.get("message"))}{detail_html}</td></tr>')


def _events(events: list[Any]) -> str:
    groups: dict[str, list[Any]] = {}
    for event in events:
        engine = event.get("engine") if isinstance(event, dict) else None
        groups.setdefault(engine if isinstance(engine, str) else "?", []).append(event)
    names = [e for e in ENGINES if e in groups] + sorted(e for e in groups if e not in ENGINES)
    boxes = "".join(f'<label><input type="checkbox" class="engine" value="{_e(n)}" checked> {_e(n)}</label>'
                    for n in names)
    options = "".join(f'<option value="{s}"{" selected" if s == "debug" else ""}>{s} and up</option>'
                      for s in SEVERITIES)
    parts = [f'<div class="filters"><input type="search" id="filter" placeholder="filter: text, file, function..." '
             f'aria-label="filter events"><label>severity <select id="severity">{options}</select></label>{boxes}'
             f'<span><b id="shown-total">{len(events)}</b> of {len(events)} events shown</span></div>']
    head = ("<thead><tr><th>#</th><th>time</th><th>severity</th><th>kind</th><th>subject</th><th>file:line</th>"
            "<th>function</th><th>message</th></tr></thead>")
    for name in names:
        rows = "".join(_row(e) for e in groups[name])
        parts.append(f'<section class="engine" data-engine="{_e(name)}" id="engine-{_e(name)}">'
                     f'<h3>{_e(name)} (<span class="shown">{len(groups[name])}</span> of '
                     f'<span class="total">{len(groups[name])}</span>)</h3>'
                     f"<table>{head}<tbody>{rows}</tbody></table></section>")
    return "".join(parts)


def _integrity(integrity: dict[str, Any]) -> str:
    keys = ("algorithm", "events", "genesis", "chain_head", "merkle_root", "digest")
    items = "".join(f"<dt>{_e(k.replace('_', ' '))}</dt>"
                    f"<dd><code id=\"integrity-{k}\">{_e(integrity.get(k))}</code></dd>" for k in keys)
    extra = "".join(f"<dt>{_e(k)}</dt><dd><code>{_e(v)}</code></dd>" for k, v in integrity.items() if k not in keys)
    return f'<dl class="meta">{items}{extra}</dl>'


def render(data: dict[str, Any], verdict: str, problem: str | None = None, source: str | None = None) -> str:
    """The page for a loaded report.  `verdict` is verified, altered or incomplete (see outputs.verdict);
    `problem` says what is wrong; `source` is the report's path, shown in the title."""
    run, summary, integrity = _dict(data.get("run")), _dict(data.get("summary")), _dict(data.get("integrity"))
    events = listed if isinstance(listed := data.get("events"), list) else []
    title = VERDICTS.get(verdict, verdict)
    problem_html = f'<span class="problem" id="verdict-problem">{_e(problem)}</span>' if problem else ""
    target = _dict(run.get("target")).get("value", "")
    heading = f"pyward report: {target}" if target else "pyward report"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(heading)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(heading)}</h1>"
        + (f'<p>report file: <code id="source">{_e(source)}</code></p>' if source else "")
        + f'<div class="verdict {_e(verdict)}" id="verdict" data-verdict="{_e(verdict)}">'
        f"{_e(title)}{problem_html}</div>"
        f"<h2>Run</h2>{_meta(run)}"
        f'<h2>Summary</h2><div id="summary">{_summary(summary)}</div>'
        f'<h2>Events</h2><div id="events">{_events(events)}</div>'
        f'<h2>Integrity</h2><div id="integrity">{_integrity(integrity)}</div>'
        f"<script>{_JS}</script></body></html>\n"
    )
