"""The end-of-run report: run metadata, every event, a summary, and integrity.

Integrity has three layers, each catching what the previous cannot:

* a hash chain: `chain[i] = sha256(chain[i-1] || canonical(event[i]))`,
  starting from a genesis hash of the run metadata, so an altered, removed
  or reordered event breaks the chain *at that event*;
* a Merkle root over the events (RFC 6962 tree hashing), so one event can be
  proved to belong to a report without the others;
* a digest over genesis, chain head, root, count and summary, so an edited
  summary is caught too.

Anyone can recompute all three after editing a file; that is what signatures
(`sign`, HMAC-SHA256 or Ed25519) are for.  Nothing here imports more than
CPython's own SHA-256, hmac and json, except Ed25519, which needs the `cryptography` package.
"""
from __future__ import annotations

import os
import time

from . import canonical as _canonical
from ._isolation import isolate_builtins, isolate_module
from .digest import SHA256
from .journal import iso_time, summarize

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811
time = isolate_module(time)  # noqa: F811 - freezegun must not date the signature

TYPE_CHECKING = False  # importing typing costs milliseconds of startup
if TYPE_CHECKING:
    from typing import Any, Iterable

FORMAT = "pyward.report"
VERSION = 1
SIG_FORMAT = "pyward.signature"
MIN_HMAC_KEY = 16


class ReportError(Exception):
    """The file is not a readable pyward report (exit status 2)."""


class SigningKeyError(Exception):
    """A signing or verification key is missing, unreadable or of the wrong kind."""


def canonical(obj: Any) -> bytes:
    """Bytes hashed for `obj`: exactly json.dumps(obj, sort_keys=True,
    separators=(",", ":"), ensure_ascii=True), encoded as ASCII."""
    return _canonical.dumps(obj).encode("ascii")


def sha256(data: bytes) -> bytes:
    return SHA256(data).digest()


def genesis(run: dict[str, Any]) -> bytes:
    return sha256(b"pyward.report/1\n" + canonical(run))


def chain_next(previous: bytes, event: dict[str, Any]) -> bytes:
    return sha256(previous + canonical(event))


def merkle_root(events: Iterable[dict[str, Any]]) -> bytes:
    """RFC 6962 Merkle tree hash: leaves 0x00||data, nodes 0x01||left||right."""
    return merkle_root_of([canonical(e) for e in events])


def merkle_root_of(leaves: list[bytes]) -> bytes:
    """merkle_root over the events' canonical bytes."""
    level = [sha256(b"\x00" + data) for data in leaves]
    if not level:
        return sha256(b"")

    def tree(nodes: list[bytes]) -> bytes:
        if len(nodes) == 1:
            return nodes[0]
        split = 1 << ((len(nodes) - 1).bit_length() - 1)  # largest power of two < n
        return sha256(b"\x01" + tree(nodes[:split]) + tree(nodes[split:]))

    return tree(level)


def incomplete(data: dict[str, Any]) -> str | None:
    """How the run of an intact report did not end normally (the recorder wrote it after the
    program's process ended without an end record), or None: it ended normally."""
    run = data.get("run")
    if isinstance(run, dict) and "exit_status" in run and run["exit_status"] is None:
        return f"the run did not end normally ({run.get('exit_reason')})"
    return None


#: A report's fields, and those of its `integrity` (build() writes no other).
FIELDS = ("format", "version", "run", "events", "summary", "integrity")
INTEGRITY_FIELDS = ("algorithm", "genesis", "events", "chain_head", "merkle_root", "digest")


def build(run: dict[str, Any], events: list[Any]) -> dict[str, Any]:
    """Assemble a report from run metadata and journal events (Events, or anything
    with their `to_json()`: the recorder's items)."""
    items = [e.to_json() for e in events]
    head = genesis(run)
    start = head
    leaves = []
    for item in items:
        data = canonical(item)  # the chain's bytes are the Merkle leaf's too: serialised once
        head = sha256(head + data)
        leaves.append(data if "chain" not in item else canonical(_without_chain(item)))
        item["chain"] = head.hex()
    bare = [_without_chain(i) for i in items]
    summary = summarize(bare, run.get("exit_status"))
    root = merkle_root_of(leaves)
    integrity = {
        "algorithm": "sha256",
        "genesis": start.hex(),
        "events": len(items),
        "chain_head": head.hex(),
        "merkle_root": root.hex(),
    }
    integrity["digest"] = _digest(integrity, summary)
    return {"format": FORMAT, "version": VERSION, "run": run, "events": items, "summary": summary,
            "integrity": integrity}


def _without_chain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != "chain"}


def _digest(integrity: dict[str, Any], summary: dict[str, Any]) -> str:
    fields = {k: integrity[k] for k in ("genesis", "events", "chain_head", "merkle_root")}
    return sha256(canonical({"integrity": fields, "summary": summary})).hex()


def write(path: str, report: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a report."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(_canonical.dumps(report, sort_keys=False, indent=1) + "\n")
    os.replace(tmp, path)


#: What reading a crafted file can raise anywhere in verify, sign, render: a report
#: or a journal is input, and input never ends in a traceback (malformed()).
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, LookupError, RecursionError,
             OverflowError, UnicodeError, MemoryError)


def malformed(path: str, exc: BaseException) -> str:
    """The one line for a file whose content broke the reader (status 2)."""
    return f"{path}: cannot be read as a pyward report or journal: malformed content ({type(exc).__name__})"


def load(path: str) -> tuple[bytes, dict[str, Any]]:
    import json

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw.startswith(b'{"format":"pyward.journal"'):  # see checkpoint.py
        raise ReportError(f"{path} is the journal of a run that did not end normally, not a report "
                          "(pyward verify says how far it is intact)")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ReportError(f"{path} is not JSON: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ReportError(f"{path} is not a pyward report (no \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise ReportError(f"{path} is a version {data.get('version')!r} report; this pyward reads version {VERSION}")
    return raw, data


class Verdict:
    """The outcome of `verify`: `problem` and `bad_event` (1-based) say what broke first."""

    __slots__ = ("ok", "events", "merkle_root", "problem", "bad_event")

    def __init__(self, ok: bool, events: int, merkle_root: str, problem: str | None = None,
                 bad_event: int | None = None) -> None:
        self.ok, self.events, self.merkle_root = ok, events, merkle_root
        self.problem, self.bad_event = problem, bad_event


def _describe(position: int, item: Any) -> str:
    if isinstance(item, dict):
        return (f"event #{position} (seq {item.get('seq')}, {item.get('engine')}/{item.get('kind')} "
                f"{item.get('name')!r})")
    return f"event #{position}"


def verify(data: dict[str, Any]) -> Verdict:
    """Check a loaded report; the first problem found is reported."""
    run, items = data.get("run"), data.get("events")
    summary, integrity = data.get("summary"), data.get("integrity")
    if not isinstance(run, dict) or not isinstance(items, list) or not isinstance(integrity, dict):
        return Verdict(False, 0, "", "report structure damaged: run, events or integrity missing")
    root_claimed = str(integrity.get("merkle_root", ""))
    # nothing beside what the hashes cover: a field added to the report would read as part of it
    added = [key for key in data if key not in FIELDS] + [f"integrity.{key}" for key in integrity
                                                          if key not in INTEGRITY_FIELDS]
    if added:
        return Verdict(False, len(items), root_claimed, f"field added: {', '.join(map(repr, added))} (a report "
                       f"holds {', '.join(FIELDS)}, which its hashes cover)")
    if genesis(run).hex() != integrity.get("genesis"):
        return Verdict(False, len(items), root_claimed, "run metadata altered (genesis hash does not match)")
    head = genesis(run)
    bare: list[dict[str, Any]] = []
    for position, item in enumerate(items, 1):
        if not isinstance(item, dict) or "chain" not in item:
            return Verdict(False, len(items), root_claimed, f"{_describe(position, item)} has no chain hash",
                           position)
        plain = _without_chain(item)
        try:
            head = chain_next(head, plain)
        except (TypeError, ValueError):
            return Verdict(False, len(items), root_claimed, f"{_describe(position, item)} is not canonical JSON",
                           position)
        if head.hex() != item["chain"]:
            return Verdict(False, len(items), root_claimed,
                           f"first bad event: {_describe(position, item)}: hash chain broken "
                           "(the event was altered, inserted, removed or moved)", position)
        if plain.get("seq") != position:
            return Verdict(False, len(items), root_claimed,
                           f"first bad event: {_describe(position, item)}: sequence number out of place", position)
        bare.append(plain)
    if integrity.get("events") != len(items) or integrity.get("chain_head") != head.hex():
        return Verdict(False, len(items), root_claimed,
                       f"events missing at the end: the report claims {integrity.get('events')}, holds {len(items)}")
    root = merkle_root(bare).hex()
    if root != root_claimed:
        return Verdict(False, len(items), root_claimed, "Merkle root does not match the events")
    if summary != summarize(bare, run.get("exit_status")):
        return Verdict(False, len(items), root, "summary altered: it does not match the events")
    if integrity.get("digest") != _digest(integrity, summary):
        return Verdict(False, len(items), root, "integrity digest altered")
    return Verdict(True, len(items), root)


# --- signatures -------------------------------------------------------------


def _message(algorithm: str, report_sha256: str) -> bytes:
    return f"{SIG_FORMAT}/1\n{algorithm}\n{report_sha256}".encode()


def hmac_key_from(file: str | None, env: str | None) -> bytes:
    """An HMAC key from a file or an environment variable, never argv."""
    if file:
        try:
            with open(file, "rb") as f:
                key = f.read().strip()
        except OSError as exc:
            raise SigningKeyError(f"cannot read HMAC key file {file}: {exc.strerror or exc}") from None
        source = file
    else:
        var = env or "PYWARD_HMAC_KEY"
        value = os.environ.get(var)
        if not value:
            raise SigningKeyError(f"no HMAC key: environment variable {var} is not set (or use --hmac-key-file)")
        key, source = value.strip().encode(), f"${var}"
    if len(key) < MIN_HMAC_KEY:
        raise SigningKeyError(f"HMAC key from {source} is {len(key)} bytes; at least {MIN_HMAC_KEY} are required")
    return key


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SigningKeyError("Ed25519 needs the 'cryptography' package: pip install 'pyward[sign]'") from None
    return serialization, ed25519


def _passphrase() -> bytes | None:
    value = os.environ.get("PYWARD_KEY_PASSPHRASE")
    return value.encode() if value else None


def load_ed25519_private(path: str):
    serialization, ed25519 = _crypto()
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=_passphrase())
    except OSError as exc:
        raise SigningKeyError(f"cannot read private key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not a usable PEM private key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def load_ed25519_public(path: str):
    serialization, ed25519 = _crypto()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SigningKeyError(f"cannot read public key {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:  # a private key file works too: its public half is derived
            return load_ed25519_private(path).public_key()
        except SigningKeyError:
            raise SigningKeyError(f"{path} is not a PEM Ed25519 public key") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def _public_raw(public_key) -> bytes:
    serialization, _ = _crypto()
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign(raw: bytes, data: dict[str, Any], *, hmac_key: bytes | None = None, ed25519_key=None) -> dict[str, Any]:
    """A signature document for the report bytes `raw` (exactly one key)."""
    import base64
    import hmac

    digest = SHA256(raw).hexdigest()
    if hmac_key is not None:
        algorithm = "hmac-sha256"
        signature = hmac.new(hmac_key, _message(algorithm, digest), SHA256).digest()
        key_id = hmac.new(hmac_key, b"pyward key id", SHA256).hexdigest()[:16]
    else:
        algorithm = "ed25519"
        signature = ed25519_key.sign(_message(algorithm, digest))
        key_id = SHA256(_public_raw(ed25519_key.public_key())).hexdigest()[:16]
    return {
        "format": SIG_FORMAT,
        "version": 1,
        "algorithm": algorithm,
        "key_id": key_id,
        "report_sha256": digest,
        "merkle_root": data.get("integrity", {}).get("merkle_root"),
        "signed_at": iso_time(time.time()),
        "signature": base64.b64encode(signature).decode(),
    }


def check_signature(raw: bytes, sig: dict[str, Any], *, hmac_key: bytes | None = None, public_key=None) -> str | None:
    """None when `sig` is a valid signature of `raw`, else what is wrong."""
    import base64
    import hmac

    if sig.get("format") != SIG_FORMAT:
        return "not a pyward signature file"
    algorithm = sig.get("algorithm")
    digest = SHA256(raw).hexdigest()
    if sig.get("report_sha256") != digest:
        return "the report's bytes changed since it was signed (sha256 differs)"
    try:
        signature = base64.b64decode(str(sig.get("signature", "")), validate=True)
    except ValueError:
        return "signature field is not base64"
    message = _message(str(algorithm), digest)
    if algorithm == "hmac-sha256":
        if hmac_key is None:
            raise SigningKeyError("this report is signed with HMAC-SHA256: give --hmac-key-file or --hmac-key-env")
        good = hmac.new(hmac_key, message, SHA256).digest()
        return None if hmac.compare_digest(good, signature) else "HMAC signature does not match (wrong key or altered)"
    if algorithm == "ed25519":
        if public_key is None:
            raise SigningKeyError("this report is signed with Ed25519: give --public-key FILE")
        from cryptography.exceptions import InvalidSignature

        try:
            public_key.verify(signature, message)
        except InvalidSignature:
            return "Ed25519 signature does not match (wrong key or altered)"
        return None
    return f"unknown signature algorithm {algorithm!r}"


def generate_keys(out: str, kind: str) -> list[str]:
    """Write a new key (0600) and, for Ed25519, its public half; return paths."""
    if kind == "hmac":
        _write_secret(out, os.urandom(32).hex().encode() + b"\n")
        return [out]
    serialization, ed25519 = _crypto()
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    pub_path = out + ".pub"
    _write_secret(out, private)
    with open(pub_path, "wb") as f:
        f.write(public)
    return [out, pub_path]


def _write_secret(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as f:
        f.write(data)
