"""Sealed checkpoints: the journal on disk as the run goes, at the report's path.

While a run is going, its report path holds JSON lines (`FORMAT`): a header
with the run's start metadata and the genesis hash, then every event as it is
journaled (with its `chain` hash, as in a report), and every so often a
checkpoint record that seals what came before it: its number, the event
count, the chain head and the Merkle root of the events so far, HMAC-signed
when a key is configured.  At the end of the run the final report replaces
the file (`report.write` renames over it), so a file still in this format is
the record of a run that did not end normally (or has not ended yet).

A checkpoint is written after the event that makes one due: the 100th event
since the last checkpoint, or the first event a second or more after it
(both configurable).  No thread and no timer: a program with nothing to
journal costs nothing, and pyward adds no thread to the program's process (a
thread would show, for example in Python 3.12's warning about fork() in a
multi-threaded process).  Events are on disk as soon as they happen; what a
kill can leave unsealed is the tail since the last checkpoint, and `verify`
says so.

`verify_journal` checks such a file: exit status 3 when it is intact up to
its last checkpoint, 1 when anything before that checkpoint was changed.
"""
from __future__ import annotations

import os
import time

from . import canonical as _canonical
from ._isolation import isolate_builtins, isolate_module
from .digest import SHA256
from .journal import Sink, iso_time, stderr_writer
from .report import canonical, genesis, sha256

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811
time = isolate_module(time)  # noqa: F811 - freezegun must not stop the checkpoint clock

TYPE_CHECKING = False  # importing typing costs milliseconds of startup
if TYPE_CHECKING:
    from typing import Any

FORMAT = "pyward.journal"
VERSION = 1
EVERY_EVENTS = 100
EVERY_MS = 1000
#: The status of `pyward verify` for a journal intact up to its last checkpoint.
INCOMPLETE = 3


class MerkleFrontier:
    """The RFC 6962 tree hash of a growing list of leaves, in O(log n) memory:
    the roots of the perfect subtrees that make up the list so far (one per
    bit of the count), folded right to left on demand."""

    __slots__ = ("count", "peaks")

    def __init__(self) -> None:
        self.count = 0
        self.peaks: list[bytes] = []

    def add(self, data: bytes) -> None:
        """Add the leaf of `data` (canonical JSON of an event)."""
        node = sha256(b"\x00" + data)
        self.count += 1
        n = self.count
        while not n & 1:  # merge equal-size subtrees, as carries in binary addition
            node = sha256(b"\x01" + self.peaks.pop() + node)
            n >>= 1
        self.peaks.append(node)

    def root(self) -> bytes:
        if not self.peaks:
            return sha256(b"")
        node = self.peaks[-1]
        for left in reversed(self.peaks[:-1]):
            node = sha256(b"\x01" + left + node)
        return node


def checkpoint_mac(key: bytes, record: dict[str, Any], genesis_hex: str) -> str:
    import hmac

    fields = {k: record[k] for k in ("checkpoint", "events", "chain_head", "merkle_root", "time")}
    message = b"pyward.checkpoint/1\n" + canonical({"genesis": genesis_hex, **fields})
    return hmac.new(key, message, SHA256).hexdigest()


def key_id(key: bytes) -> str:
    import hmac

    return hmac.new(key, b"pyward key id", SHA256).hexdigest()[:16]


KEY_VARIABLE = "PYWARD_HMAC_KEY"


def run_key(settings: Any) -> bytes | None:
    """The HMAC key that signs a run's checkpoints: the file `checkpoint.key_file`
    names, else $PYWARD_HMAC_KEY; None (unsigned) when neither is given.

    A key from the environment is taken out of it before the program starts:
    a program that could read the key could forge a seal."""
    from .report import hmac_key_from

    path = settings.get("checkpoint.key_file")
    if not path and not os.environ.get(KEY_VARIABLE):
        return None
    key = hmac_key_from(path, None if path else KEY_VARIABLE)
    if not path:
        del os.environ[KEY_VARIABLE]
    return key


class CheckpointSink(Sink):
    """Appends every event and the checkpoints to the report path while the run goes.

    Opened before any engine starts (pyward's own file, not the program's);
    one `write()` per event, O_APPEND.  A write that fails (a full disk) stops
    the checkpoints with one line on stderr; the run goes on, and the final
    report is still attempted at the end.
    """

    def __init__(self, path: str, run: dict[str, Any], *, every_events: int = EVERY_EVENTS,
                 every_ms: int = EVERY_MS, key: bytes | None = None) -> None:
        self.path = path
        self.every_events = every_events or 0
        self.every_s = (every_ms or 0) / 1000
        self.key = key
        self.start = genesis(run)
        self.head = self.start
        self.genesis_hex = self.start.hex()
        self.merkle = MerkleFrontier()
        self.checkpoints = 0
        self.sealed = 0  # events covered by the last checkpoint
        self.last = time.monotonic()
        self.failed: str | None = None
        self.fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        header = {"format": FORMAT, "version": VERSION, "run": run, "genesis": self.genesis_hex,
                  "checkpoints": {"every_events": self.every_events, "every_ms": every_ms,
                                  "hmac": key_id(key) if key else None}}
        self._out(_canonical.dumps(header, sort_keys=False) + "\n")
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        # a forked child journals to the console and the log; this file is the parent's
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _out(self, text: str) -> None:
        if self.fd is None:
            return
        data = text.encode("ascii")
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError as exc:
            self.failed = f"{exc.strerror or exc}"
            self._forget()
            stderr_writer().write_line(f"[pyward][error] checkpoints stopped: cannot write {self.path}: "
                                       f"{self.failed}; the run goes on, the report is written at exit if it can be")

    def write(self, event: Any) -> None:
        if self.fd is None:
            return
        item = event.to_json()
        data = canonical(item)
        self.head = sha256(self.head + data)
        self.merkle.add(data)
        item["chain"] = self.head.hex()
        line = _canonical.dumps(item, sort_keys=False) + "\n"
        now = time.monotonic()
        pending = self.merkle.count - self.sealed
        if (self.every_events and pending >= self.every_events) or (self.every_s and now - self.last >= self.every_s):
            line += self._checkpoint(now)
        self._out(line)

    def _checkpoint(self, now: float) -> str:
        self.checkpoints += 1
        self.sealed = self.merkle.count
        self.last = now
        record: dict[str, Any] = {"checkpoint": self.checkpoints, "events": self.sealed,
                                  "chain_head": self.head.hex(), "merkle_root": self.merkle.root().hex(),
                                  "time": iso_time(time.time())}
        if self.key is not None:
            record["hmac"] = checkpoint_mac(self.key, record, self.genesis_hex)
        return _canonical.dumps(record, sort_keys=False) + "\n"

    def seal(self) -> None:
        """A last checkpoint over whatever is unsealed (the end of the run)."""
        if self.fd is not None and self.merkle.count > self.sealed:
            self._out(self._checkpoint(time.monotonic()))

    def close(self) -> None:
        self.seal()
        self._forget()


# --- reading ------------------------------------------------------------------


def is_journal(path: str) -> bool:
    """True when `path` starts like a journal in this format (a run that did not end normally)."""
    try:
        with open(path, "rb") as f:
            start = f.read(64)
    except OSError:
        return False
    return start.startswith(b'{"format":"' + FORMAT.encode() + b'"')


class JournalVerdict:
    """What `verify_journal` found.  `status`: 3 intact up to checkpoint `checkpoint`
    (events 1..`sealed`), 1 altered (`problem`), 2 unreadable (`problem`)."""

    __slots__ = ("status", "problem", "checkpoint", "sealed", "events", "unsealed", "torn", "run", "ended",
                 "signed", "notes")

    def __init__(self) -> None:
        self.status = INCOMPLETE
        self.problem: str | None = None
        self.checkpoint = 0
        self.sealed = 0
        self.events = 0
        self.unsealed = 0
        self.torn = False
        self.run: dict[str, Any] = {}
        self.ended: dict[str, Any] | None = None  # the run.end event's details, when it was journaled
        self.signed = False
        self.notes: list[str] = []

    def fail(self, status: int, problem: str) -> JournalVerdict:
        self.status, self.problem = status, problem
        return self


def verify_journal(raw: bytes, hmac_key: bytes | None = None) -> JournalVerdict:
    """Check a journal file's bytes: header, chain, sequence, every checkpoint."""
    import hmac
    import json

    verdict = JournalVerdict()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:  # the last write was cut (the process died in it): it was never sealed
        lines.pop()
        verdict.torn = True
    try:
        header = json.loads(lines[0]) if lines else None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return verdict.fail(2, f"the journal header is not JSON: {exc}")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        return verdict.fail(2, f"not a pyward journal (no \"format\": \"{FORMAT}\")")
    if header.get("version") != VERSION:
        return verdict.fail(2, f"a version {header.get('version')!r} journal; this pyward reads version {VERSION}")
    run = header.get("run")
    if not isinstance(run, dict):
        return verdict.fail(1, "journal header damaged: no run metadata")
    verdict.run = run
    start = genesis(run)
    if header.get("genesis") != start.hex():
        return verdict.fail(1, "run metadata altered (genesis hash does not match)")
    settings: dict[str, Any] = header["checkpoints"] if isinstance(header.get("checkpoints"), dict) else {}
    expected_key = settings.get("hmac")
    verdict.signed = bool(expected_key)
    if hmac_key is not None and expected_key and key_id(hmac_key) != expected_key:
        return verdict.fail(1, f"the checkpoints were signed with key {expected_key}, not with the key given")
    head, merkle = start, MerkleFrontier()
    for number, line in enumerate(lines[1:], 2):
        try:
            item = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return verdict.fail(1, f"line {number} is not JSON")
        if not isinstance(item, dict):
            return verdict.fail(1, f"line {number} is not a JSON object")
        if "checkpoint" in item:
            k = verdict.checkpoint + 1
            if item.get("checkpoint") != k:
                return verdict.fail(1, f"line {number}: checkpoint {item.get('checkpoint')!r} where checkpoint {k} "
                                       "belongs (a checkpoint was removed, moved or renumbered)")
            if (item.get("events") != merkle.count or item.get("chain_head") != head.hex()
                    or item.get("merkle_root") != merkle.root().hex()):
                return verdict.fail(1, f"checkpoint {k} (line {number}) does not match the {merkle.count} events "
                                       "before it: an event before it was altered, inserted or removed")
            if verdict.signed:
                mac = item.get("hmac")
                if not isinstance(mac, str):
                    return verdict.fail(1, f"checkpoint {k} (line {number}) is not signed, unlike the journal")
                if hmac_key is not None and not hmac.compare_digest(
                        mac, checkpoint_mac(hmac_key, item, start.hex())):
                    return verdict.fail(1, f"checkpoint {k} (line {number}): HMAC does not match "
                                           "(altered, or a different key)")
            verdict.checkpoint, verdict.sealed = k, merkle.count
            continue
        position = merkle.count + 1
        plain = {k: v for k, v in item.items() if k != "chain"}
        try:
            data = canonical(plain)
        except (TypeError, ValueError, RecursionError):
            return verdict.fail(1, f"event #{position} (line {number}) is not canonical JSON")
        head = sha256(head + data)
        if item.get("chain") != head.hex():
            return verdict.fail(1, f"event #{position} (line {number}, {plain.get('engine')}/{plain.get('kind')} "
                                   f"{plain.get('name')!r}): hash chain broken (altered, inserted, removed or moved)")
        if plain.get("seq") != position:
            return verdict.fail(1, f"event #{position} (line {number}): sequence number out of place")
        merkle.add(data)
        if plain.get("engine") == "pyward" and plain.get("kind") == "run.end":
            verdict.ended = plain.get("details") if isinstance(plain.get("details"), dict) else {}
    verdict.events = merkle.count
    verdict.unsealed = merkle.count - verdict.sealed
    if verdict.signed and hmac_key is None:
        verdict.notes.append(f"checkpoints are HMAC-signed (key {expected_key}) but no key was given: "
                             "signatures not checked (--hmac-key-file or --hmac-key-env)")
    return verdict


def describe(verdict: JournalVerdict) -> str:
    """The one-line verdict of an intact journal (status 3)."""
    run = verdict.run
    if verdict.checkpoint:
        text = f"intact up to checkpoint {verdict.checkpoint} (events 1..{verdict.sealed})"
    else:
        text = "intact up to checkpoint 0 (no event sealed yet)"
    if verdict.unsealed:
        text += f"; {verdict.unsealed} later event{'s' * (verdict.unsealed != 1)} chained but not sealed"
    if verdict.torn:
        text += "; the last line was cut mid-write"
    if verdict.ended is not None:
        text += (f"; the run ended (exit {verdict.ended.get('exit_status')}) but its report was not written: "
                 "INCOMPLETE")
    else:
        text += f"; the run (pid {run.get('pid')}, started {run.get('start')}) did not end normally: INCOMPLETE"
    if verdict.signed:
        text += "; checkpoints signed" + (" and checked" if not verdict.notes else "")
    return text


def verify_command(path: str, key_file: str | None = None, key_env: str | None = None) -> int:
    """`pyward verify` of a journal: one line, and status 3 (intact up to the
    last checkpoint), 1 (altered) or 2 (unreadable)."""
    import sys

    from .report import SigningKeyError, hmac_key_from

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        sys.stderr.write(f"[pyward][error] cannot read {path}: {exc.strerror or exc}\n")
        return 2
    key = None
    if key_file or key_env or os.environ.get(KEY_VARIABLE):
        try:
            key = hmac_key_from(key_file, key_env)
        except SigningKeyError as exc:
            sys.stderr.write(f"[pyward][error] {exc}\n")
            return 2
    from .report import MALFORMED, malformed

    try:
        verdict = verify_journal(raw, key)
        line = describe(verdict) if verdict.status == 3 else ""
    except MALFORMED as exc:  # crafted content: one line and status 2, never a traceback
        sys.stderr.write(f"[pyward][error] {malformed(path, exc)}\n")
        return 2
    if verdict.status == 2:
        sys.stderr.write(f"[pyward][error] {path}: {verdict.problem}\n")
    elif verdict.status == 1:
        sys.stderr.write(f"[pyward] verify: {path}: ALTERED: {verdict.problem}\n")
    else:
        for note in verdict.notes:
            sys.stderr.write(f"[pyward][warning] {note}\n")
        print(f"{path}: {line}")
    return verdict.status
