"""The report: integrity (hash chain, Merkle root, digest), verify, sign, keygen."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import stat
import sys

import pytest

from helpers import clean_env, pyward, pyward_lines
from pyward import report
from pyward.journal import Journal

EVENT_FIELDS = ["seq", "time", "pid", "thread", "engine", "kind", "name", "severity", "message", "where",
                "function", "details", "v"]


def make_report(n: int = 5, exit_status: int = 0) -> dict:
    journal = Journal()
    for i in range(n):
        engine = ("sandbox", "tamper", "heal", "pyward")[i % 4]
        kind = {"sandbox": "denied", "tamper": "replaced", "heal": "healed", "pyward": "note"}[engine]
        severity = "alert" if engine == "tamper" else "notice"
        journal.emit(engine, kind, f"subject-{i}", message=f"event {i} é", severity=severity,
                     details={"i": i, "path": f"/tmp/{i}", "nested": {"list": [1, 2.5, None, True]}},
                     where=f"/app/x.py:{10 + i}", function="f")
    run = {"command": ["pyward", "run", "x.py"], "cwd": "/app", "exit_status": exit_status, "start": "t0",
           "end": "t1"}
    return report.build(run, journal.events)


def roundtrip(data: dict) -> dict:
    """What a reader sees after the report went through a file."""
    return json.loads(json.dumps(data))


def test_fresh_report_verifies():
    verdict = report.verify(roundtrip(make_report()))
    assert verdict.ok, verdict.problem
    assert verdict.events == 5


def test_summary_counts_the_events():
    summary = make_report(8)["summary"]
    assert summary["events"] == 8
    assert (summary["denied"], summary["tamper_alerts"], summary["healed"]) == (2, 2, 2)
    assert summary["by_engine"] == {"heal": 2, "pyward": 2, "sandbox": 2, "tamper": 2}


def _altered_value(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value[:-1] + ("X" if not value.endswith("X") else "Y") if value else "X"
    if isinstance(value, dict):
        return {**value, "extra": 1}
    if value is None:
        return "x.py:1"
    raise AssertionError(type(value))


@pytest.mark.parametrize("field", EVENT_FIELDS)
@pytest.mark.parametrize("position", [1, 3, 5])
def test_any_changed_event_field_is_named(field, position):
    data = roundtrip(make_report())
    event = data["events"][position - 1]
    event[field] = _altered_value(event[field])
    verdict = report.verify(data)
    assert not verdict.ok
    assert verdict.bad_event == position
    assert f"event #{position}" in verdict.problem


def test_changed_chain_hash_is_named():
    data = roundtrip(make_report())
    data["events"][1]["chain"] = "00" * 32
    verdict = report.verify(data)
    assert (verdict.ok, verdict.bad_event) == (False, 2)


def test_recomputed_chain_of_one_event_still_breaks_the_next():
    data = roundtrip(make_report())
    events = data["events"]
    events[2]["message"] = "forged"
    plain = {k: v for k, v in events[2].items() if k != "chain"}
    events[2]["chain"] = report.chain_next(bytes.fromhex(events[1]["chain"]), plain).hex()
    verdict = report.verify(data)
    assert (verdict.ok, verdict.bad_event) == (False, 4)


def test_swapped_events():
    data = roundtrip(make_report())
    data["events"][1], data["events"][3] = data["events"][3], data["events"][1]
    verdict = report.verify(data)
    assert (verdict.ok, verdict.bad_event) == (False, 2)


def test_moved_event():
    data = roundtrip(make_report())
    data["events"].insert(0, data["events"].pop(3))
    assert report.verify(data).bad_event == 1


@pytest.mark.parametrize("index, named", [(2, 3), (0, 1)])
def test_deleted_event(index, named):
    data = roundtrip(make_report())
    del data["events"][index]
    verdict = report.verify(data)
    assert (verdict.ok, verdict.bad_event) == (False, named)


def test_deleted_last_event():
    data = roundtrip(make_report())
    data["events"].pop()
    verdict = report.verify(data)
    assert not verdict.ok
    assert "claims 5, holds 4" in verdict.problem


def test_inserted_duplicate_event():
    data = roundtrip(make_report())
    data["events"].insert(2, copy.deepcopy(data["events"][1]))
    verdict = report.verify(data)
    assert (verdict.ok, verdict.bad_event) == (False, 3)


@pytest.mark.parametrize("key", ["events", "denied", "tamper_alerts", "healed", "exit_status"])
def test_changed_summary(key):
    data = roundtrip(make_report())
    data["summary"][key] += 1
    verdict = report.verify(data)
    assert not verdict.ok
    assert "summary altered" in verdict.problem


def test_summary_with_recomputed_digest_is_still_caught():
    data = roundtrip(make_report())
    data["summary"]["by_severity"] = {"notice": 99}
    data["integrity"]["digest"] = report._digest(data["integrity"], data["summary"])
    assert "summary altered" in report.verify(data).problem


@pytest.mark.parametrize("key, value", [("exit_status", 3), ("command", ["pyward", "run", "y.py"]), ("cwd", "/x")])
def test_changed_run_metadata(key, value):
    data = roundtrip(make_report())
    data["run"][key] = value
    verdict = report.verify(data)
    assert not verdict.ok
    assert "run metadata altered" in verdict.problem


@pytest.mark.parametrize("key", ["merkle_root", "chain_head", "digest", "genesis"])
def test_changed_integrity_fields(key):
    data = roundtrip(make_report())
    data["integrity"][key] = "ab" * 32
    assert not report.verify(data).ok


@pytest.mark.parametrize("where, key", [(None, "note"), (None, "merkle"), ("integrity", "verified_by")])
def test_a_field_added_beside_what_the_hashes_cover(where, key):
    """An unsigned report is all hashed but for its own field names: a field added at the top or in
    `integrity` ("note": "reviewed, all fine") would read as part of the report."""
    data = roundtrip(make_report())
    (data if where is None else data[where])[key] = "all good"
    verdict = report.verify(data)
    assert not verdict.ok and verdict.problem.startswith("field added: ") and key in verdict.problem


def test_changed_event_count():
    data = roundtrip(make_report())
    data["integrity"]["events"] = 6
    assert not report.verify(data).ok


# --- Merkle root against an independent RFC 6962 reference ------------------


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written from the RFC: split at the largest power of two < n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962_root(leaves[:k]) + rfc6962_root(leaves[k:])).digest()


@pytest.mark.parametrize("n", range(18))
def test_merkle_root_matches_rfc6962(n):
    events = [{"seq": i, "name": f"e{i}"} for i in range(n)]
    assert report.merkle_root(events) == rfc6962_root([report.canonical(e) for e in events])


# --- the CLI: run, verify, sign ------------------------------------------------


@pytest.fixture
def real_report(tmp_path):
    (tmp_path / "app.py").write_text("print('hello')\n")
    result = pyward("run", "--report", "r.json", "app.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\n"
    assert "report: r.json" in pyward_lines(result.stderr)[-1]
    return tmp_path / "r.json"


def test_verify_cli_intact(real_report):
    result = pyward("verify", str(real_report))
    assert result.returncode == 0, result.stderr
    assert re.search(r": intact: \d+ events, merkle root [0-9a-f]{16}", result.stdout), result.stdout


def test_verify_cli_names_first_bad_event(real_report):
    data = json.loads(real_report.read_text())
    data["events"][1]["message"] = "edited"
    real_report.write_text(json.dumps(data))
    result = pyward("verify", str(real_report))
    assert result.returncode == 1
    assert "ALTERED" in result.stderr and "event #2" in result.stderr


def test_default_report_location(tmp_path):
    (tmp_path / "app.py").write_text("pass\n")
    result = pyward("run", "app.py", cwd=tmp_path)
    reports = list((tmp_path / ".pyward" / "reports").glob("*.json"))
    assert len(reports) == 1
    assert pyward_lines(result.stderr)[-1].endswith(f"report: .pyward/reports/{reports[0].name}")
    assert (tmp_path / ".pyward" / ".gitignore").read_text().strip().endswith("*")
    assert pyward("verify", str(reports[0])).returncode == 0


def test_no_report(tmp_path):
    (tmp_path / "app.py").write_text("pass\n")
    result = pyward("run", "--no-report", "app.py", cwd=tmp_path)
    assert not (tmp_path / ".pyward").exists()
    assert pyward_lines(result.stderr)[-1].endswith("no report")


def test_report_records_run_metadata(tmp_path):
    (tmp_path / "app.py").write_text("import sys; sys.exit(4)\n")
    pyward("run", "--report", "r.json", "app.py", "a1", cwd=tmp_path)
    run = json.loads((tmp_path / "r.json").read_text())["run"]
    assert run["exit_status"] == 4
    assert run["command"] == ["pyward", "run", "--report", "r.json", "app.py", "a1"]
    assert run["target"] == {"kind": "script", "value": "app.py", "args": ["a1"]}
    assert run["cwd"] == str(tmp_path)
    assert run["python"]["version"] == sys.version.split()[0]
    assert run["start"] <= run["end"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not JSON"),
    ('{"format": "something-else"}', "is not a pyward report"),
    ('{"format": "pyward.report", "version": 99}', "version 99"),
])
def test_verify_unreadable(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    result = pyward("verify", str(path))
    assert result.returncode == 2
    assert pyward_lines(result.stderr) == [line for line in result.stderr.splitlines() if line]
    assert len(pyward_lines(result.stderr)) == 1 and message in result.stderr


def test_verify_truncated(real_report):
    real_report.write_bytes(real_report.read_bytes()[:200])
    result = pyward("verify", str(real_report))
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_verify_missing_file(tmp_path):
    result = pyward("verify", str(tmp_path / "nope.json"))
    assert result.returncode == 2 and "cannot read" in result.stderr


# --- keys and signatures --------------------------------------------------------


def test_keygen_hmac_and_ed25519(tmp_path):
    assert pyward("keygen", "--hmac", "-o", str(tmp_path / "h.key")).returncode == 0
    assert stat.S_IMODE(os.stat(tmp_path / "h.key").st_mode) == 0o600
    assert len(bytes.fromhex((tmp_path / "h.key").read_text().strip())) == 32
    assert pyward("keygen", "--ed25519", "-o", str(tmp_path / "k.pem")).returncode == 0
    assert stat.S_IMODE(os.stat(tmp_path / "k.pem").st_mode) == 0o600
    assert b"PUBLIC KEY" in (tmp_path / "k.pem.pub").read_bytes()
    again = pyward("keygen", "--hmac", "-o", str(tmp_path / "h.key"))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_hmac_sign_and_verify_with_key_file(real_report, tmp_path):
    key = tmp_path / "h.key"
    pyward("keygen", "--hmac", "-o", str(key))
    signed = pyward("sign", str(real_report), "--hmac-key-file", str(key))
    assert signed.returncode == 0, signed.stderr
    sig = json.loads(real_report.with_name("r.json.sig").read_text())
    assert sig["algorithm"] == "hmac-sha256"
    ok = pyward("verify", str(real_report), "--signature", "--hmac-key-file", str(key))
    assert ok.returncode == 0 and "signature ok" in ok.stdout
    other = tmp_path / "other.key"
    pyward("keygen", "--hmac", "-o", str(other))
    bad = pyward("verify", str(real_report), "--signature", "--hmac-key-file", str(other))
    assert bad.returncode == 1 and "BAD SIGNATURE" in bad.stderr


def test_hmac_key_from_environment(real_report):
    env = clean_env(MY_KEY="k" * 32)
    assert pyward("sign", str(real_report), "--hmac-key-env", "MY_KEY", env=env).returncode == 0
    assert pyward("verify", str(real_report), "--signature", "--hmac-key-env", "MY_KEY", env=env).returncode == 0
    default = clean_env(PYWARD_HMAC_KEY="k" * 32)
    assert pyward("verify", str(real_report), "--signature", env=default).returncode == 0
    wrong = clean_env(PYWARD_HMAC_KEY="z" * 32)
    assert pyward("verify", str(real_report), "--signature", env=wrong).returncode == 1


def test_hmac_key_errors(real_report, tmp_path):
    short = pyward("sign", str(real_report), env=clean_env(PYWARD_HMAC_KEY="short"))
    assert short.returncode == 2 and "at least 16" in short.stderr
    missing = pyward("sign", str(real_report))
    assert missing.returncode == 2 and "PYWARD_HMAC_KEY is not set" in missing.stderr


def test_report_edited_after_signing(real_report):
    env = clean_env(PYWARD_HMAC_KEY="k" * 32)
    pyward("sign", str(real_report), env=env)
    real_report.write_text(real_report.read_text().replace('"version": 1', '"version":  1'))
    result = pyward("verify", str(real_report), "--signature", env=env)
    assert result.returncode == 1 and "changed since it was signed" in result.stderr


def test_signature_file_edited(real_report):
    env = clean_env(PYWARD_HMAC_KEY="k" * 32)
    pyward("sign", str(real_report), env=env)
    sig_path = real_report.with_name("r.json.sig")
    sig = json.loads(sig_path.read_text())
    sig["signature"] = sig["signature"][::-1]
    sig_path.write_text(json.dumps(sig))
    assert pyward("verify", str(real_report), "--signature", env=env).returncode == 1


def test_ed25519_sign_and_verify(real_report, tmp_path):
    pyward("keygen", "--ed25519", "-o", str(tmp_path / "k.pem"))
    pyward("keygen", "--ed25519", "-o", str(tmp_path / "other.pem"))
    signed = pyward("sign", str(real_report), "--ed25519-key", str(tmp_path / "k.pem"))
    assert signed.returncode == 0, signed.stderr
    ok = pyward("verify", str(real_report), "--signature", "--public-key", str(tmp_path / "k.pem.pub"))
    assert ok.returncode == 0 and "ed25519" in ok.stdout
    bad = pyward("verify", str(real_report), "--signature", "--public-key", str(tmp_path / "other.pem.pub"))
    assert bad.returncode == 1
    nokey = pyward("verify", str(real_report), "--signature")
    assert nokey.returncode == 2 and "--public-key" in nokey.stderr


def test_signing_an_altered_report_is_refused(real_report):
    data = json.loads(real_report.read_text())
    data["summary"]["healed"] = 7
    real_report.write_text(json.dumps(data))
    result = pyward("sign", str(real_report), env=clean_env(PYWARD_HMAC_KEY="k" * 32))
    assert result.returncode == 1 and "already altered" in result.stderr


def test_ed25519_without_cryptography(real_report, tmp_path):
    code = ("import sys; sys.modules['cryptography'] = None\n"
            "from pyward.cli import main\nsys.exit(main(sys.argv[1:]))")
    import subprocess

    result = subprocess.run([sys.executable, "-c", code, "keygen", "--ed25519", "-o", str(tmp_path / "k")],
                            capture_output=True, text=True, env=clean_env(), timeout=60)
    assert result.returncode == 2
    assert "pyward[sign]" in result.stderr and "Traceback" not in result.stderr
