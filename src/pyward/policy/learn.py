"""`pyward learn`: turn what a program did in one run into a least-privilege policy.

Observations are (permission, resource, operation) from a watch-mode run.
Paths are generalised sensibly: three or more entries in one directory become
that directory (repeatedly, but never a system-wide directory such as /, /usr
or $HOME itself), temporary files become $TMP, paths below the policy file's
directory are written relative to it and paths below $HOME as $HOME/...
Environment variables are recorded by name; values are never written.
"""
from __future__ import annotations

import os
import sys
import time

from .._isolation import isolate_module
from ..executable import shebang
from . import OBSERVED, PERMISSIONS, SERVER_BIND, path_variables

time = isolate_module(time)  # noqa: F811 - a learned policy is dated by the clock, not by freezegun

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping

COLLAPSE_AT = 3
#: the shared-memory file system, a temporary directory of its own (multiprocessing.heap, shm_open)
SHARED_MEMORY = "/dev/shm"
TOO_BROAD = {"/", "/home", "/usr", "/etc", "/var", "/proc", "/proc/self", "/proc/thread-self", "/sys", "/dev", "/opt",
             "/root", "/srv", "/mnt"}


def generalise(observations: Iterable[tuple[str, str, str]], base: str,
               environment: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Rules per permission, each list sorted; `base` is the policy file's directory, `environment` the
    variables the learning run started with (their names: see env_prefixes; $HOME and $TMP)."""
    environment = {} if environment is None else environment
    variables = path_variables(environment)
    seen: dict[str, set[str]] = {perm: set() for perm in PERMISSIONS}
    for perm, resource, op in observations:
        if perm == "env" and op == "listing":
            continue  # only seen while the program listed the environment: under enforce it lists fewer
        if perm in seen and resource:
            seen[perm].add(resource)
    rules: dict[str, list[str]] = {}
    for perm in ("read", "write"):
        rules[perm] = [display_path(p, base, variables) for p in collapse(seen[perm], variables, base)]
    # gRPC's server: its own channels connect in C to the port it was given, which the audit layer never sees
    served = {r.rpartition(":")[0] for perm, r, op in observations if perm == "net" and op == SERVER_BIND}
    net = {tmp_socket(r, variables["TMP"]) for r in ephemeral_to_host(seen["net"], served)}
    covered = {resource.rpartition(":")[0] for resource in net if ":" in resource and not resource.startswith("[")}
    rules["net"] = sorted(r for r in net if not (":" not in r and r in covered))
    seen["run"] = {interpreter_name(command, variables["TMP"]) for command in seen["run"]}
    for perm in ("run", "ffi", "import"):
        rules[perm] = sorted(seen[perm] - {"*"}) + (["*"] if "*" in seen[perm] else [])
    rules["env"] = env_prefixes(seen["env"] - {"*"}, set(environment)) + (["*"] if "*" in seen["env"] else [])
    return {perm: sorted(set(values)) for perm, values in rules.items() if values}


def env_prefix(name: str) -> str:
    """The prefix a variable's name shares with its kind (`PIP_` of `PIP_CERT`), or the name itself."""
    cut = name.find("_", 1)
    return name[:cut + 1] if cut > 0 else name


def listed_only(observations: Iterable[tuple[str, str, str]]) -> list[str]:
    """Variables the program saw only by listing the environment, of a prefix it also reads by name (pip
    reads `PIP_*` options by going through `os.environ`): not learned, since a listing cannot tell what the
    program used (under enforce it lists only what the policy allows), but worth naming in the policy."""
    read = {name for perm, name, op in observations if perm == "env" and op != "listing" and name != "*"}
    prefixes = {env_prefix(name) for name in read} - read
    return sorted({name for perm, name, op in observations if perm == "env" and op == "listing"
                   and name not in read and env_prefix(name) in prefixes})


def env_prefixes(names: set[str], environment: set[str]) -> list[str]:
    """Three or more variables of one prefix (`UVICORN_HOST`, `UVICORN_PORT`...: a CLI reading an option each)
    become `PREFIX_*`, unless the environment holds a variable of that prefix the program did not read (`AWS_*`
    must not hand over an `AWS_SECRET_ACCESS_KEY` it never touched)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(env_prefix(name), []).append(name)
    out = []
    for prefix, members in groups.items():
        if len(members) >= COLLAPSE_AT and prefix.endswith("_") and \
                not any(other.startswith(prefix) and other not in names for other in environment):
            out.append(prefix + "*")
        else:
            out += members
    return sorted(out)


def interpreter_name(command: str, tmp: str) -> str:
    """This interpreter started by its path (pip's build environment, multiprocessing) is learned
    by its name: the path is this machine's virtualenv, and a name is this interpreter wherever
    the policy goes (the kernel wall grants the interpreter bearing it).  So is a command in a
    temporary directory (the virtualenv `python -m build` makes): its path is new every run."""
    if command.startswith(tmp.rstrip("/") + "/"):
        return os.path.basename(command)
    if os.path.isabs(command):
        own = {os.path.realpath(exe) for exe in (sys.executable, getattr(sys, "_base_executable", "")) if exe}
        if os.path.realpath(command) in own and os.path.basename(command) in (
                os.path.basename(sys.executable), os.path.basename(os.path.realpath(sys.executable))):
            return os.path.basename(command)
    return command


def tmp_socket(resource: str, tmp: str) -> str:
    """A socket named after a temporary directory (a file, or an abstract name spelled
    as one) has a new name every run: every such socket."""
    for prefix in ("unix:", "unix:@"):
        if resource.startswith(prefix + tmp + "/"):
            return prefix + "$TMP"
    return resource


LOOPBACK = ("127.", "localhost", "[::1]")


def ephemeral_to_host(net: set[str], served: Iterable[str] = ()) -> set[str]:
    """Ports the OS chose in this run are not the next run's: a host the program bound with
    port 0 and also reached on another port (a test server and its client), a host `served`
    (see SERVER_BIND), and loopback ports in the ephemeral range (a test server talking to
    itself), become the host, any port.  A bind to port 0 and nothing more there (urllib3's
    check for IPv6, which every pip run makes) stays `HOST:0`: the same bind next run, and
    a rule with a port, so the kernel wall still holds TCP to the ports the policy names."""
    low, high = ephemeral_range()
    chosen = {r.rpartition(":")[0] for r in net if r.endswith(":0")}
    reached = {r.rpartition(":")[0] for r in net if not r.endswith(":0")} | set(served)
    out = set()
    for resource in net:
        host, sep, port = resource.rpartition(":")
        if sep and port.isdigit() and not resource.startswith(("unix:", "raw:")) and (port != "0" or host in reached) \
                and (host in chosen or (host.startswith(LOOPBACK) and (port == "0" or low <= int(port) <= high))):
            out.add(host)
        else:
            out.add(resource)
    return out


_RANGE: list[tuple[int, int]] = []


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for OS-chosen ports (Linux), or the IANA one. Read once: a learning run
    reads it before the program starts (SandboxEngine.start), where the sandbox does not judge
    pyward's own read as the program's."""
    if not _RANGE:
        try:
            with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                low, high = f.read().split()
            _RANGE.append((int(low), int(high)))
        except (OSError, ValueError):
            _RANGE.append((49152, 65535))
    return _RANGE[0]


def collapse(paths: set[str], variables: dict[str, str], base: str) -> set[str]:
    tmp, home = variables["TMP"], variables["HOME"]
    out = set()
    for path in paths:  # the tempfile module's random names (and O_TMPFILE opens of $TMP) become $TMP
        inside_base = path == base or path.startswith(base.rstrip("/") + "/")
        if path.startswith(SHARED_MEMORY + "/"):  # multiprocessing's arenas, shm_open's names: new each run
            out.add(SHARED_MEMORY)
            continue
        out.add(tmp if (path == tmp or path.startswith(tmp + "/")) and not inside_base else path)
    changed = True
    while changed:
        changed = False
        by_parent: dict[str, set[str]] = {}
        for path in out:
            by_parent.setdefault(os.path.dirname(path), set()).add(path)
        for parent, children in by_parent.items():
            if len(children) >= COLLAPSE_AT and parent not in TOO_BROAD and parent != home and parent != tmp:
                out -= children
                out.add(parent)
                changed = True
                break
    # a path below another rule is covered by it ($TMP aside: a project that lives in /tmp keeps its rules)
    return {p for p in out if not any(p != q and q != tmp and p.startswith(q.rstrip("/") + "/") for q in out)}


def display_path(path: str, base: str, variables: dict[str, str]) -> str:
    if path == base:
        return "."
    if path.startswith(base.rstrip("/") + "/"):
        return "./" + path[len(base.rstrip("/")) + 1:]
    if path == variables["TMP"] or path.startswith(variables["TMP"] + "/"):
        return "$TMP" + path[len(variables["TMP"]):]
    home = variables["HOME"]
    if path.startswith(home.rstrip("/") + "/"):
        return "$HOME/" + path[len(home.rstrip("/")) + 1:]
    return path


def toml_string(value: str) -> str:
    out = ['"']
    for char in value:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"{value!r} is not valid UTF-8 and cannot be written to TOML")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def not_python(commands: Iterable[str], search: str | None = None) -> list[str]:
    """The commands of `run` rules that are neither Python nor a script Python runs: no audit hook runs in
    them, so the files they open were not learned (the kernel wall refuses what the policy does not list).
    `search`: the PATH to find them in (the run's, as it started: not read from the program's view)."""
    import shutil

    out = []
    for command in commands:
        path = command if "/" in command else shutil.which(command, path=search if search is not None else os.defpath)
        if command == "fork" or path is None or not os.path.isfile(path) or _runs_python(path):
            continue
        out.append(command)
    return out


#: Libraries that open files or sockets in their own C code, beyond the calls the sandbox judges for them
#: (duckdb.connect, h5py's files, lxml's parse and write, a gRPC server's port, polars' scans and sinks): what
#: they open there raises no audit event, so a learning run cannot see it.  Top-level package -> what goes unseen.
NATIVE_IO = {
    "duckdb": "the files DuckDB's SQL opens (read_csv, read_parquet, COPY ... TO, ATTACH) and its network access",
    "pyarrow": "the files Arrow opens (pyarrow.csv, parquet, pyarrow.fs, datasets)",
    "lxml": "the files libxml2 and libxslt open for a document (an XSLT's document(), external entities, XInclude)",
    "grpc": "the connections of gRPC's channels",
    "polars": "the hosts of polars' cloud sources and sinks (s3://, gs://, az://, http://) and a PartitionBy "
              "sink's files",
}


def native_io(imports: Iterable[str]) -> list[str]:
    """The imported packages (of `import` rules) whose C code does I/O the audit layer does not see."""
    return [name for name in NATIVE_IO if name in imports]


def native_notice(libraries: list[str]) -> str:
    """What a learned policy cannot hold of those libraries, said once the policy is written."""
    unseen = "; ".join(f"{name}: {NATIVE_IO[name]}" for name in libraries)
    return (f"the program used {len(libraries)} librar{'ies' if len(libraries) != 1 else 'y'} that "
            f"{'do' if len(libraries) != 1 else 'does'} {'their' if len(libraries) != 1 else 'its'} own I/O in C, "
            f"which the audit layer does not see ({unseen}), so those files and hosts are not in the policy; "
            "under enforce only the kernel wall holds them, refusing what the policy does not list (add them, "
            "or run with --no-kernel)")


def _runs_python(path: str) -> bool:
    """A Python interpreter, or a script whose `#!` line runs one (console scripts: pip, pytest)."""
    real = os.path.realpath(path)
    if os.path.basename(real).startswith(("python", "pypy")):
        return True
    try:
        with open(real, "rb") as f:
            head = f.read(256)
    except OSError:
        return False
    return any(os.path.basename(program).startswith(("python", "pypy")) for program in shebang(head))


def render(rules: dict[str, list[str]], command: list[str], unseen: list[str] | None = None,
           native: list[str] | None = None, listed: list[str] | None = None) -> tuple[str, int]:
    """The policy file's text and its number of rules; `unseen`: the run rules' commands that are not Python;
    `native`: the imported libraries whose own I/O was not learned (NATIVE_IO); `listed`: see listed_only."""
    lines = [
        f"# pyward policy learned by `pyward learn` on {time.strftime('%Y-%m-%d %H:%M')} from:",
        "#   " + " ".join(command),
        "# Every rule below is something the program did in that run. Review it before",
        "# trusting it; anything not listed is denied (reads Python needs are implicit).",
        'mode = "enforce"',
        "",
        "[permissions]",
    ]
    count = 0
    skipped = []
    for perm in PERMISSIONS:
        values = rules.get(perm)
        if perm == "env" and listed:
            lines.append("# seen only when the program listed the environment (a listing does not say which it "
                         "used), so not learned: " + ", ".join(listed))
            lines.append("# (add to env those the program needs: under enforce its listing shows only what env "
                         "allows)")
        if not values:
            continue
        items = []
        for value in values:
            try:
                items.append(toml_string(value))
            except ValueError:
                skipped.append(value)
        if items:
            if perm == "import" and native:
                lines.append("# these do their own I/O in C, which was not learned: "
                             + "; ".join(f"{name}: {NATIVE_IO[name]}" for name in native))
                lines.append("# (under the kernel wall, add those files to read/write and hosts to net, or run "
                             "with --no-kernel)")
            if perm == "run" and unseen:
                lines.append(f"# not Python, so what they read and write was not learned: {', '.join(unseen)}")
                lines.append("# (under the kernel wall, add their files to read/write, or run with --no-kernel)")
            lines.append(f"{perm} = [")
            lines += [f"  {item}," for item in items]
            lines.append("]")
            count += len(items)
    for value in skipped:
        lines.append(f"# not representable in TOML (non-UTF-8 name), allow it on the command line: {value!r}")
    return "\n".join(lines) + "\n", count


def observations_of(events: Iterable[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(permission, resource, operation) of recorded sandbox events, as the sandbox engine collects them."""
    return [(e["details"].get("permission", ""), e["name"], e["details"].get("operation", "")) for e in events
            if e.get("engine") == "sandbox" and e.get("kind") in OBSERVED and type(e.get("details")) is dict
            and type(e.get("name")) is str]


def write_learned(path: str, observations: list[tuple[str, str, str]], invocation: list[str],
                  environment: Mapping[str, str] | None = None) -> tuple[str, int, list[str], list[str]]:
    """Write the policy; (path, rules, the commands it lets run that are not Python: see not_python, the
    libraries it imports that do their own I/O: see native_io)."""
    base = os.path.dirname(os.path.abspath(path))
    rules = generalise(observations, base, environment)
    unseen = not_python(rules.get("run", []), (environment or {}).get("PATH"))
    native = native_io(rules.get("import", []))
    text, count = render(rules, invocation, unseen, native, listed_only(observations))
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path, count, unseen, native


def unseen_notice(unseen: list[str]) -> str:
    """What a learned policy cannot hold, said once the policy is written."""
    shown = ", ".join(unseen[:5]) + (f" and {len(unseen) - 5} more" if len(unseen) > 5 else "")
    many = len(unseen) != 1
    they = "they read and write" if many else "it reads and writes"
    return (f"the program ran {len(unseen)} command{'s' * many} that {'are' if many else 'is'} not Python "
            f"({shown}): no audit hook runs there, so the files {they} are not in the policy; under enforce the "
            "kernel wall refuses them until you add them (or run with --no-kernel)")


def merge_answers(path: str, answers: list[tuple[str, str]], environ: Mapping[str, str] | None = None) -> str | None:
    """Add prompt answers (permission, scope or "*") to the [permissions] of a
    pyward.toml.  An existing file is parsed and rewritten (TOML has no way to
    extend a table in place), so its previous text is kept next to it as
    FILE.bak; returns that backup's path, or None for a new file. `environ`: the
    environment the run started with (see path_variables)."""
    import tomllib

    document: dict[str, Any] = {}
    backup = None
    if os.path.exists(path):
        with open(path, "rb") as f:
            raw = f.read()
        document = tomllib.loads(raw.decode("utf-8"))
        backup = path + ".bak"
        with open(backup, "wb") as f:
            f.write(raw)
    permissions = document.setdefault("permissions", {})
    if not isinstance(permissions, dict):
        raise ValueError("[permissions] is not a table")
    for perm, scope in answers:
        current = permissions.get(perm, [])
        if current is True:
            continue
        if scope == "*":
            permissions[perm] = True
            continue
        if perm in ("read", "write"):
            scope = display_path(scope, os.path.dirname(os.path.abspath(path)), path_variables(environ))
        values = [current] if isinstance(current, str) else list(current or [])
        if scope not in values:
            values.append(scope)
        permissions[perm] = values
    header = f"# pyward policy; answers given at the prompt added on {time.strftime('%Y-%m-%d %H:%M')}\n"
    text = header + dump_toml(document)
    tomllib.loads(text)  # never write a file pyward itself could not read back
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return backup


def dump_toml(document: dict[str, Any], prefix: str = "") -> str:
    """The TOML pyward's settings use: scalars, lists of scalars, nested tables."""
    lines, tables = [], []
    for key, value in document.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tables:
        name = f"{prefix}.{toml_key(key)}" if prefix else toml_key(key)
        out += f"\n[{name}]\n" + dump_toml(value, name)
    return out


def toml_key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else toml_string(key)


def toml_value(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {type(value).__name__} values back to TOML")
