"""The sandbox as a user meets it: flags, messages, modes, children, learn, the Python API."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from helpers import clean_env
from pyward.policy import learn
from pyward.sandbox.kernel import abi as landlock_abi
from sandbox_helpers import guard

# --- enforce, permission by permission -------------------------------------------------


@pytest.fixture
def project(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("alpha\n")
    (tmp_path / "data" / "b.csv").write_text("1,2\n")
    (tmp_path / "out").mkdir()
    return tmp_path


def test_denied_write_names_operation_resource_and_flag(project):
    run = guard(project, "open('out/x.txt', 'w').write('x')\n", "--allow-read=data")
    assert run.status == 1
    target = str(project / "out" / "x.txt")
    assert f"AccessDenied: write to '{target}' (open) denied by pyward's sandbox: allow it with " \
           f"--allow-write={target}" in run.stderr
    assert "pyward.AccessDenied" in run.stderr  # the name users know, not the module it lives in
    (event,) = run.denied
    assert event["where"] == f"{project / 'app.py'}:1"
    assert event["details"]["permission"] == "write"
    assert not (project / "out" / "x.txt").exists()


def test_the_program_can_catch_the_denial(project):
    code = """
        import pyward
        try:
            open('out/x.txt', 'w')
        except pyward.AccessDenied as exc:
            print('caught', isinstance(exc, PermissionError), exc.errno is None or exc.errno > 0)
        print('still running')
    """
    run = guard(project, code, "--allow-read=data")
    assert run.status == 0, run
    assert run.stdout == "caught True True\nstill running\n"


def test_allowed_operations_pass_and_deny_wins(project):
    code = """
        print(open('data/a.txt').read().strip())
        open('out/ok.txt', 'w').write('ok')
        try:
            open('out/private.txt', 'w')
        except PermissionError as exc:
            print('denied:', exc)
    """
    run = guard(project, code, "--allow-write=out", "--deny-write=out/private.txt")
    assert run.status == 0, run
    assert run.stdout.splitlines()[0] == "alpha"
    assert "a deny rule wins over any allow" in run.stdout
    assert "--deny-write" in run.stdout  # names the rule that denied it
    assert (project / "out" / "ok.txt").read_text() == "ok"


def test_globs_and_path_variables(project, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    (home / "notes.txt").write_text("home notes\n")
    code = """
        import sys
        print(open(sys.argv[1] + '/notes.txt').read().strip())
        open('out/a.log', 'w').close()
        try:
            open('out/a.txt', 'w')
        except PermissionError:
            print('txt denied')
    """
    run = guard(project, code, "--allow-read=$HOME", "--allow-write=$CWD/out/*.log", args=(str(home),),
                env=clean_env(HOME=str(home)))
    assert run.status == 0, run
    assert run.stdout == "home notes\ntxt denied\n"


def test_reads_outside_the_program_are_denied_but_python_itself_runs(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "x.txt").write_text("x")
    code = f"""
        import json, csv, decimal, email.parser  # the stdlib is implicit
        print(open('data/a.txt').read().strip())  # so is the program's own directory
        open({str(elsewhere / 'x.txt')!r})
    """
    run = guard(project, code, "--allow-write=out")
    assert run.stdout == "alpha\n"
    assert f"read '{elsewhere / 'x.txt'}' (open) denied" in run.stderr


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = HTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


NET_CLIENT = """
    import sys, urllib.request
    for url in sys.argv[1:]:
        try:
            print(urllib.request.urlopen(url, timeout=5).read().decode())
        except OSError as exc:  # urllib wraps it: URLError(reason=AccessDenied)
            reason = getattr(exc, 'reason', exc)
            print('denied' if isinstance(reason, PermissionError) else 'failed', reason)
"""


@pytest.mark.parametrize("scope", ["127.0.0.1:{port}", "127.0.0.0/8", "localhost", "localhost:{port}",
                                   "127.0.0.1"])
def test_net_scopes(tmp_path, http_server, scope):
    url = f"http://localhost:{http_server}/"
    run = guard(tmp_path, NET_CLIENT, "--allow-net=" + scope.format(port=http_server), args=(url,))
    assert run.stdout == "hello\n", run


@pytest.mark.parametrize("scope", ["127.0.0.1:1", "10.0.0.0/8", "example.com"])
def test_net_scopes_that_do_not_match(tmp_path, http_server, scope):
    run = guard(tmp_path, NET_CLIENT, "--allow-net=" + scope, args=(f"http://127.0.0.1:{http_server}/",))
    assert run.stdout.startswith("denied network access to '127.0.0.1"), run
    assert run.denied


def test_udp_bind_and_unix_sockets(tmp_path):
    sock_path = tmp_path / "s.sock"
    code = f"""
        import socket
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(('127.0.0.1', 0))
        print('bound')
        try:
            u.sendto(b'x', ('127.0.0.2', 9))
        except PermissionError as exc:
            print('sendto denied')
        s = socket.socket(socket.AF_UNIX)
        s.bind({str(sock_path)!r})
        print('unix bound')
    """
    run = guard(tmp_path, code, "--allow-net=127.0.0.1,unix:" + str(sock_path), "--allow-write=.")
    assert run.stdout == "bound\nsendto denied\nunix bound\n", run


def test_env_names_and_globs(tmp_path):
    code = """
        import os
        print(os.environ['AWS_REGION'], os.getenv('HOME') is not None)
        for name in ('SECRET_TOKEN',):
            try:
                os.environ[name]
            except PermissionError as exc:
                print('denied', exc)
        print('SECRET_TOKEN' in os.environ, sorted(k for k in os.environ if k.startswith('AWS_')))
        os.environ['MINE'] = '1'
        print(os.environ['MINE'])
    """
    run = guard(tmp_path, code, "--allow-env=AWS_*,HOME,MINE",
                env=clean_env(AWS_REGION="eu-west-1", AWS_KEY="k", SECRET_TOKEN="TOPSECRET"))
    assert run.status == 0, run
    lines = run.stdout.splitlines()
    assert lines[0] == "eu-west-1 True"
    assert lines[1].startswith("denied environment variable 'SECRET_TOKEN' (read)")
    listed = eval(lines[2].split(" ", 1)[1])
    assert lines[2].startswith("False ") and "AWS_KEY" in listed and "AWS_REGION" in listed
    assert "SECRET_TOKEN" not in listed  # what cannot be read is not listed either
    assert lines[3] == "1"
    assert "TOPSECRET" not in run.stdout + run.stderr


def test_a_deep_copy_of_the_environment_is_a_snapshot_as_under_python(tmp_path):
    """copy.deepcopy(os.environ) (requests' tests) is an os._Environ over a snapshot of the
    variables the program may read; its writes still reach the process environment."""
    code = """
        import copy, os, subprocess
        snap = copy.deepcopy(os.environ)
        print(type(snap).__name__, snap == os.environ, snap["AWS_REGION"], "SECRET_TOKEN" in snap)
        os.environ["MINE"] = "1"
        print("MINE" in snap, snap != os.environ)
        snap["THEIRS"] = "2"
        print(os.environ["THEIRS"], copy.deepcopy(os.environb)[b"AWS_REGION"])
    """
    run = guard(tmp_path, code, "--allow-env=AWS_*,MINE,THEIRS",
                env=clean_env(AWS_REGION="eu-west-1", SECRET_TOKEN="TOPSECRET"))
    assert (run.status, run.denied) == (0, []), run
    assert run.stdout.splitlines() == ["_Environ True eu-west-1 False", "False True", "2 b'eu-west-1'"], run
    assert "TOPSECRET" not in run.stdout + run.stderr


def test_run_permission(tmp_path):
    code = """
        import subprocess
        print(subprocess.run(['echo', 'ok'], capture_output=True, text=True).stdout.strip())
        try:
            subprocess.run(['ls'])
        except PermissionError as exc:
            print('denied', exc)
    """
    run = guard(tmp_path, code, "--allow-run=echo", "--allow-env=PATH")
    assert run.stdout.splitlines()[0] == "ok", run
    assert run.stdout.splitlines()[1].startswith("denied running 'ls'")


def test_ffi_permission(tmp_path):
    code = """
        import ctypes  # importing ctypes needs nothing; loading and using native code does
        libm = ctypes.CDLL('libm.so.6')
        libm.cos.restype = ctypes.c_double
        print('cos(0) =', libm.cos(ctypes.c_double(0.0)))
        try:
            ctypes.CDLL('libc.so.6')
        except PermissionError as exc:
            print('denied', exc)
    """
    run = guard(tmp_path, code, "--allow-ffi=ctypes,libm.so.6")
    assert run.stdout.splitlines()[0] == "cos(0) = 1.0", run
    assert run.stdout.splitlines()[1].startswith("denied native code 'libc.so.6'"), run


def test_without_ffi_ctypes_does_not_import(tmp_path):
    """ctypes hands out raw memory with no audit event (a Union of an int and a pointer):
    without ffi its import is denied, as an ImportError programs probing for it catch."""
    code = """
        try:
            import ctypes
            print('LEAKED')
        except ImportError as exc:
            print(type(exc).__name__, str(exc).split(' denied')[0])
        try:
            import _ctypes
            print('LEAKED')
        except ImportError as exc:
            print(type(exc).__name__, str(exc).split(' denied')[0])
    """
    run = guard(tmp_path, code, "--allow-read=.")
    assert run.stdout.splitlines() == ["ImportDenied native code 'ctypes' (import ctypes)",
                                       "ImportDenied native code 'ctypes' (import _ctypes)"], run


def test_import_permission(tmp_path):
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "thirdparty.py").write_text("VALUE = 1\n")
    (tmp_path / "vendor" / "other.py").write_text("VALUE = 2\n")
    code = """
        import sys
        sys.path.insert(0, 'vendor')
        import thirdparty, json
        print('thirdparty', thirdparty.VALUE)
        try:
            import other
        except ImportError as exc:  # what programs probing for optional modules catch
            import pyward
            print('denied', isinstance(exc, pyward.ImportDenied), exc)
    """
    run = guard(tmp_path, code, "--allow-import=thirdparty", "--allow-read=vendor")
    assert run.stdout.splitlines()[0] == "thirdparty 1", run
    assert run.stdout.splitlines()[1].startswith("denied True importing 'other'"), run


def test_allow_all(tmp_path):
    run = guard(tmp_path, "import os\nprint(os.environ['X'])\nopen('/tmp/pyward-allow-all-test', 'w').close()\n",
                "-A", env=clean_env(X="1"))
    assert run.status == 0 and run.stdout == "1\n" and not run.denied, run


def test_on_deny_exit_flushes_and_exits_77(project):
    code = """
        import sys
        print('before', end='')
        sys.stderr.write('err-before')
        try:
            open('out/x', 'w')
        except PermissionError:
            print('caught: --on-deny=exit must not let the program continue')
    """
    run = guard(project, code, "--allow-read=data", "--on-deny=exit")
    assert run.status == 77, run
    assert run.stdout == "before"
    assert "err-before" in run.stderr
    assert "exit=77" in run.stderr and len(run.denied) == 1
    report = run.stderr.rsplit("report: ", 1)[1].strip()
    data = json.loads((project / report).read_text())
    assert data["run"]["exit_status"] == 77


def test_policy_from_pyproject(project):
    (project / "pyproject.toml").write_text('[tool.pyward.permissions]\nwrite = ["out"]\n'
                                            '[tool.pyward]\non_deny = "raise"\n')
    run = guard(project, "open('out/ok', 'w').write('1')\nopen('x', 'w')\n", config=True)
    assert (project / "out" / "ok").exists()
    assert "or add 'x' to write in [tool.pyward.permissions]" in run.stderr or \
           f"--allow-write={project / 'x'}" in run.stderr, run
    assert run.status == 1


# --- watch --------------------------------------------------------------------------------


def test_watch_blocks_nothing_and_journals_everything(project):
    code = """
        import os, subprocess
        open('out/x', 'w').write('x')
        os.environ.get('HOME')
        subprocess.run(['true'])
    """
    run = guard(project, code)
    assert run.status == 0 and not run.denied, run
    observed = {(e["details"]["permission"], e["name"]) for e in run.events("observed")}
    assert ("write", str(project / "out" / "x")) in observed
    assert ("env", "HOME") in observed
    assert ("run", "true") in observed
    assert not any(e["name"].startswith(str(project / "data")) for e in run.events("observed"))
    assert not any("/lib/python3" in e["name"] for e in run.events("observed"))  # python's own reads
    assert "[pyward][" not in run.stderr  # quiet: the summary line only


def test_watch_with_a_policy_reports_what_enforce_would_deny(project):
    run = guard(project, "open('out/x', 'w')\n", "--mode=watch", "--allow-read=data")
    assert run.status == 0
    (event,) = run.events("would_deny")
    assert "would be denied under enforce" in event["message"]


# --- children inherit the policy ------------------------------------------------------------

CHILD = "import sys\ntry:\n    open(sys.argv[1]).read(); print('child read it')\nexcept PermissionError:\n" \
        "    print('child denied')\n"


@pytest.mark.parametrize("how", ["subprocess_env", "os_system", "multiprocessing_spawn", "os_execv"])
def test_python_children_run_under_the_same_policy(project, how, tmp_path_factory):
    secret = tmp_path_factory.mktemp("secret") / "s.txt"
    secret.write_text("TOPSECRET")
    (project / "child.py").write_text(CHILD)
    programs = {
        "subprocess_env": "import subprocess, sys\nsubprocess.run([sys.executable, 'child.py', SECRET], "
                          "env={'PATH': '/usr/bin:/bin'})\n",
        "os_system": "import os, sys, shlex\nos.system(shlex.join([sys.executable, 'child.py', SECRET]))\n",
        "multiprocessing_spawn": "import multiprocessing as mp\ndef f(p):\n    try:\n        open(p).read(); "
                                 "print('child read it', flush=True)\n    except PermissionError:\n"
                                 "        print('child denied', flush=True)\nif __name__ == '__main__':\n"
                                 "    ctx = mp.get_context('spawn')\n    p = ctx.Process(target=f, args=(SECRET,))\n"
                                 "    p.start(); p.join()\n",
        "os_execv": "import os, sys\nos.execv(sys.executable, [sys.executable, 'child.py', SECRET])\n",
    }
    code = f"SECRET = {str(secret)!r}\n" + programs[how]
    run = guard(project, code, "--allow-run=*", "--allow-env=*", "--allow-write=$TMP")
    assert "child denied" in run.stdout, run
    assert "TOPSECRET" not in run.stdout
    if how != "os_execv":  # exec replaces the process: no parent is left to journal it
        assert any(e["name"] == str(secret) and e["pid"] != run.log[0]["pid"] for e in run.denied), run.denied


def test_a_child_in_a_virtualenv_the_program_made_is_armed_and_sees_none_of_the_parents_packages(
        project, tmp_path_factory):
    """`python -m build`, tox and nox run their tools in a fresh virtualenv without pyward: the
    child loads pyward from where the parent did, and nothing else from there."""
    secret = tmp_path_factory.mktemp("secret") / "s.txt"
    secret.write_text("TOPSECRET")
    (project / "child.py").write_text("import importlib.util\n"  # pytest is the parent's, not the child's
                                      "print('parent packages', importlib.util.find_spec('pytest') is not None)\n"
                                      + CHILD)
    code = f"""
        import subprocess, venv
        venv.create("env", with_pip=False)
        subprocess.run(["env/bin/python", "child.py", {str(secret)!r}])
    """
    run = guard(project, code, "--allow-run=*", "--allow-read=.", "--allow-write=.", "--allow-env=*")
    assert run.stdout.splitlines() == ["parent packages False", "child denied"], run
    assert any(e["name"] == str(secret) and e["pid"] != run.log[0]["pid"] for e in run.denied), run.denied


def test_no_inherit_lets_children_run_unguarded(project, tmp_path_factory):
    secret = tmp_path_factory.mktemp("secret") / "s.txt"
    secret.write_text("TOPSECRET")
    (project / "child.py").write_text(CHILD)
    code = f"import subprocess, sys\nsubprocess.run([sys.executable, 'child.py', {str(secret)!r}])\n"
    run = guard(project, code, "--allow-run=*", "--allow-env=*", "--no-inherit")
    assert run.stdout == "child read it\n", run
    # a kernel wall binds every descendant: with children unguarded, there is none (and pyward says why)
    layers = [e for e in run.log if e["kind"] == "layers"]
    assert [e["details"]["kernel"] for e in layers] == [False], layers
    assert "--no-inherit" in layers[0]["message"]


def test_children_see_the_programs_own_pythonpath_and_not_pywards(project):
    code = "import subprocess, sys\nsubprocess.run([sys.executable, '-c', " \
           "'import os; print(os.environ.get(\"PYTHONPATH\")); print(\"PYWARD_SANDBOX\" in os.environ)'])\n"
    run = guard(project, code, "--allow-run=*", "--allow-env=*", env=clean_env(PYTHONPATH="/opt/mine"))
    assert run.stdout == "/opt/mine\nFalse\n", run


# --- learn ----------------------------------------------------------------------------------

REALISTIC = """
    import csv, glob, json, os, subprocess, sys, tempfile, urllib.request
    rows = 0
    for name in sorted(glob.glob(os.path.join(sys.argv[1], '*.csv'))):
        with open(name) as f:
            rows += sum(1 for _ in csv.reader(f))
    os.makedirs('build', exist_ok=True)
    with open('build/summary.json', 'w') as f:
        json.dump({'rows': rows}, f)
    with tempfile.NamedTemporaryFile('w', delete=True) as tmp:
        tmp.write('scratch')
    body = urllib.request.urlopen(sys.argv[2], timeout=5).read().decode()
    rev = subprocess.run(['echo', 'rev-1'], capture_output=True, text=True).stdout.strip()
    token = os.environ.get('API_TOKEN', '')
    print(rows, body, rev, len(token))
"""


def test_learn_then_enforce_passes_with_zero_denials(tmp_path, tmp_path_factory, http_server):
    data = tmp_path_factory.mktemp("dataset")
    for i in range(40):
        (data / f"part{i:03}.csv").write_text("a,b\n" * (i + 1))
    (tmp_path / "app.py").write_text(__import__("textwrap").dedent(REALISTIC))
    env = clean_env(API_TOKEN="s3cr3t-value")
    url = f"http://127.0.0.1:{http_server}/"
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "pyward.toml", "app.py", str(data),
                              url], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert learned.returncode == 0, learned.stderr
    assert learned.stdout == "820 hello rev-1 12\n"
    policy = (tmp_path / "pyward.toml").read_text()
    assert "s3cr3t-value" not in policy
    assert '"API_TOKEN"' in policy
    assert policy.count("part0") == 0  # a directory, not 40 files
    assert str(data) in policy
    assert '"./build"' in policy or '"./build/summary.json"' in policy
    assert '"127.0.0.1",' in policy and f'"127.0.0.1:{http_server}"' not in policy  # OS-chosen port: any
    assert '"echo"' in policy
    run = guard(tmp_path, (tmp_path / "app.py").read_text(), args=(str(data), url), env=env, config=True)
    assert run.status == 0, run
    assert run.stdout == "820 hello rev-1 12\n"
    assert not run.denied
    assert any(e["kind"] == "allowed" for e in run.events())  # it really ran under enforce


def test_learn_writes_only_what_the_program_did_not_what_pyward_read_to_write_it(tmp_path):
    """Writing the policy needs $HOME and $TMP: pyward reads them from the environment the run started
    with, not through the program's view, where its read would be journaled and learned as the program's."""
    (tmp_path / "app.py").write_text("print(1)\n")
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "pyward.toml", "app.py"], cwd=tmp_path,
                             env=clean_env(HOME=str(tmp_path), TMPDIR=str(tmp_path)), capture_output=True, text=True,
                             timeout=60)
    assert (learned.returncode, learned.stdout) == (0, "1\n"), learned.stderr
    assert " = [" not in (tmp_path / "pyward.toml").read_text()  # no rule at all: no env = ["HOME"]
    report = json.loads(max((tmp_path / ".pyward" / "reports").glob("*.json")).read_text())
    assert [e["name"] for e in report["events"] if e["kind"] == "observed"] == []
    # a Python child (its events read back from the spool) and a command (whose first bytes learn reads)
    (tmp_path / "app.py").write_text("import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'pass'])\n"
                                     f"subprocess.run([{shutil.which('true')!r}])\n")
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "--force", "-o", "pyward.toml", "app.py"],
                             cwd=tmp_path, env=clean_env(HOME=str(tmp_path), TMPDIR=str(tmp_path)),
                             capture_output=True, text=True, timeout=60)
    assert learned.returncode == 0, learned.stderr
    report = json.loads(max((tmp_path / ".pyward" / "reports").glob("*.json")).read_text())
    observed = sorted({e["name"] for e in report["events"] if e["kind"] == "observed"})
    assert observed == sorted([sys.executable, shutil.which("true")]), observed
    (tmp_path / "app.py").write_text("import os\nprint(os.environ['HOME'] == os.path.expanduser('~'))\n")
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "--force", "-o", "pyward.toml", "app.py"],
                             cwd=tmp_path, env=clean_env(HOME=str(tmp_path)), capture_output=True, text=True,
                             timeout=60)
    assert (learned.returncode, learned.stdout) == (0, "True\n"), learned.stderr
    assert 'env = [\n  "HOME",\n]' in (tmp_path / "pyward.toml").read_text()  # the program's own read is


def test_learn_refuses_to_overwrite(tmp_path):
    (tmp_path / "pyward.toml").write_text("# mine\n")
    (tmp_path / "app.py").write_text("print(1)\n")
    result = subprocess.run([sys.executable, "-m", "pyward", "learn", "app.py"], cwd=tmp_path, env=clean_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--force" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "pyward.toml").read_text() == "# mine\n"


# --- the policy file cannot be rewritten by the program it governs ------------------------------


def test_program_cannot_write_its_policy_and_a_tainted_policy_is_refused(tmp_path):
    (tmp_path / "pyward.toml").write_text('[permissions]\nwrite = ["out"]\n')
    (tmp_path / "out").mkdir()
    run = guard(tmp_path, "open('pyward.toml', 'a').write('read = true\\n')\n", config=True)
    assert "a file it reads its policy from" in run.stderr
    assert (tmp_path / "pyward.toml").read_text() == '[permissions]\nwrite = ["out"]\n'
    # in watch mode the write happens: the next run refuses that policy until `pyward trust`
    (tmp_path / "pyward.toml").write_text('mode = "watch"\n[permissions]\nwrite = ["out"]\n')
    run = guard(tmp_path, "open('pyward.toml', 'a').write('# changed\\n')\n", config=True)
    assert any(e["kind"] == "policy.tainted" for e in run.events())
    again = guard(tmp_path, "print('ran')\n", config=True)
    assert again.status == 2 and "ran" not in again.stdout
    assert "pyward trust" in again.stderr
    trusted = subprocess.run([sys.executable, "-m", "pyward", "trust", "pyward.toml"], cwd=tmp_path,
                             env=clean_env(), capture_output=True, text=True, timeout=60)
    assert trusted.returncode == 0, trusted.stderr
    assert guard(tmp_path, "print('ran')\n", config=True).stdout == "ran\n"


# --- prompt ---------------------------------------------------------------------------------------


def _run_on_a_terminal(argv, answers, cwd):
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(clean_env())
        os.execv(argv[0], argv)
    out, answers = b"", list(answers)
    while True:
        ready, _, _ = select.select([fd], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if out.rstrip().endswith(b">") and answers:
            os.write(fd, answers.pop(0).encode() + b"\n")
    _, status = os.waitpid(pid, 0)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(status)


def test_prompt_asks_and_saves_the_answers(tmp_path):
    (tmp_path / "app.py").write_text("import os\nopen('o.txt', 'w').write('1')\nprint(os.environ.get('HOME'))\n"
                                     "try:\n    os.environ['USER']\nexcept KeyError:\n    pass\n")
    argv = [sys.executable, "-m", "pyward", "run", "--no-config", "--mode=prompt", "app.py"]
    out, status = _run_on_a_terminal(argv, ["y", "A", "y"], tmp_path)
    assert status == 0, out
    assert f"Allow write to '{tmp_path / 'o.txt'}'? [y]es / [n]o / [A]ll of write" in out
    assert "Allow environment variable 'HOME'?" in out
    assert "Allow environment variable 'USER'?" not in out  # "All of env" was answered
    assert "Save 2 answer(s) into" in out
    saved = (tmp_path / "pyward.toml").read_text()
    assert 'write = ["./o.txt"]' in saved and "env = true" in saved
    out, status = _run_on_a_terminal([sys.executable, "-m", "pyward", "run", "app.py"], [], tmp_path)
    assert status == 0 and "Allow " not in out and "[warning]" not in out, out


def test_prompt_without_a_terminal_denies_like_enforce(tmp_path):
    run = guard(tmp_path, "open('o.txt', 'w')\n", "--mode=prompt")
    assert run.status == 1
    assert "prompt mode needs a terminal" in run.stderr


# --- Python API -------------------------------------------------------------------------------------


def test_python_api_install_and_hooks(tmp_path):
    code = """
        import pyward, pyward.sandbox as sandbox
        seen = []
        def hook(event, args):
            if event == 'socket.gethostname':  # an event the policy itself ignores
                return 'deny'
            if event == 'open' and str(args[0]).endswith('ok-by-hook.txt'):
                return 'allow'
            return None
        policy = pyward.Policy.from_dict(allow={'read': ['.']})
        sandbox.install(policy, mode='enforce')
        sandbox.install_hook(hook)
        open('ok-by-hook.txt', 'w').write('1')
        print('hook allowed it')
        import socket
        try:
            socket.gethostname()
        except PermissionError as exc:
            print('hook denied it')
        sandbox.uninstall_hook()
        print(socket.gethostname() != '')
        try:
            open('ok-by-hook.txt', 'w')
        except PermissionError:
            print('policy denies it again')
    """
    (tmp_path / "app.py").write_text(__import__("textwrap").dedent(code))
    result = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=clean_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.stdout == "hook allowed it\nhook denied it\nTrue\npolicy denies it again\n", result.stderr


def test_policy_loads_from_a_file(tmp_path):
    from pyward.policy import Policy

    (tmp_path / "p.toml").write_text('[permissions]\nread = ["data"]\nnet = ["*.example.com:443"]\n')
    policy = Policy.from_file(str(tmp_path / "p.toml"))
    assert [r.scope for r in policy.allows("read")] == ["data"]
    assert [r.scope for r in policy.allows("net")] == ["*.example.com:443"]
    assert "p.toml" in policy.how_to_allow("read", "x")


# --- fail closed ---------------------------------------------------------------------------------


def test_an_engine_error_never_lets_an_operation_through_under_enforce(project):
    code = """
        import pyward.journal
        def broken(*a, **k):
            raise RuntimeError('journal broken')
        pyward.journal.Journal.emit = broken
        try:
            open('out/x', 'w')
            print('LEAKED')
        except PermissionError:
            print('denied')
    """
    run = guard(project, code, "--allow-read=data")
    assert run.stdout == "denied\n", run
    assert not (project / "out" / "x").exists()


def test_an_engine_error_never_kills_the_program_under_watch(project):
    code = """
        import pyward.journal
        def broken(*a, **k):
            raise RuntimeError('journal broken')
        pyward.journal.Journal.emit = broken
        open('out/x', 'w').write('1')
        print('still running')
    """
    run = guard(project, code)
    assert run.status == 0, run
    assert run.stdout == "still running\n"
    assert "[pyward]" in run.stderr and "error" in run.stderr.lower()
    assert (project / "out" / "x").read_text() == "1"


def test_socket_module_still_works_normally(tmp_path):
    """The guards keep the functions' behaviour for allowed calls."""
    run = guard(tmp_path, "import socket\nprint(socket.getaddrinfo('127.0.0.1', 80)[0][4])\n", "--allow-net=*")
    assert run.stdout == "('127.0.0.1', 80)\n", run
    assert socket.getaddrinfo("127.0.0.1", 80)[0][4] == ("127.0.0.1", 80)


def test_degraded_mode_without_the_native_extension_still_enforces(project):
    code = """
        import json, subprocess
        print(open('data/a.txt').read().strip())
        try:
            open('out/x', 'w')
        except PermissionError as exc:
            print('denied')
    """
    run = guard(project, code, "--allow-read=data", env=clean_env(PYWARD_DISABLE_NATIVE="1"))
    assert run.status == 0, run
    assert run.stdout == "alpha\ndenied\n"
    assert "running degraded" in run.stderr
    assert len(run.denied) == 1


# --- the standard library's own behaviour is never the program's --------------------

STDLIB_UNDER_ENFORCE = """
    import asyncio, logging, threading, concurrent.futures, http.server, subprocess, zipfile
    import multiprocessing, pydoc, sysconfig, dataclasses, enum, typing, collections, functools

    async def main():
        await asyncio.sleep(0)
        return "async ok"

    logging.basicConfig(format="%(threadName)s %(message)s")
    worker = threading.Thread(target=lambda: logging.warning("from a thread"), name="worker")
    worker.start(); worker.join()
    print(asyncio.run(main()), len(sysconfig.get_paths()) > 0, pydoc.getdoc(len) != "")
"""


@pytest.mark.parametrize("flags", [["--allow-read=/"], ["-A"], ["--allow-read=."]])
def test_stdlib_imports_and_code_relabelling_pass_under_enforce(tmp_path, flags):
    run = guard(tmp_path, STDLIB_UNDER_ENFORCE, *flags)
    assert (run.status, run.stdout) == (0, "async ok True True\n"), run
    assert "worker from a thread" in run.stderr
    assert not run.denied
    assert "internal error" not in run.stderr


def test_stdlib_work_in_a_half_imported_threading_is_journaled_by_name(tmp_path):
    """An allowed read journaled while `threading` is being imported names the thread
    from data, without calling into the half-initialised module."""
    run = guard(tmp_path, "import logging\nlogging.warning('hi')\n", "--allow-read=/")
    assert (run.status, run.stderr.count("WARNING:root:hi")) == (0, 1), run
    allowed = run.events("allowed")
    assert allowed and {e["thread"] for e in allowed} == {"MainThread"}


def test_program_code_construction_is_still_checked(tmp_path):
    code = """
        import types, copy
        def f():
            return 1
        import importlib._bootstrap as bootstrap
        attempts = {
            "replace": lambda: f.__code__.replace(co_consts=(None, 2)),
            # from the frame an extension module's initialisation runs in, but not as one: still the program's
            "through import": lambda: bootstrap._call_with_frames_removed(f.__code__.replace, co_consts=(None, 3)),
            "CodeType": lambda: types.CodeType(*[getattr(f.__code__, "co_" + n) for n in (
                "argcount", "posonlyargcount", "kwonlyargcount", "nlocals", "stacksize", "flags", "code",
                "consts", "names", "varnames", "filename", "name", "qualname", "firstlineno", "linetable",
                "exceptiontable", "freevars", "cellvars")]),
        }
        for name, attempt in attempts.items():
            try:
                attempt()
                print(name, "built")
            except PermissionError:
                print(name, "denied")
        @types.coroutine
        def relabelled():
            yield
        print("types.coroutine", type(relabelled.__code__).__name__)
    """
    run = guard(tmp_path, code, "--allow-read=/")
    assert run.status == 0, run
    assert run.stdout == "replace denied\nthrough import denied\nCodeType denied\ntypes.coroutine code\n"
    assert [e["details"]["operation"] for e in run.denied] == ["code object construction"] * 3


def test_learn_grants_nothing_for_the_stdlib_own_code_construction(tmp_path):
    (tmp_path / "app.py").write_text("import asyncio\nasync def main():\n    return 7\nprint(asyncio.run(main()))\n")
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "pyward.toml", "app.py"],
                             cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert (learned.returncode, learned.stdout) == (0, "7\n"), learned.stderr
    assert "ffi" not in (tmp_path / "pyward.toml").read_text()


def test_probing_for_a_module_that_is_not_installed_is_not_a_denial(tmp_path):
    """`try: import x except ImportError` for a module that exists nowhere gets
    python's ModuleNotFoundError; an installed third-party module is still checked."""
    code = """
        for name in ("no_such_module_anywhere", "pytest"):
            try:
                __import__(name)
                print(name, "imported")
            except ImportError as exc:
                print(name, type(exc).__name__)
    """
    run = guard(tmp_path, code, "--allow-read=/")
    assert run.status == 0, run
    assert run.stdout == "no_such_module_anywhere ModuleNotFoundError\npytest ImportDenied\n"
    assert [e["name"] for e in run.denied] == ["pytest"]


def test_a_denial_in_a_forked_child_is_in_the_parents_report(project):
    code = """
        import os, sys
        pid = os.fork()
        if pid == 0:
            try:
                open('out/child.txt', 'w')
            except PermissionError:
                print('child denied', flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        print('parent done')
    """
    run = guard(project, code, "--allow-read=/", "--allow-run=*", "--report", "r.json")
    assert (run.status, run.stdout) == (0, "child denied\nparent done\n"), run
    report = json.loads((project / "r.json").read_text())
    assert report["summary"]["denied"] == 1
    (denied,) = [e for e in report["events"] if e["kind"] == "denied"]
    assert denied["pid"] != report["run"]["pid"] and denied["name"] == str(project / "out" / "child.txt")
    assert "1 denied" in run.stderr.splitlines()[-1]


LOCAL_SERVER = """
    import http.server, threading, urllib.request
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/").status)
    server.shutdown()
"""


def test_learn_generalises_the_ports_the_os_chose(tmp_path):
    """A server on port 0 gets another port each run: the learned rule is the host."""
    (tmp_path / "app.py").write_text(__import__("textwrap").dedent(LOCAL_SERVER))
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "pyward.toml", "app.py"],
                             cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert (learned.returncode, learned.stdout) == (0, "200\n"), learned.stderr
    policy = (tmp_path / "pyward.toml").read_text()
    assert '"127.0.0.1",' in policy and "127.0.0.1:" not in policy
    for _ in range(2):  # other ports, same policy
        run = guard(tmp_path, LOCAL_SERVER, config=True)
        assert (run.status, run.stdout, run.denied) == (0, "200\n", []), run


def test_a_bind_to_port_0_that_nothing_reaches_keeps_its_port():
    """urllib3 (every pip run) binds [::1]:0 to see whether IPv6 works, and nothing connects there: the
    rule keeps the port, so the policy names ports only and the kernel wall holds TCP.  A host reached
    on another port (a server and its client) or a gRPC server's (its channels connect unseen) is the
    host, any port."""
    from pyward.policy.learn import ephemeral_range, generalise

    client = ephemeral_range()[0] + 1
    assert generalise([("net", "[::1]:0", "bind"), ("net", "pypi.org:443", "connect")], "/")["net"] == [
        "[::1]:0", "pypi.org:443"]
    assert generalise([("net", "127.0.0.1:0", "bind"), ("net", f"127.0.0.1:{client}", "connect")], "/")["net"] \
        == ["127.0.0.1"]
    assert generalise([("net", "127.0.0.1:0", "bind (gRPC server)")], "/")["net"] == ["127.0.0.1"]


def test_variables_seen_only_by_listing_the_environment_are_named_in_the_learned_policy(tmp_path):
    """pip reads its PIP_* options by going through os.environ: a listing does not say which variable the
    program used, so none is learned, but those of a prefix it also reads by name are named in the policy
    (names only), where its reader looks; other variables are not."""
    (tmp_path / "app.py").write_text("import os\n"
                                     "options = {k: v for k, v in os.environ.items() if k.startswith('APP_')}\n"
                                     "print(os.environ.get('APP_MODE'), sorted(options))\n")
    env = {**clean_env(), "APP_MODE": "fast", "APP_LEVEL": "3", "OTHER_SECRET": "x"}
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "p.toml", "app.py"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=60)
    assert learned.returncode == 0 and learned.stdout == "fast ['APP_LEVEL', 'APP_MODE']\n", learned
    policy = (tmp_path / "p.toml").read_text()
    assert 'env = [\n  "APP_MODE",\n]' in policy, policy
    comment = [line for line in policy.splitlines() if "listed the environment" in line]
    assert len(comment) == 1 and comment[0].endswith("so not learned: APP_LEVEL"), policy
    assert "OTHER_SECRET" not in policy and "3" not in comment[0]


def test_reading_the_interpreters_own_executable_is_implicit(tmp_path):
    """platform.libc_ver() and packaging (pip's wheel tags) read the interpreter's ELF header: its
    real file (a venv's python is a link to it) is python's own, like the stdlib."""
    code = "import platform, sys\nprint(platform.libc_ver()[0] or 'none', open(sys.executable, 'rb').read(4))\n"
    run = guard(tmp_path, code, "--mode", "enforce", "--allow-env=HOME")
    assert (run.status, run.denied) == (0, []), run
    assert run.stdout.split()[1] == "b'\\x7fELF'", run


OWN_INTERPRETER = """
import os, subprocess, sys, tempfile
print(subprocess.run([sys.executable, "-c", "print('child')"], capture_output=True, text=True).stdout.strip())
with tempfile.TemporaryDirectory() as env:  # a new name every run, as python -m build's virtualenv
    os.symlink(sys.executable, os.path.join(env, os.path.basename(sys.executable)))
    print(subprocess.run([os.path.join(env, os.path.basename(sys.executable)), "-c", "print('child')"],
                         capture_output=True, text=True).stdout.strip())
"""


def test_learn_names_this_interpreter_started_by_its_path_by_its_name(tmp_path):
    """pip and multiprocessing start sys.executable by its path, which is this machine's
    virtualenv: learned as the interpreter's name, the rule holds wherever the project goes,
    kernel wall included."""
    (tmp_path / "app.py").write_text(OWN_INTERPRETER)
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "pyward.toml", "app.py"],
                             cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert (learned.returncode, learned.stdout) == (0, "child\nchild\n"), learned.stderr
    policy = (tmp_path / "pyward.toml").read_text()
    assert f'run = [\n  "{os.path.basename(sys.executable)}",\n]' in policy, policy
    run = guard(tmp_path, OWN_INTERPRETER, config=True)
    assert (run.status, run.stdout, run.denied) == (0, "child\nchild\n", []), run


ISOLATED_CHILD = """
import subprocess, sys
lister = "import os, sys\\nfor p in sys.path:\\n    try: os.listdir(p)\\n    except OSError: pass\\nprint(sys.path[0])"
print(subprocess.run([sys.executable, "-I", "-c", lister], capture_output=True, text=True).stdout.strip())
"""


def test_learn_grants_nothing_for_a_child_reading_its_own_search_path(tmp_path):
    """A Python child started with -I (pip's build environment) is armed while site runs, before
    python puts the script's directory in front of sys.path: every entry of its search path
    (the stdlib's zip file included, which does not exist) is python's own, not a rule."""
    (tmp_path / "app.py").write_text(ISOLATED_CHILD)
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "pyward.toml", "app.py"],
                             cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert learned.returncode == 0, learned.stderr
    assert learned.stdout.strip().endswith(".zip"), learned.stdout  # -I: no script directory, the zip comes first
    policy = (tmp_path / "pyward.toml").read_text()
    assert ".zip" not in policy and "read =" not in policy, policy


RESOLVE_THEN_CONNECT = """
import socket, sys
port = int(sys.argv[1])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen()
family, kind, proto, _, address = socket.getaddrinfo("localhost", port, socket.AF_INET, socket.SOCK_STREAM)[0]
client = socket.socket(family, kind, proto)
client.connect(address)  # an address, as urllib3 and asyncio connect: the name was resolved first
print(address[0], server.accept()[0].send(b"x"))
client.close(); server.close()
"""


def _fixed_port():
    low = learn.ephemeral_range()[0]
    for port in range(low - 2000, low - 1000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("not run: no free port below the ephemeral range")


def test_learn_names_the_host_a_connected_address_was_resolved_from(tmp_path):
    """A client that resolves a name and connects to the address it got is learned as the name
    and port: the address is this network's answer, the name holds on the next machine."""
    port = _fixed_port()
    (tmp_path / "app.py").write_text(RESOLVE_THEN_CONNECT)
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-v", "-o", "pyward.toml", "app.py",
                              str(port)], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert (learned.returncode, learned.stdout) == (0, "127.0.0.1 1\n"), learned.stderr
    assert f"network access to '127.0.0.1:{port}' (connect, an address of 'localhost')" in learned.stderr
    policy = (tmp_path / "pyward.toml").read_text()
    assert f'"localhost:{port}",' in policy, policy
    assert f'"127.0.0.1:{port}",' in policy  # the bind, an address the program named itself
    run = guard(tmp_path, RESOLVE_THEN_CONNECT, args=(str(port),), config=True)
    assert (run.status, run.stdout, run.denied) == (0, "127.0.0.1 1\n", []), run
    connect = [e for e in run.events("allowed") if e["name"] == f"127.0.0.1:{port}" and e["details"]["operation"]
               == "connect"]
    assert [e["details"].get("via") for e in connect] == [f"localhost:{port}"], run


ABSTRACT_SOCKETS = """
import os, socket, tempfile
with tempfile.TemporaryDirectory() as tmp:  # a new name every run, spelled after $TMP (anyio's tests)
    for name in ("\\0" + tmp + "/socket", ("\\0" + tmp + "/other").encode() + b"\\xf0"):
        server = socket.socket(socket.AF_UNIX)
        server.bind(name)
        server.listen()
        client = socket.socket(socket.AF_UNIX)
        client.connect(os.fsdecode(server.getsockname()))  # a str, with a surrogate for b"\\xf0"
        print(server.accept()[0].recv(1) if client.send(b"x") else None)
        client.close(); server.close()
server = socket.socket(socket.AF_UNIX)
server.bind(("\\0PywardAbstract-" + os.environ["RUN_TAG"]).encode() + b"\\xf0")  # a fixed name: its case counts
server.listen()
socket.socket(socket.AF_UNIX).connect(os.fsdecode(server.getsockname()))  # the same name, as a str
print("bound", server.getsockname()[1:].startswith(b"PywardAbstract"))
"""


def test_learn_generalises_abstract_socket_names_and_keeps_their_case(tmp_path):
    """Abstract unix socket names spelled after a temporary directory are learned as
    every such name; a fixed one is matched with its own case."""
    (tmp_path / "app.py").write_text(ABSTRACT_SOCKETS)
    tag = f"Tag{os.getpid()}"
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "pyward.toml", "app.py"],
                             cwd=tmp_path, env=clean_env(RUN_TAG=tag), capture_output=True, text=True, timeout=60)
    assert (learned.returncode, learned.stdout) == (0, "b'x'\nb'x'\nbound True\n"), learned.stderr
    policy = (tmp_path / "pyward.toml").read_text()
    assert '"unix:@$TMP",' in policy and "unix:@/" not in policy, policy
    assert f'"unix:@PywardAbstract-{tag}\\\\xf0",' in policy, policy  # one rule for both spellings
    for _ in range(2):  # other temporary directories, same policy
        run = guard(tmp_path, ABSTRACT_SOCKETS, env=clean_env(RUN_TAG=tag), config=True)
        assert (run.status, run.stdout, run.denied) == (0, "b'x'\nb'x'\nbound True\n", []), run
    other = guard(tmp_path, ABSTRACT_SOCKETS, env=clean_env(RUN_TAG="tag" + tag[3:]), config=True)
    assert other.status != 0 and "bound" not in other.stdout, other  # another name, lower-case: not allowed


def test_learn_says_when_the_learning_run_failed(tmp_path):
    (tmp_path / "app.py").write_text("print('start')\nraise SystemExit(3)\n")
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "pyward.toml", "app.py"],
                             cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert learned.returncode == 3
    assert "[pyward][warning] the learning run ended with exit status 3" in learned.stderr
    assert (tmp_path / "pyward.toml").exists()


def test_learn_writes_the_policy_of_a_program_that_ends_by_os_exit(tmp_path, tmp_path_factory):
    """mypy ends every run with os._exit: the learning run still writes its policy, and the policy holds."""
    data = tmp_path_factory.mktemp("elsewhere")
    (data / "settings.ini").write_text("x = 1\n")
    (tmp_path / "app.py").write_text("import os\n"
                                     "print(open(os.environ['DATA'] + '/settings.ini').read(), flush=True)\n"
                                     "os._exit(1)\n")
    env = clean_env(DATA=str(data))
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "pyward.toml", "app.py"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert (learned.returncode, learned.stdout) == (1, "x = 1\n\n"), learned.stderr
    assert "exit=1 (os._exit)" in learned.stderr
    policy = (tmp_path / "pyward.toml").read_text()
    assert "read = [" in policy and "DATA" in policy, policy
    enforced = subprocess.run([sys.executable, "-m", "pyward", "run", "--report", "r.json", "app.py"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60)
    assert (enforced.returncode, enforced.stdout) == (1, "x = 1\n\n"), enforced.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["denied"] == 0 and report["run"]["exit_reason"] == "os._exit"


LEARN_COMMANDS = """\
import os, subprocess, sys
subprocess.run(["sh", "-c", "cat \\"$DATA\\" > /dev/null"], check=True)  # native: its read is unseen
subprocess.run([sys.executable, "-c", "pass"], check=True)  # Python: armed, its files are learned
subprocess.run([os.path.abspath("tool.py")], check=True)  # a console script (#! python): Python too
print("done", flush=True)
"""


def test_learn_says_which_commands_it_could_not_see_into(tmp_path, tmp_path_factory):
    """A command that is not Python runs no audit hook: the files it opens cannot be learned, and the kernel
    wall would refuse them. The learned policy and the run say which commands those are, and only those."""
    data = tmp_path_factory.mktemp("elsewhere") / "input.txt"
    data.write_text("x\n")
    (tmp_path / "app.py").write_text(LEARN_COMMANDS)
    (tmp_path / "tool.py").write_text(f"#!{sys.executable}\nprint('tool')\n")
    (tmp_path / "tool.py").chmod(0o755)
    env = clean_env(DATA=str(data))
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "pyward.toml", "app.py"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert (learned.returncode, learned.stdout) == (0, "tool\ndone\n"), learned.stderr
    notices = [line for line in learned.stderr.splitlines() if "not Python" in line]
    assert notices == ["[pyward] the program ran 1 command that is not Python (sh): no audit hook runs there, so "
                       "the files it reads and writes are not in the policy; under enforce the kernel wall refuses "
                       "them until you add them (or run with --no-kernel)"]
    policy = (tmp_path / "pyward.toml").read_text()
    assert "# not Python, so what they read and write was not learned: sh\n" in policy
    if landlock_abi():  # the notice is true: the wall refuses the command's read the learning run could not see
        enforced = subprocess.run([sys.executable, "-m", "pyward", "run", "app.py"], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=60)
        assert enforced.returncode == 1 and "Permission denied" in enforced.stderr, enforced.stderr


@pytest.mark.parametrize("mode, verdict", [("enforce", "denied"), ("watch", "allowed")])
def test_a_check_that_fails_is_journaled_and_counted_as_an_internal_error(tmp_path, mode, verdict):
    from pyward.journal import summarize
    from pyward.policy import Policy
    from pyward.sandbox.context import Context
    from pyward.sandbox.decider import build_decider

    emitted = []
    context = Context(mode=mode, on_deny="raise", inherit=False, program_dir=str(tmp_path), outputs=[],
                      emit=lambda *event: emitted.append(event), exit_on_deny=None, log=None)
    decide, namespace, _ = build_decider(Policy.from_dict(allow={"read": [str(tmp_path)]}), context)

    def broken(args):
        raise AttributeError("half-imported module")

    namespace["HANDLERS"]["open"] = broken
    result = decide("open", ("/etc/hostname", "r", 0))
    assert not emitted  # journaled after the verdict, never inside it
    namespace["flush"]()  # what the C side does once the verdict is given
    assert (result is None) == (verdict == "allowed")
    if result is not None:
        assert result[0].startswith("pyward sandbox: internal error while checking open (AttributeError: half-")
    ((kind, name, message, severity, details, site),) = emitted
    assert (kind, name, severity, details["error"]) == ("internal_error", "open", "error",
                                                          "AttributeError: half-imported module")
    summary = summarize([{"engine": "sandbox", "kind": kind, "severity": severity, "name": name,
                          "details": details}], 0)
    assert summary["internal_errors"] == 1 and summary["denied"] == 0


def test_doctest_restoring_its_trace_hook_is_not_a_grant_but_a_new_hook_is_checked(tmp_path):
    code = """
        import doctest, json, sys
        print(doctest.testmod(json).failed)
        try:
            sys.settrace(lambda *args: None)
            print("installed")
        except PermissionError:
            print("own trace function denied")
    """
    run = guard(tmp_path, code, "--allow-read=/", "--allow-env")
    assert (run.status, run.stdout) == (0, "0\nown trace function denied\n"), run
    assert [e["details"]["operation"] for e in run.denied] == ["sys.settrace"]


def test_probing_for_a_file_that_does_not_exist_is_not_a_denial(tmp_path):
    """Programs try optional config files (~/.pdbrc, ./setup.cfg): where nothing exists
    the OS answers as it would to python; an existing file and a deny rule still refuse."""
    code = """
        import os
        for path in ("/nonexistent-dir/app.rc", "/etc/hostname", os.path.expanduser("~/.nope-pyward-rc")):
            try:
                open(path)
                print("read")
            except OSError as exc:
                print(type(exc).__name__)
    """
    run = guard(tmp_path, code, "--allow-read=.", "--allow-env=HOME", "--deny-read=~/.nope-pyward-rc")
    assert run.status == 0, run
    assert run.stdout == "FileNotFoundError\nAccessDenied\nAccessDenied\n"
    assert [e["name"] for e in run.denied] == ["/etc/hostname", os.path.expanduser("~/.nope-pyward-rc")]


def test_a_child_that_outlives_the_run_is_still_denied_quietly(project, tmp_path_factory):
    """The run has ended and its children's spool is gone: a denial in a child that goes on
    is still a denial, printed by the child, with no error from pyward's record."""
    secret = tmp_path_factory.mktemp("secret") / "s.txt"
    secret.write_text("TOPSECRET")
    (project / "late.py").write_text(
        "import sys, time\ntime.sleep(1.5)\n"
        "try:\n    open(sys.argv[1]).read(); print('late child read it')\n"
        "except PermissionError:\n    print('late child denied')\n"
        "open(sys.argv[2], 'w').write('done')\n")
    code = (f"import subprocess, sys\nsubprocess.Popen([sys.executable, 'late.py', {str(secret)!r}, 'out/done.txt'], "
            "stdout=open('out/late.log', 'w'), stderr=subprocess.STDOUT)\n")
    run = guard(project, code, "--allow-run=*", "--allow-env=*", "--allow-write=out")
    assert run.status == 0, run
    deadline = time.monotonic() + 30
    while not (project / "out" / "done.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    output = (project / "out" / "late.log").read_text()
    assert "late child denied" in output and "Traceback" not in output, output


def test_learn_writes_a_prefix_for_a_family_of_variables_unless_it_would_hand_over_another(tmp_path):
    """A CLI reading one variable per option (click's auto_envvar_prefix: UVICORN_HOST, UVICORN_PORT...) is
    learned as UVICORN_*; AWS_* is not written while the environment holds an AWS_ variable the program never
    read (it could be a secret), and the learned policy holds under enforce."""
    (tmp_path / "app.py").write_text(
        "import os\n"
        "print([os.environ.get(n) for n in ('APP_HOST', 'APP_PORT', 'APP_DEBUG', 'AWS_REGION', 'AWS_PROFILE',"
        " 'AWS_DEFAULT_REGION', 'LONE_ONE')])\n")
    env = clean_env(AWS_SECRET_ACCESS_KEY="not-for-this-program", APP_PORT="8000")
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "pyward.toml", "app.py"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert learned.returncode == 0, learned.stderr
    policy = (tmp_path / "pyward.toml").read_text()
    assert '"APP_*",' in policy and '"LONE_ONE",' in policy, policy
    assert "AWS_*" not in policy and '"AWS_REGION",' in policy and "AWS_SECRET" not in policy, policy
    enforced = subprocess.run([sys.executable, "-m", "pyward", "run", "app.py"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
    assert (enforced.returncode, enforced.stdout) == (0, learned.stdout), enforced.stderr


def test_learn_holds_multiprocessing_shared_memory_across_runs(tmp_path):
    """multiprocessing's arenas are files of /dev/shm named by pid and at random, read and written through a
    descriptor after they are unlinked (the kernel calls them 'NAME (deleted)'): learned as /dev/shm, so the
    next run, with another pid, holds."""
    (tmp_path / "app.py").write_text("import multiprocessing.heap as heap\nprint(len(heap.Arena(4096).buffer))\n")
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "pyward.toml", "app.py"],
                             cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert (learned.returncode, learned.stdout) == (0, "4096\n"), learned.stderr
    policy = (tmp_path / "pyward.toml").read_text()
    assert '"/dev/shm",' in policy and "pym-" not in policy and "(deleted)" not in policy, policy
    for _ in range(2):
        enforced = subprocess.run([sys.executable, "-m", "pyward", "run", "--report", "r.json", "app.py"],
                                  cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
        assert (enforced.returncode, enforced.stdout) == (0, "4096\n"), enforced.stderr
        assert json.loads((tmp_path / "r.json").read_text())["summary"]["denied"] == 0
