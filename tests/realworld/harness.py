"""The real-world corpus harness: third-party test suites and stdlib programs,
each run plainly and under pyward in several modes, compared.

Standard library only (it runs inside pyward's test virtualenv and from
scripts/corpus).  Layout, all below CACHE (default .pyward-corpus/ in the
checkout, git-ignored; PYWARD_CORPUS_DIR overrides):

    sdists/NAME-VERSION/        the downloaded sdist (pip download --no-binary :all: --no-deps)
    src/NAME-VERSION/           the sdist unpacked once (pristine; each run gets a fresh copy)
    wheels/                     a six wheel built from its sdist, for the pip-download program
    venv/X.Y/                   the corpus virtualenv of Python X.Y: pytest, every suite built from
                                its sdist, the test dependencies, and pyward from this checkout

and the runs below RUNS (default $TMPDIR/pyward-corpus-runs; PYWARD_CORPUS_RUNS
overrides), outside any project, so that pytest's search for a configuration
file upwards from a suite never finds one that is not the suite's own:

    X.Y/ID/NAME/MODE/           one run: src/ (fresh copy), tmp/ (its TMPDIR), report.json,
                                stdout, stderr, junit.xml (in tmp/), policy.toml (learn, tight)

Nothing is ever reported as passing when it did not run: a suite that cannot be
fetched or installed is "not run" with the reason; a suite whose plain run
fails is "plain failed" with the failing tests, and its other modes are
"excluded" from the comparison.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

if __package__:
    from . import manifest
else:  # pragma: no cover - run as a plain module
    import manifest  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PROGRAMS_DIR = HERE / "programs"
DATA_DIR = HERE / "data"
CACHE = Path(os.environ.get("PYWARD_CORPUS_DIR") or ROOT / ".pyward-corpus")
RUNS = Path(os.environ.get("PYWARD_CORPUS_RUNS") or Path(tempfile.gettempdir()) / "pyward-corpus-runs")

#: seconds one pip network operation may take
PIP_TIMEOUT = 600
#: kept run directories per Python version (older ones are removed)
KEEP_RUNS = 3

Log = Callable[[str], None]


def _default_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class NotRun(Exception):
    """A suite or program could not be fetched, built or installed: it is reported
    as "not run" with this reason, never as a pass."""


# --------------------------------------------------------------------------- records


@dataclass
class Record:
    kind: str                      # "suite" or "program"
    name: str
    python: str
    mode: str
    status: str = "ok"             # ok | not run | plain failed | excluded | timeout | error
    reason: str = ""               # why not run / excluded / error
    exit: int | None = None
    counts: dict[str, int] | None = None   # passed, failed, skipped, errors (suites, unittest)
    failing: list[str] = field(default_factory=list)
    stdout_sha: str | None = None  # normalised stdout (programs)
    stdout_diff: str = ""          # first differing lines against plain (programs)
    denied: int | None = None
    denials: list[str] = field(default_factory=list)     # distinct denial messages (first few)
    alerts: int | None = None
    alerts_unexplained: int | None = None
    alert_samples: list[str] = field(default_factory=list)
    healed: int | None = None
    pyward_errors: list[str] = field(default_factory=list)  # "[pyward][error]" lines on stderr
    stderr_tail: str = ""
    #: the last exception line python printed on stderr (pyward's own lines aside)
    error_line: str = ""
    wall: float | None = None
    ratio: float | None = None     # wall time / plain wall time
    match: bool | None = None      # same outcome as plain (counts + exit, or stdout + exit)
    problems: list[str] = field(default_factory=list)   # every reason this row is not clean
    command: list[str] = field(default_factory=list)
    cwd: str = ""
    env: dict[str, str] = field(default_factory=dict)   # variables set on top of the cleaned environment
    note: str = ""

    @property
    def clean(self) -> bool:
        return self.status == "ok" and not self.problems

    def repro(self) -> str:
        """A shell command that reproduces this run."""
        env = " ".join(f"{k}={_sh(v)}" for k, v in sorted(self.env.items()))
        return f"cd {_sh(self.cwd)} && {env + ' ' if env else ''}{' '.join(_sh(a) for a in self.command)}"


def _sh(s: str) -> str:
    if s and re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", s):
        return s
    return "'" + s.replace("'", "'\\''") + "'"


# --------------------------------------------------------------------------- environment


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of every run, plain and pyward alike: nothing from pyward, the
    calling pytest, coverage or a virtualenv leaks in; no colour."""
    drop = ("PYWARD", "PYTHON", "PYTEST", "COV_CORE", "FORCE_COLOR", "VIRTUAL_ENV", "HYPOTHESIS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def find_python(version: str) -> str:
    out = subprocess.run([str(ROOT / "scripts" / "find-python"), version], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        raise NotRun(f"Python {version} not found: {out.stderr.strip()}")
    return out.stdout.strip()


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pip(python: str, *args: str, timeout: float = PIP_TIMEOUT, cwd: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [python, "-m", "pip", *args, "--disable-pip-version-check"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                             env=clean_env())
    except subprocess.TimeoutExpired:
        raise NotRun(f"`pip {' '.join(args)}` timed out after {timeout:.0f}s") from None
    # pip's notes about index locations configured on some machines are noise
    out.stderr = "\n".join(line for line in out.stderr.splitlines() if "is ignored: it is neither a file" not in line)
    return out


def _pip_error(out: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (out.stderr + "\n" + out.stdout).splitlines() if line.strip()]
    errs = [line for line in lines if line.startswith(("ERROR", "error:")) or "Error" in line]
    return "; ".join((errs or lines)[-3:])[:400]


# --------------------------------------------------------------------------- fetching


def fetch_sdist(suite: manifest.Suite, python: str, log: Log = _default_log) -> Path:
    """The suite's sdist from the cache, downloading it first if needed; NotRun on failure."""
    target = CACHE / "sdists" / suite.dirname
    found = _sdist_in(target)
    if found:
        return found
    target.mkdir(parents=True, exist_ok=True)
    log(f"fetching {suite.requirement} (sdist)")
    out = _pip(python, "download", "--no-binary", ":all:", "--no-deps", "-d", str(target), suite.requirement)
    found = _sdist_in(target)
    if out.returncode != 0 or not found:
        raise NotRun(f"could not fetch the sdist of {suite.requirement}: {_pip_error(out)}")
    return found


def _sdist_in(d: Path) -> Path | None:
    if not d.is_dir():
        return None
    files = sorted(p for p in d.iterdir() if p.name.endswith((".tar.gz", ".zip")))
    return files[0] if files else None


def unpack(suite: manifest.Suite, sdist: Path) -> Path:
    """The pristine unpacked sdist (its top directory)."""
    dest = CACHE / "src" / suite.dirname
    marker = dest / ".unpacked"
    if not marker.exists():
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        if sdist.name.endswith(".zip"):
            with zipfile.ZipFile(sdist) as z:
                z.extractall(dest)
        else:
            with tarfile.open(sdist) as t:
                t.extractall(dest, filter="data")
        marker.write_text(sdist.name)
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise NotRun(f"unexpected sdist layout in {sdist.name}: {[p.name for p in tops]}")
    return tops[0]


# --------------------------------------------------------------------------- the corpus virtualenv


@dataclass
class Venv:
    version: str
    path: Path
    python: str
    pyward: str
    #: suite name -> reason it could not be fetched or installed
    not_run: dict[str, str] = field(default_factory=dict)
    #: suite name -> its pristine unpacked sdist
    sources: dict[str, Path] = field(default_factory=dict)
    wheels: Path | None = None
    wheels_reason: str = ""
    notes: dict[str, str] = field(default_factory=dict)
    freeze: list[str] = field(default_factory=list)
    pip_check: str = ""


def _pyward_source_hash() -> str:
    h = hashlib.sha256()
    paths = [ROOT / "setup.py", ROOT / "pyproject.toml", ROOT / "bin" / "pyward"]
    paths += sorted(p for p in (ROOT / "src").rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith((".so", ".pyc"))
                    and ".egg-info" not in str(p))
    for p in paths:
        if p.exists():
            h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _requirements_hash(suites: Iterable[manifest.Suite]) -> str:
    h = hashlib.sha256(json.dumps(manifest.BASE_REQUIREMENTS).encode())
    for s in suites:
        h.update(json.dumps([s.requirement, list(s.test_deps)]).encode())
    return h.hexdigest()


def ensure_venv(version: str, suites: Iterable[manifest.Suite] = manifest.SUITES,
                log: Log = _default_log) -> Venv:
    """Create (once) and update the corpus virtualenv of Python `version`.  Raises
    NotRun when the virtualenv itself cannot be made; a suite that cannot be
    fetched or installed lands in Venv.not_run."""
    suites = list(suites)
    path = CACHE / "venv" / version
    with _locked(CACHE / "locks" / f"venv-{version}.lock"):
        python = path / "bin" / "python"
        if not python.exists():
            base = find_python(version)
            log(f"creating the corpus virtualenv {path}")
            out = subprocess.run([base, "-m", "venv", str(path)], capture_output=True, text=True)
            if out.returncode != 0:
                raise NotRun(f"python -m venv failed: {out.stderr.strip()[-300:]}")
        venv = Venv(version, path, str(python), str(path / "bin" / "pyward"))
        stamp_file = path / "corpus-stamp.json"
        stamp = json.loads(stamp_file.read_text()) if stamp_file.exists() else {}

        # 1. base requirements and every suite's test dependencies: wheels or sdists, pinned, --no-deps
        want = _requirements_hash(manifest.SUITES)
        if stamp.get("requirements") != want:
            reqs = list(manifest.BASE_REQUIREMENTS)
            for s in manifest.SUITES:
                reqs += [r for r in s.test_deps if r not in reqs]
            log(f"installing the corpus requirements into {path}")
            out = _pip(str(python), "install", "--quiet", "--no-deps", *reqs)
            if out.returncode != 0:
                raise NotRun(f"could not install the corpus requirements: {_pip_error(out)}")
            stamp = {"requirements": want, "suites": {}}
            stamp_file.write_text(json.dumps(stamp))

        # 2. every suite, built from its own sdist (this replaces a wheel installed above)
        for s in suites:
            try:
                sdist = fetch_sdist(s, str(python), log)
                venv.sources[s.name] = unpack(s, sdist)
            except NotRun as exc:
                venv.not_run[s.name] = str(exc)
                continue
            if stamp["suites"].get(s.name) != s.version:
                log(f"building and installing {s.requirement} from its sdist")
                out = _pip(str(python), "install", "--quiet", "--no-deps", "--force-reinstall", str(sdist))
                if out.returncode != 0:
                    venv.not_run[s.name] = f"could not build/install {sdist.name}: {_pip_error(out)}"
                    continue
                stamp["suites"][s.name] = s.version
                stamp_file.write_text(json.dumps(stamp))

        # 3. pyward from this checkout, rebuilt whenever its sources change
        src_hash = _pyward_source_hash()
        if stamp.get("pyward") != src_hash:
            log(f"installing pyward from {ROOT} into {path}")
            out = _pip(str(python), "install", "--quiet", "--no-deps", "--no-build-isolation", str(ROOT))
            if out.returncode != 0:
                raise NotRun(f"could not install pyward from the checkout: {_pip_error(out)}")
            stamp["pyward"] = src_hash
            stamp_file.write_text(json.dumps(stamp))

        # 4. the wheel the pip-download program downloads from a local directory
        wheels = CACHE / "wheels"
        if list(wheels.glob("six-1.17.0-*.whl")):
            venv.wheels = wheels
        elif "six" in venv.sources:
            out = _pip(str(python), "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                       str(_sdist_in(CACHE / "sdists" / "six-1.17.0")))
            if out.returncode == 0 and list(wheels.glob("six-1.17.0-*.whl")):
                venv.wheels = wheels
            else:
                venv.wheels_reason = f"could not build the six wheel: {_pip_error(out)}"
        else:
            venv.wheels_reason = "the six sdist is not available: " + venv.not_run.get("six", "not selected")

        out = subprocess.run([str(python), "-c", "import markupsafe._speedups"], capture_output=True)
        venv.notes["markupsafe"] = ("C speedups built and used" if out.returncode == 0
                                    else "C speedups not built: pure-Python fallback")
        venv.freeze = _pip(str(python), "freeze", "--all").stdout.split()
        venv.pip_check = _pip(str(python), "check").stdout.strip()
    return venv


# --------------------------------------------------------------------------- parsing results


def parse_junit(path: Path) -> tuple[dict[str, int], list[str]]:
    """(counts, failing test ids) from pytest's --junitxml file."""
    root = ET.parse(path).getroot()
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    failing = []
    for case in root.iter("testcase"):
        tags = {child.tag for child in case}
        ident = f"{case.get('classname', '')}::{case.get('name', '')}"
        if "error" in tags:
            counts["errors"] += 1
            failing.append(ident + " (error)")
        elif "failure" in tags:
            counts["failed"] += 1
            failing.append(ident)
        elif "skipped" in tags:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts, failing


_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ", re.M)
_UNITTEST_END = re.compile(r"^(OK|FAILED)(?: \((.*)\))?\s*$", re.M)


def parse_unittest(stderr: str) -> dict[str, int] | None:
    """Counts from unittest's closing lines ("Ran N tests in Xs" then "OK (skipped=S)"
    or "FAILED (failures=F, errors=E, skipped=S)"); None when they are missing."""
    ran = _UNITTEST_RAN.findall(stderr)
    end = _UNITTEST_END.findall(stderr)
    if not ran or not end:
        return None
    detail = dict.fromkeys(("failures", "errors", "skipped", "expected failures", "unexpected successes"), 0)
    for part in filter(None, (p.strip() for p in (end[-1][1] or "").split(","))):
        key, _, value = part.partition("=")
        detail[key.strip()] = int(value)
    total = int(ran[-1])
    bad = detail["failures"] + detail["errors"] + detail["skipped"] + detail["expected failures"]
    return {"passed": total - bad, "failed": detail["failures"], "skipped": detail["skipped"]
            + detail["expected failures"], "errors": detail["errors"],
            "unexpected_successes": detail["unexpected successes"]}


def read_report(rec: Record, report: Path, own_dirs: Iterable[Path],
                own_alerts: Iterable[tuple[str, str]] = ()) -> None:
    """Denials, tamper alerts (split into the suite's own patches and the rest) and
    heals from pyward's report.  `own_alerts`: (target, place) of the suite's own patches
    made where no file of its is (code a test pipes to a Python child)."""
    if not report.exists():
        rec.problems.append("pyward wrote no report")
        return
    try:
        data = json.loads(report.read_text())
    except ValueError as exc:
        rec.problems.append(f"unreadable pyward report: {exc}")
        return
    summary = data.get("summary", {})
    rec.denied = summary.get("denied")
    rec.alerts = summary.get("tamper_alerts")
    rec.healed = summary.get("healed")
    own = tuple(str(p) + os.sep for p in own_dirs)
    unexplained = 0
    denials: list[str] = []
    samples: list[str] = []
    for e in data.get("events", []):
        if e.get("engine") == "sandbox" and e.get("kind") == "denied":
            msg = f"{e.get('message', '')} [at {e.get('where')}]"
            if msg not in denials:
                denials.append(msg)
        elif e.get("engine") == "tamper" and e.get("severity") == "alert":
            places = [e.get("where") or "", (e.get("details") or {}).get("caller") or ""]
            if not any(p.startswith(own) for p in places) and \
                    not any(e.get("name") == name and places[0].startswith(place) for name, place in own_alerts):
                unexplained += 1
                if len(samples) < 8:
                    samples.append(e.get("message", ""))
        elif e.get("severity") == "error":
            msg = f"[{e.get('engine')}/{e.get('kind')}] {e.get('message', '')}"
            if msg not in rec.pyward_errors:
                rec.pyward_errors.append(msg)
    rec.alerts_unexplained = unexplained
    rec.alert_samples = samples
    rec.denials = denials[:10]


# --------------------------------------------------------------------------- running


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _tmp_for(d: Path) -> Path:
    """An empty TMPDIR for a run in d: a short path below /tmp (an AF_UNIX socket
    path, such as multiprocessing's, must fit in 108 bytes), outside the run's
    tree (learn writes paths below its policy file relative to it, and $TMP only
    for the rest); d/tmp links to it.  Runs sharing d (learn, learned) share it."""
    link = d / "tmp"
    if link.is_symlink():
        target = Path(os.readlink(link))
    else:
        root = d
        while root.parent != root and not (root / "tmproot").is_symlink():
            root = root.parent
        if not (root / "tmproot").is_symlink():
            raise RuntimeError(f"no tmproot above {d}")
        base = Path(os.readlink(root / "tmproot"))
        n = len(list(base.iterdir()))
        target = base / str(n)
        if link.exists():
            shutil.rmtree(link)
        link.symlink_to(target)
    return _fresh(target)


def _copy_src(pristine: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(pristine, dest, symlinks=True)
    return dest


def _execute(rec: Record, cmd: list[str], cwd: Path, env_extra: dict[str, str], timeout: float,
             outdir: Path) -> subprocess.CompletedProcess | None:
    rec.command, rec.cwd, rec.env = cmd, str(cwd), env_extra
    start = time.perf_counter()
    try:
        out = subprocess.run(cmd, cwd=cwd, env=clean_env(**env_extra), capture_output=True, text=True,
                             errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        rec.wall = time.perf_counter() - start
        rec.status = "timeout"
        rec.reason = f"did not finish in {timeout:.0f}s"
        rec.stderr_tail = _tail(exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes)
                                else (exc.stderr or ""))
        return None
    rec.wall = time.perf_counter() - start
    rec.exit = out.returncode
    (outdir / f"{rec.mode}.stdout").write_text(out.stdout)
    (outdir / f"{rec.mode}.stderr").write_text(out.stderr)
    rec.pyward_errors += [line for line in out.stderr.splitlines() if line.startswith("[pyward][error]")]
    rec.stderr_tail = _tail(out.stderr)
    rec.error_line = _error_line(out.stderr)
    return out


_EXC_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Denied|Exception|Warning|Exit|Interrupt)\b.*")


def _error_line(stderr: str) -> str:
    for line in reversed(stderr.splitlines()):
        if not line.startswith("[pyward]") and _EXC_LINE.match(line):
            return line[:500]
    return ""


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def pyward_command(venv: Venv, mode: str, d: Path, target: list[str]) -> list[str]:
    """The pyward command line of one mode (target: the program's argv after python)."""
    report = ["--report", str(d / f"{mode}.report.json")]
    if mode == "run":
        return [venv.pyward, "run", *report, *target]
    if mode == "learn":
        return [venv.pyward, "learn", "-o", str(d / "policy.toml"), "--force", *report, *target]
    if mode == "learned":
        return [venv.pyward, "run", "--config", str(d / "policy.toml"), *report, *target]
    if mode == "heal":
        return [venv.pyward, "run", "--heal", "--store", str(d / "heal.db"), *report, *target]
    if mode == "tight":
        return [venv.pyward, "run", "--mode", "enforce", "--config", str(d / "tight.toml"), *report, *target]
    raise ValueError(mode)


def tight_policy(venv: Venv, src: Path, extra: dict[str, tuple[str, ...]]) -> str:
    """A hand-written least-privilege policy for running a test suite: read the
    suite's directory, the virtualenv and the interpreter; read and write $TMP; import
    what the virtualenv holds; nothing else unless the suite's manifest says so."""
    base = subprocess.run([venv.python, "-c", "import sys; print(sys.base_prefix)"], capture_output=True,
                          text=True).stdout.strip()
    perms: dict[str, list[str]] = {"read": [str(src), str(venv.path), base, "$TMP"], "write": ["$TMP"]}
    for k, v in [*manifest.TIGHT_COMMON.items(), *extra.items()]:
        perms.setdefault(k, []).extend(v)
    lines = ['# hand-written by tests/realworld/harness.py: the tight policy of a test suite',
             'mode = "enforce"', "", "[permissions]"]
    for k, v in perms.items():
        lines.append(f"{k} = [{', '.join(json.dumps(x) for x in v)}]")
    return "\n".join(lines) + "\n"


def run_suite(venv: Venv, suite: manifest.Suite, modes: Iterable[str], rundir: Path, timeout: float,
              log: Log = _default_log, extra_args: Iterable[str] = ()) -> list[Record]:
    py = venv.version
    modes = [m for m in modes if m != "plain" and (m != "tight" or suite.tight)]
    if suite.name in venv.not_run:
        return [Record("suite", suite.name, py, m, status="not run", reason=venv.not_run[suite.name],
                       note=suite.note) for m in ["plain", *modes]]
    pristine = venv.sources[suite.name]
    base = rundir / suite.name
    args = ["-m", "pytest", "-p", "no:cacheprovider", *suite.pytest_args, *extra_args]
    for test, _why in suite.deselect:
        args += ["--deselect", test]

    def one(mode: str, pair: str | None = None) -> Record:
        # learn and learned share one directory: the learned policy names its paths;
        # every run still starts from a fresh copy of the sdist and an empty TMPDIR
        d = base / (pair or mode)
        d.mkdir(parents=True, exist_ok=True)
        src = _copy_src(pristine, d / "src")
        tmp = _tmp_for(d)
        junit = tmp / "junit.xml"
        target = [*args, f"--junitxml={junit}"]
        rec = Record("suite", suite.name, py, mode, note=suite.note)
        if mode == "plain":
            cmd = [venv.python, *target]
        else:
            if mode == "tight":
                (d / "tight.toml").write_text(tight_policy(venv, src, suite.tight_extra))
            cmd = pyward_command(venv, mode, d, target)
        log(f"[{py}] {suite.name}: {mode}")
        out = _execute(rec, cmd, src, {"TMPDIR": str(tmp)}, timeout, d)
        if out is not None:
            if junit.exists():
                try:
                    rec.counts, rec.failing = parse_junit(junit)
                except ET.ParseError as exc:
                    rec.problems.append(f"unreadable junit xml: {exc}")
                shutil.copy(junit, d / f"{mode}.junit.xml")
            else:
                rec.problems.append("pytest wrote no junit xml (it did not get to run the tests)")
            if mode != "plain":
                read_report(rec, d / f"{mode}.report.json", [src, tmp], suite.own_alerts)
        return rec

    plain = one("plain")
    records = [plain]
    if plain.status != "ok" or plain.exit != 0 or plain.counts is None or plain.counts["failed"] \
            or plain.counts["errors"]:
        failing = ", ".join(plain.failing[:10]) or plain.reason or _tail(plain.stderr_tail, 3)
        plain.status = "plain failed"
        plain.reason = f"exit {plain.exit}; failing: {failing}"
        plain.problems.append("the plain run fails: excluded from the comparison")
        return records + [Record("suite", suite.name, py, m, status="excluded",
                                 reason="the plain run fails", note=suite.note) for m in modes]
    for mode in modes:
        rec = one(mode, pair="learn" if mode in ("learn", "learned") else None)
        compare(rec, plain)
        records.append(rec)
    return records


def compare(rec: Record, plain: Record) -> None:
    """Judge one pyward run against the plain run; every difference is a problem."""
    if rec.status != "ok":
        rec.match = False
        rec.problems.append(f"{rec.status}: {rec.reason}")
    else:
        reasons = []
        if rec.exit != plain.exit:
            reasons.append(f"exit {rec.exit} != plain {plain.exit}")
        if rec.counts != plain.counts:
            reasons.append(f"counts {fmt_counts(rec.counts)} != plain {fmt_counts(plain.counts)}")
        if plain.stdout_sha is not None and rec.stdout_sha != plain.stdout_sha:
            reasons.append("stdout differs from plain: " + (rec.stdout_diff or "?"))
        rec.match = not reasons
        rec.problems += reasons
        if rec.counts and plain.counts and rec.counts != plain.counts:
            new_failures = sorted(set(rec.failing) - set(plain.failing))
            if new_failures:
                rec.problems.append(f"{len(new_failures)} tests fail only here: " + ", ".join(new_failures[:8])
                                    + (" ..." if len(new_failures) > 8 else ""))
    if plain.wall and rec.wall:
        rec.ratio = rec.wall / plain.wall
    if rec.mode == "learned" and rec.denied:
        rec.problems.append(f"{rec.denied} denials under the learned policy")
    if rec.mode in ("run", "learn", "heal") and rec.denied:
        rec.problems.append(f"{rec.denied} denials in watch mode")
    if rec.alerts_unexplained:
        rec.problems.append(f"{rec.alerts_unexplained} tamper alerts not from the suite's own patches")
    if rec.healed:
        rec.problems.append(f"{rec.healed} heals in a run that does not crash under python")
    if rec.pyward_errors:
        rec.problems.append("pyward errors: " + " | ".join(rec.pyward_errors[:3]))


def fmt_counts(c: dict[str, int] | None) -> str:
    if c is None:
        return "-"
    return f"{c['passed']}/{c['failed']}/{c['skipped']}/{c['errors']}"


# --------------------------------------------------------------------------- programs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_ADDRESS = re.compile(r"\b0x[0-9a-f]{6,16}\b")


def _normalise(text: str, mapping: dict[str, str]) -> str:
    """Temporary paths and ports become names; object addresses (`<... at 0x7f...>`,
    different in every process) become 0xADDR."""
    for old, new in sorted(mapping.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(old, new)
    return _ADDRESS.sub("0xADDR", text)


def _strip_pyward(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if not line.startswith("[pyward]"))


def _first_diff(a: str, b: str) -> str:
    al, bl = a.splitlines(), b.splitlines()
    for i in range(max(len(al), len(bl))):
        x = al[i] if i < len(al) else "<end>"
        y = bl[i] if i < len(bl) else "<end>"
        if x != y:
            return f"line {i + 1}: plain {x!r} / here {y!r}"
    return ""


def run_program(venv: Venv, prog: manifest.Program, modes: Iterable[str], rundir: Path, timeout: float,
                log: Log = _default_log) -> list[Record]:
    py = venv.version
    modes = [m for m in modes if m != "plain" and m in manifest.PROGRAM_MODES]
    reason = ""
    if prog.needs:
        out = subprocess.run([venv.python, "-c", "import " + ", ".join(prog.needs)], capture_output=True, text=True)
        if out.returncode != 0:
            reason = f"the interpreter does not ship {', '.join(prog.needs)}"
    if "{wheels}" in " ".join(prog.args) and venv.wheels is None:
        reason = venv.wheels_reason or "no local wheel"
    if reason:
        return [Record("program", prog.name, py, m, status="not run", reason=reason, note=prog.note)
                for m in ["plain", *modes]]
    base = rundir / "programs" / prog.name
    port = _free_port() if prog.kind == "http" else 0

    def one(mode: str, pair: str | None = None) -> tuple[Record, str]:
        d = base / (pair or mode)
        d.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_for(d)
        subst = {"programs": str(PROGRAMS_DIR), "data": str(DATA_DIR), "wheels": str(venv.wheels or ""),
                 "tmp": str(tmp), "port": str(port)}
        target = [a.format(**subst) for a in prog.args]
        rec = Record("program", prog.name, py, mode, note=prog.note)
        cmd = [venv.python, *target] if mode == "plain" else pyward_command(venv, mode, d, target)
        log(f"[{py}] program {prog.name}: {mode}")
        mapping = {str(tmp): "$TMP", str(port): "$PORT"} if port else {str(tmp): "$TMP"}
        if prog.kind == "http":
            stdout, stderr = _run_http(rec, cmd, tmp, port, timeout, d)
        else:
            out = _execute(rec, cmd, tmp, {"TMPDIR": str(tmp)}, timeout, d)
            stdout, stderr = (out.stdout, out.stderr) if out else ("", "")
        if rec.status != "ok":
            return rec, ""
        stdout = _normalise(stdout, mapping)
        for name in prog.outputs:
            f = tmp / name
            content = _normalise(f.read_text(errors="replace"), mapping) if f.exists() else "<missing>"
            stdout += f"\n--- {name} ---\n" + content
        (d / f"{mode}.stdout.normalised").write_text(stdout)
        rec.stdout_sha = hashlib.sha256(stdout.encode()).hexdigest()
        if prog.kind == "unittest":
            rec.counts = parse_unittest(stderr)
            if rec.counts is None:
                rec.problems.append("no unittest summary on stderr")
        if mode != "plain":
            read_report(rec, d / f"{mode}.report.json", [tmp, PROGRAMS_DIR])
        return rec, _normalise(stderr, mapping)

    plain, plain_stderr = one("plain")
    records = [plain]
    plain_text = (base / "plain" / "plain.stdout.normalised")
    if plain.status != "ok" or plain.exit not in (0,) or plain.problems:
        plain.status = "plain failed"
        plain.reason = f"exit {plain.exit}; {plain.reason or _tail(plain.stderr_tail, 3)}"
        return records + [Record("program", prog.name, py, m, status="excluded", reason="the plain run fails",
                                 note=prog.note) for m in modes]
    for mode in modes:
        rec, stderr = one(mode, pair="learn" if mode in ("learn", "learned") else None)
        if rec.status == "ok" and rec.stdout_sha != plain.stdout_sha:
            here = (base / ("learn" if mode in ("learn", "learned") else mode) / f"{mode}.stdout.normalised")
            rec.stdout_diff = _first_diff(plain_text.read_text(), here.read_text())
        compare(rec, plain)
        if rec.status == "ok":
            # pyward speaks only on stderr lines starting with [pyward]: the rest must be python's
            if prog.kind == "plain":
                a, b = _strip_pyward(plain_stderr), _strip_pyward(stderr)
                if a != b:
                    rec.problems.append("stderr (without [pyward] lines) differs: " + _first_diff(a, b))
        records.append(rec)
    return records


def _run_http(rec: Record, cmd: list[str], cwd: Path, port: int, timeout: float, d: Path) -> tuple[str, str]:
    """Start the server, GET /index.html once, then SIGINT it; the response is part of its stdout."""
    rec.command, rec.cwd, rec.env = cmd, str(cwd), {"TMPDIR": str(cwd)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=clean_env(TMPDIR=str(cwd)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, errors="replace")
    response = "<no response>"
    deadline = time.monotonic() + min(timeout, 30)
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/index.html")
            r = conn.getresponse()
            response = f"HTTP {r.status} {r.reason}\n{r.read().decode(errors='replace')}"
            conn.close()
            break
        except OSError:
            time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        rec.status, rec.reason = "timeout", "the server did not stop after SIGINT"
    rec.wall = time.perf_counter() - start
    rec.exit = proc.returncode
    (d / f"{rec.mode}.stdout").write_text(stdout)
    (d / f"{rec.mode}.stderr").write_text(stderr)
    rec.pyward_errors += [line for line in stderr.splitlines() if line.startswith("[pyward][error]")]
    rec.stderr_tail = _tail(stderr)
    rec.error_line = _error_line(stderr)
    return f"{stdout}\n--- response ---\n{response}", ""


# --------------------------------------------------------------------------- the whole corpus


@dataclass
class Results:
    python: str
    python_version: str = ""
    pyward_commit: str = ""
    started: str = ""
    fast: bool = False
    rundir: str = ""
    #: added to every suite's pytest arguments, plain run included (exploration only: scripts/corpus --pytest-args)
    extra_pytest_args: list[str] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    not_run_reason: str = ""       # the whole version could not run (no interpreter, no virtualenv)
    notes: dict[str, str] = field(default_factory=dict)
    freeze: list[str] = field(default_factory=list)
    pip_check: str = ""

    def find(self, kind: str, name: str, mode: str) -> Record | None:
        for r in self.records:
            if (r.kind, r.name, r.mode) == (kind, name, mode):
                return r
        return None

    def to_json(self) -> dict:
        d = asdict(self)
        for r, rec in zip(d["records"], self.records):
            r["clean"] = rec.clean
            r["repro"] = rec.repro() if rec.command else ""
        return d


def select(fast: bool, names: Iterable[str] | None = None) -> tuple[list[manifest.Suite], list[manifest.Program]]:
    names = set(names or ())
    suites = [s for s in manifest.SUITES if (not fast or s.fast) and (not names or s.name in names)]
    programs = [p for p in manifest.PROGRAMS if (not fast or p.fast) and (not names or p.name in names)]
    unknown = names - {s.name for s in manifest.SUITES} - {p.name for p in manifest.PROGRAMS}
    if unknown:
        raise ValueError(f"unknown suite or program: {', '.join(sorted(unknown))}")
    return suites, programs


class Corpus:
    """One Python version's corpus, run lazily: the virtualenv is made on first use,
    each suite or program runs once, when first asked for (the fast-slice tests ask
    one at a time, so `pytest -k six` runs only six)."""

    def __init__(self, version: str, *, fast: bool = False, modes: Iterable[str] | None = None,
                 timeout: float | None = None, log: Log = _default_log,
                 extra_pytest_args: Iterable[str] = ()) -> None:
        modes = list(modes or manifest.MODES)
        if "plain" not in modes:
            modes.insert(0, "plain")
        if "learned" in modes and "learn" not in modes:
            modes.insert(modes.index("learned"), "learn")
        self.version, self.fast, self.modes, self.log = version, fast, modes, log
        self.timeout = timeout or (180 if fast else 900)
        self.results = Results(python=version, fast=fast, started=time.strftime("%Y-%m-%dT%H:%M:%S"),
                               extra_pytest_args=list(extra_pytest_args))
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True).stdout.strip()
        self.results.pyward_commit = commit + ("+dirty" if dirty else "")
        self._venv: Venv | None = None
        self._done: dict[tuple[str, str], list[Record]] = {}
        self.rundir: Path | None = None

    def venv(self, suites: Iterable[manifest.Suite]) -> Venv | None:
        if self._venv is None and not self.results.not_run_reason:
            try:
                self._venv = ensure_venv(self.version, suites, self.log)
            except NotRun as exc:
                self.results.not_run_reason = str(exc)
                return None
            v = self._venv
            self.results.python_version = subprocess.run(
                [v.python, "-c", "import platform; print(platform.python_version())"],
                capture_output=True, text=True).stdout.strip()
            self.results.notes, self.results.freeze, self.results.pip_check = dict(v.notes), v.freeze, v.pip_check
            runs = RUNS / self.version
            self.rundir = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}{'-fast' if self.fast else ''}"
            self.rundir.mkdir(parents=True)
            tmproot = tempfile.mkdtemp(prefix="pwc-", dir="/tmp" if os.path.isdir("/tmp") else None)
            (self.rundir / "tmproot").symlink_to(tmproot)
            self.results.rundir = str(self.rundir)
            _prune(runs)
        return self._venv

    def _not_run(self, kind: str, name: str, modes: Iterable[str]) -> list[Record]:
        return [Record(kind, name, self.version, m, status="not run", reason=self.results.not_run_reason)
                for m in modes]

    def suite(self, suite: manifest.Suite, suites: Iterable[manifest.Suite] | None = None) -> list[Record]:
        key = ("suite", suite.name)
        if key not in self._done:
            venv = self.venv(suites or [suite])
            if venv is None:
                recs = self._not_run("suite", suite.name, [m for m in self.modes if m != "tight" or suite.tight])
            else:
                if suite.name not in venv.sources and suite.name not in venv.not_run:
                    self._add(suite)  # a suite the first call did not set up
                recs = run_suite(venv, suite, self.modes, self.rundir, self.timeout, self.log,
                                 self.results.extra_pytest_args)
            self._done[key] = recs
            self.results.records += recs
        return self._done[key]

    def program(self, prog: manifest.Program, suites: Iterable[manifest.Suite] = ()) -> list[Record]:
        key = ("program", prog.name)
        if key not in self._done:
            venv = self.venv(suites)
            if venv is None:
                recs = self._not_run("program", prog.name, [m for m in self.modes if m in manifest.PROGRAM_MODES])
            else:
                if "{wheels}" in " ".join(prog.args) and venv.wheels is None and "six" not in venv.sources:
                    self._add(next(s for s in manifest.SUITES if s.name == "six"))
                recs = run_program(venv, prog, self.modes, self.rundir, self.timeout, self.log)
            self._done[key] = recs
            self.results.records += recs
        return self._done[key]

    def _add(self, suite: manifest.Suite) -> None:
        more = ensure_venv(self.version, [suite], self.log)
        assert self._venv is not None
        self._venv.sources.update(more.sources)
        self._venv.not_run.update(more.not_run)
        self._venv.wheels, self._venv.wheels_reason = more.wheels, more.wheels_reason

    def save(self) -> None:
        if self.rundir is not None:
            (self.rundir / "results.json").write_text(json.dumps(self.results.to_json(), indent=1))


def run_corpus(version: str, *, fast: bool = False, names: Iterable[str] | None = None,
               modes: Iterable[str] | None = None, timeout: float | None = None,
               log: Log = _default_log, extra_pytest_args: Iterable[str] = ()) -> Results:
    suites, programs = select(fast, names)
    corpus = Corpus(version, fast=fast, modes=modes, timeout=timeout, log=log, extra_pytest_args=extra_pytest_args)
    for s in suites:
        corpus.suite(s, suites)
    for p in programs:
        corpus.program(p, suites)
    corpus.save()
    return corpus.results


def _prune(runs: Path) -> None:
    old = sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.name)[:-KEEP_RUNS]
    for p in old:
        if (p / "tmproot").is_symlink():
            shutil.rmtree(os.readlink(p / "tmproot"), ignore_errors=True)
        shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------- the table


def table(results: Iterable[Results]) -> str:
    head = ("python", "suite/program", "mode", "match", "exit", "pass/fail/skip/err", "denied",
            "alerts(unexpl)", "time x", "notes")
    rows = [head]
    for res in results:
        for r in res.records:
            if r.status in ("not run", "excluded"):
                match = "-"
            elif r.mode == "plain":
                match = "base" if r.status == "ok" else "FAILED"
            else:
                match = "yes" if r.match else "NO"
            alerts = "-" if r.alerts is None else f"{r.alerts}({r.alerts_unexplained})"
            notes = r.reason if r.status not in ("ok",) else "; ".join(
                p for p in r.problems if not p.startswith(("counts ", "exit ", "pytest wrote no junit")))
            if r.match is False and r.error_line:  # what stopped it, first
                notes = r.error_line + ("; " + notes if notes else "")
            rows.append((r.python, r.name, r.mode, match, "-" if r.exit is None else str(r.exit),
                         fmt_counts(r.counts) if r.counts else ("stdout" if r.stdout_sha else "-"),
                         "-" if r.denied is None else str(r.denied), alerts,
                         "-" if r.ratio is None else f"{r.ratio:.2f}", (r.status + ": " if r.status not in
                                                                         ("ok",) else "") + notes[:150]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 5)
    return "\n".join(lines)


def findings(results: Iterable[Results]) -> str:
    """Every unclean row with its reproduction command and what differed."""
    out = []
    for res in results:
        if res.not_run_reason:
            out.append(f"Python {res.python}: not run: {res.not_run_reason}")
        for r in res.records:
            if r.clean or r.status == "excluded":
                continue
            if r.status == "not run":
                out.append(f"[{r.python}] {r.name} {r.mode}: NOT RUN: {r.reason}")
                continue
            out.append(f"[{r.python}] {r.name} {r.mode}: " + ("; ".join(r.problems) or r.status))
            if r.error_line and r.match is False:
                out.append(f"    error: {r.error_line}")
            if r.command:
                out.append(f"    repro: {r.repro()}")
            for dn in r.denials[:5]:
                out.append(f"    denied: {dn[:300]}")
            for a in r.alert_samples[:3]:
                out.append(f"    alert: {a[:300]}")
            if r.stderr_tail and (r.match is False or r.pyward_errors or r.status != "ok"):
                out.append("    stderr: " + r.stderr_tail.replace("\n", "\n            ")[-1500:])
    return "\n".join(out)
