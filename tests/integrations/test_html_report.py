"""The HTML report: escaping, and the page in a real headless Chromium (Debian's `chromium`)."""
from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser

import pytest

from browser import Browser, find_chromium, version
from ci_programs import ENFORCE, FINDINGS, run
from helpers import pyward
from pyward import report as report_module
from pyward.integrations import html_report
from pyward.journal import Journal

XSS = ["<script>window.__xss=1</script>", '"><img src=x onerror="window.__xss=2">', "</textarea></table>&amp;"]


def hostile_report() -> dict:
    journal = Journal()
    for i, text in enumerate(XSS):
        journal.emit("sandbox", "denied", text, message=f"denied {text}", severity="warning",
                     details={"permission": "read", "payload": text}, where=f"/app/{text}.py:{i + 1}", function=text)
    journal.emit("tamper", "alert", "builtins.open", message="builtins.open replaced", severity="alert",
                 details={"change": "replaced"}, where="/app/app.py:9", function="<module>")
    run_meta = {"command": ["pyward", "run", XSS[0]], "cwd": "/app", "exit_status": 0, "start": "t0", "end": "t1",
                "target": {"kind": "script", "value": XSS[1]}}
    return json.loads(json.dumps(report_module.build(run_meta, journal.events)))


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_everything_from_the_report_is_escaped():
    page = html_report.render(hostile_report(), "verified")
    parser = Tags()
    parser.feed(page)
    assert [t for t, _ in parser.tags].count("script") == 1  # ours, and no other
    assert not any(t == "img" for t, _ in parser.tags)
    assert not any(k.startswith("on") for _, attrs in parser.tags for k in attrs)  # no event handler attribute
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page
    assert "<script>window" not in page


def test_the_page_loads_nothing_and_runs_only_its_own_script():
    page = html_report.render(hostile_report(), "verified")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp
    assert not re.search(r"\b(src|href)=\"(https?:)?//", page)  # no network, no CDN


def test_the_verdict_banner():
    data = hostile_report()
    for verdict, text in (("verified", "Verified"), ("altered", "ALTERED"), ("incomplete", "Incomplete run")):
        page = html_report.render(data, verdict, "what broke" if verdict != "verified" else None)
        assert f'id="verdict" data-verdict="{verdict}">{text}' in page
        assert ("what broke" in page) is (verdict != "verified")


@pytest.fixture(scope="module")
def chromium():
    path, why = find_chromium()
    if path is None:
        pytest.skip(f"not run: {why}")
    print(f"\nbrowser: {version(path)} ({path})")
    return path


@pytest.fixture(scope="module")
def page(chromium, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    browser = Browser(chromium, tmp / "profile")
    try:
        yield browser.page()
    finally:
        browser.close()


def test_the_harness_sees_console_errors_and_blocked_scripts(page, tmp_path):
    """What `page.problems == []` below is worth: a page with an error does not pass."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><head><meta http-equiv="Content-Security-Policy" content="default-src \'none\'">'
                   "</head><body><script>window.__ran = 1</script></body></html>")
    page.problems.clear()
    page.load(bad.as_uri())
    assert any("Content Security Policy" in p for p in page.problems), page.problems
    assert page.evaluate("typeof window.__ran") == "undefined"
    bad.write_text("<html><body><script>console.error('boom'); missing();</script></body></html>")
    page.problems.clear()
    page.load(bad.as_uri())
    assert "console.error: boom" in page.problems and any("ReferenceError" in p for p in page.problems)


def open_report(page, tmp_path, data: dict, name: str = "report"):
    source = tmp_path / f"{name}.json"
    source.write_text(json.dumps(data))
    out = pyward("report", str(source), "--format", "html", "-o", str(tmp_path / f"{name}.html"))
    assert out.returncode in (0, 1), out.stderr
    page.problems.clear()
    page.load((tmp_path / f"{name}.html").as_uri())
    return out


def test_the_report_of_a_real_run_in_chromium(page, tmp_path):
    result = run(tmp_path, FINDINGS, *ENFORCE)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "report.json").read_text())
    open_report(page, tmp_path, data)
    assert page.problems == []  # no console error, no exception, nothing blocked

    assert page.evaluate("document.getElementById('verdict').dataset.verdict") == "verified"
    assert page.evaluate("document.getElementById('verdict').textContent").startswith("Verified")
    summary = data["summary"]
    for key in ("events", "denied", "tamper_alerts", "healed"):
        shown = page.evaluate(f"document.getElementById('count-{key}').textContent")
        assert int(shown) == summary[key], key
    assert summary["denied"] == 151 and summary["tamper_alerts"] == 1
    rows = page.evaluate("document.querySelectorAll('#events tbody tr').length")
    assert rows == len(data["events"])
    per_engine = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('section.engine')].map("
        "s => [s.dataset.engine, s.querySelectorAll('tbody tr').length]))")
    assert per_engine == summary["by_engine"]
    wheres = page.evaluate("[...document.querySelectorAll('section[data-engine=tamper] td.where')]"
                           ".map(td => td.textContent)")
    assert f"{tmp_path / 'app.py'}:21" in wheres
    assert page.evaluate("document.getElementById('integrity-merkle_root').textContent") \
        == data["integrity"]["merkle_root"]

    # the program's markup is text, and it did not run
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.evaluate("document.scripts.length") == 1
    names = page.evaluate("[...document.querySelectorAll('td.name')].map(td => td.textContent)")
    assert "X<script>window.__xss=1</script>" in names

    # the filter: text, then severity, then an engine switched off
    typed = page.evaluate("""(() => { const f = document.getElementById('filter'); f.value = 'xss';
        f.dispatchEvent(new Event('input')); return document.getElementById('shown-total').textContent; })()""")
    matching = sum(1 for e in data["events"] if "xss" in json.dumps(e).lower() or "xss" in str(e["name"]).lower())
    assert int(typed) == matching == 1
    alerts = page.evaluate("""(() => { const f = document.getElementById('filter'); f.value = '';
        f.dispatchEvent(new Event('input')); const s = document.getElementById('severity'); s.value = 'alert';
        s.dispatchEvent(new Event('change')); return document.getElementById('shown-total').textContent; })()""")
    assert int(alerts) == sum(1 for e in data["events"] if e["severity"] in ("alert", "error"))
    no_sandbox = page.evaluate("""(() => { const s = document.getElementById('severity'); s.value = 'debug';
        s.dispatchEvent(new Event('change'));
        const b = document.querySelector('input.engine[value=sandbox]'); b.checked = false;
        b.dispatchEvent(new Event('change')); return document.getElementById('shown-total').textContent; })()""")
    assert int(no_sandbox) == len(data["events"]) - summary["by_engine"]["sandbox"]
    page.evaluate("""(() => { const b = document.querySelector('input.engine[value=sandbox]'); b.checked = true;
        b.dispatchEvent(new Event('change')); })()""")
    assert page.problems == []

    shot = page.screenshot(tmp_path / "report.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_an_altered_report_in_chromium(page, tmp_path):
    data = hostile_report()
    altered = copy.deepcopy(data)
    altered["events"][1]["message"] = "harmless"
    out = open_report(page, tmp_path, altered, "altered")
    assert out.returncode == 1
    assert page.problems == []
    assert page.evaluate("document.getElementById('verdict').dataset.verdict") == "altered"
    assert "first bad event: event #2" in page.evaluate("document.getElementById('verdict-problem').textContent")
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.evaluate("document.getElementById('count-denied').textContent") == str(data["summary"]["denied"])
    shot = page.screenshot(tmp_path / "altered.png")
    print(f"screenshot: {shot}")
