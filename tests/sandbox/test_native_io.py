"""Libraries whose C code opens files and sockets with no audit event (DuckDB, HDF5, libxml2, gRPC's core,
polars' Rust):
judged at the calls that name them, so watch journals them, learn writes them and enforce denies them with
an AccessDenied naming the file or address; what they open beyond those calls is named by learn, once, as
held by the kernel wall alone.  Each test needs its library: without it the test is not run, and says why
(they are too large for the test extra)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from helpers import clean_env
from sandbox_helpers import guard


def library(name: str) -> None:
    pytest.importorskip(name, reason=f"not run: {name} is not installed (pip install {name} to run it)")


def learned(tmp_path, code: str, args: tuple[str, ...], stdout: str) -> str:
    """`pyward learn` of `code ARGS`, then the same run under the policy it wrote (enforce, the kernel wall
    where there is one): both print `stdout`, with no denial; the policy's text."""
    (tmp_path / "app.py").write_text(textwrap.dedent(code))
    run = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "p.toml", "app.py", *args], cwd=tmp_path,
                         env=clean_env(), capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout) == (0, stdout), run.stderr
    enforced = guard(tmp_path, code, "--config", "p.toml", args=args, config=True, timeout=120)
    assert (enforced.stdout, enforced.denied, enforced.status) == (stdout, [], 0), enforced
    return (tmp_path / "p.toml").read_text()


def denied_under(tmp_path, code: str, args: tuple[str, ...]):
    """The same program under the learned policy with arguments it does not list."""
    return guard(tmp_path, code, "--config", "p.toml", args=args, config=True, timeout=120)


H5PY = """\
import sys
import h5py
try:
    with h5py.File(sys.argv[1], "w") as f:
        f["x"] = list(range(4))
    with h5py.File(sys.argv[1], "r") as f:
        print(f["x"][:].tolist())
except PermissionError as exc:
    print("DENIED", type(exc).__name__)
"""


def test_h5py_files_are_judged_learned_and_denied_by_name(tmp_path, tmp_path_factory):
    """HDF5 opens its files in C: h5py.h5f's create and open are judged as the write and the read, so a
    learned policy lists the file (before, it did not, and the run failed at the wall with a bare EACCES),
    and a file it does not list is refused with an AccessDenied naming it, before HDF5 makes it."""
    library("h5py")
    policy = learned(tmp_path, H5PY, ("data.h5",), "[0, 1, 2, 3]\n")
    assert '"./data.h5",' in policy
    other = tmp_path_factory.mktemp("elsewhere") / "other.h5"
    run = denied_under(tmp_path, H5PY, (str(other),))
    assert run.stdout == "DENIED AccessDenied\n", run
    assert [(e["name"], e["details"]["operation"]) for e in run.denied] == [(str(other), "h5py create")]
    assert not other.exists()


LXML = """\
import sys
from lxml import etree
try:
    tree = etree.parse(sys.argv[1])
    print([e.text for e in tree.iter("i")])
    tree.write(sys.argv[2])
    print(open(sys.argv[2]).read().strip())
except PermissionError as exc:
    print("DENIED", type(exc).__name__)
"""


def test_lxml_parse_and_write_are_judged_learned_and_denied_by_name(tmp_path, tmp_path_factory):
    """libxml2 reads and writes files named by path in C: etree.parse is judged as a read, ElementTree.write
    as a write; the learned policy lists the output, and a file it does not list is refused by name, unread
    (or unwritten)."""
    library("lxml")
    (tmp_path / "doc.xml").write_text("<r><i>one</i><i>two</i></r>")
    out = "['one', 'two']\n<r><i>one</i><i>two</i></r>\n"
    policy = learned(tmp_path, LXML, ("doc.xml", "copy.xml"), out)
    assert '"./copy.xml",' in policy
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    secret = elsewhere / "secret.xml"
    secret.write_text("<r><i>s3cret</i></r>")
    run = denied_under(tmp_path, LXML, (str(secret), "copy.xml"))
    assert run.stdout == "DENIED AccessDenied\n", run
    assert [(e["name"], e["details"]["operation"]) for e in run.denied] == [(str(secret), "lxml parse")]
    written = elsewhere / "written.xml"
    run = denied_under(tmp_path, LXML, ("doc.xml", str(written)))
    assert run.stdout == "['one', 'two']\nDENIED AccessDenied\n", run
    assert [(e["name"], e["details"]["operation"]) for e in run.denied] == [(str(written), "lxml write")]
    assert not written.exists()


DUCKDB = """\
import sys
import duckdb
try:
    con = duckdb.connect(sys.argv[1])
    con.sql("CREATE OR REPLACE TABLE t AS SELECT 42 AS v")
    print(con.sql("SELECT v FROM t").fetchall())
    con.sql("COPY t TO 'out.csv' (HEADER)")
    con.close()
    print(open("out.csv").read().split())
except PermissionError as exc:
    print("DENIED", type(exc).__name__)
"""


def test_duckdb_databases_are_judged_and_its_sql_named_as_unseen(tmp_path, tmp_path_factory):
    """DuckDB opens its database in C++: duckdb.connect is judged as a write of the file (and its WAL), so
    learn lists it and a database the policy does not list is refused by name, never made.  Its SQL opens
    files too (COPY ... TO) where nothing can be judged: learn says so once, and the learned run works
    under the kernel wall (DuckDB's read of its cgroup is learned at its import: before, the wall refused
    it and DuckDB aborted the process)."""
    library("duckdb")
    (tmp_path / "app.py").write_text(DUCKDB)
    run = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "p.toml", "app.py", "db.duckdb"],
                         cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert run.stdout == "[(42,)]\n['v', '42']\n", run.stderr
    assert "library that does its own I/O in C" in run.stderr and "duckdb: the files DuckDB's SQL opens" in run.stderr
    policy = (tmp_path / "p.toml").read_text()
    assert "# these do their own I/O in C, which was not learned: duckdb" in policy
    assert '"/proc/self/cgroup",' in policy  # read by DuckDB's C++ at every database: judged at its import
    enforced = denied_under(tmp_path, DUCKDB, ("db.duckdb",))
    assert (enforced.stdout, enforced.denied, enforced.status) == ("[(42,)]\n['v', '42']\n", [], 0), enforced
    other = tmp_path_factory.mktemp("elsewhere") / "other.duckdb"
    run2 = denied_under(tmp_path, DUCKDB, (str(other),))
    assert run2.stdout == "DENIED AccessDenied\n", run2
    assert [(e["name"], e["details"]["operation"]) for e in run2.denied][:1] == [(str(other), "duckdb connect")]
    assert not other.exists()


GRPC = """\
from concurrent import futures
import grpc

def ping(request, context):
    return b"pong:" + request

handlers = grpc.method_handlers_generic_handler("t.S", {"Ping": grpc.unary_unary_rpc_method_handler(ping)})
server = grpc.server(futures.ThreadPoolExecutor(2))
server.add_generic_rpc_handlers((handlers,))
try:
    port = server.add_insecure_port("127.0.0.1:0")
except PermissionError as exc:
    print("DENIED", type(exc).__name__)
else:
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        print(channel.unary_unary("/t.S/Ping")(b"hi", timeout=30))
    server.stop(0)
"""


def test_grpc_server_ports_are_judged_and_learned(tmp_path):
    """gRPC's C core binds its server's sockets in its own threads: add_http2_port is judged as the bind,
    so learn writes the address (before, the learned run failed to bind under the wall) and a policy
    without it refuses it by name before anything listens."""
    library("grpc")
    policy = learned(tmp_path, GRPC, (), "b'pong:hi'\n")
    assert '"127.0.0.1",' in policy
    assert "grpc: the connections of gRPC's channels" in policy
    (tmp_path / "p.toml").write_text(policy.replace('"127.0.0.1",', ""))
    run = denied_under(tmp_path, GRPC, ())
    assert run.stdout == "DENIED AccessDenied\n", run
    assert [(e["name"], e["details"]["operation"]) for e in run.denied] == [("127.0.0.1:0", "bind (gRPC server)")]


POLARS = """\
import sys
import polars as pl
try:
    df = pl.read_csv(sys.argv[1])
    df.write_parquet(sys.argv[2])
    print(pl.read_parquet(sys.argv[2])["x"].to_list(), pl.scan_csv(sys.argv[3]).collect().height)
except PermissionError as exc:
    print("DENIED", type(exc).__name__)
"""


def test_polars_files_are_judged_learned_and_denied_by_name(tmp_path, tmp_path_factory):
    """Polars opens its files in Rust: its scans and sinks (read_csv is a scan collected, write_parquet a
    sink) are judged as the reads and writes of the paths they name, a glob as its directory, so a learned
    policy holds them (before, it listed none and the run failed at the wall with a bare EACCES from
    Rust), and a file it does not list is refused with an AccessDenied naming it, before polars opens it."""
    library("polars")
    data = tmp_path_factory.mktemp("data")
    (data / "a.csv").write_text("x\n1\n2\n")
    (data / "b.csv").write_text("x\n3\n")
    args = (str(data / "a.csv"), "out.parquet", str(data) + "/*.csv")
    policy = learned(tmp_path, POLARS, args, "[1, 2] 3\n")
    assert policy.index("read = [") < policy.index("write = [\n  \"./out.parquet\",\n]"), policy
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "c.csv").write_text("x\n5\n")
    with open(tmp_path / "p.toml", "a") as f:  # the learned read rule is a directory above: this file refused
        f.write(f'[permissions.deny]\nread = ["{elsewhere / "c.csv"}"]\n')
    run = denied_under(tmp_path, POLARS, (str(elsewhere / "c.csv"), "out.parquet", args[2]))
    assert run.stdout == "DENIED AccessDenied\n", run
    assert [(e["name"], e["details"]["operation"]) for e in run.denied] == [(str(elsewhere / "c.csv"),
                                                                            "polars scan_csv")]
    run = denied_under(tmp_path, POLARS, (args[0], str(elsewhere / "out.parquet"), args[2]))
    assert run.stdout == "DENIED AccessDenied\n", run
    assert [(e["name"], e["details"]["operation"]) for e in run.denied] == [(str(elsewhere / "out.parquet"),
                                                                            "polars sink_parquet")]
    assert not (elsewhere / "out.parquet").exists()


def test_learn_names_once_the_libraries_whose_own_io_it_cannot_see(tmp_path, tmp_path_factory):
    """A program that imports pyarrow (here a stand-in package of that name, so the test needs nothing
    installed): Arrow's C++ opens files no audit event shows, so learn says so once on stderr and in the
    policy file, beside the import rule, rather than leave a bare EACCES at the wall to explain it."""
    site = tmp_path_factory.mktemp("site")
    (site / "pyarrow").mkdir()
    (site / "pyarrow" / "__init__.py").write_text("ROWS = 3\n")
    (tmp_path / "app.py").write_text("import pyarrow\nprint(pyarrow.ROWS)\n")
    run = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "p.toml", "app.py"], cwd=tmp_path,
                         env=clean_env(PYTHONPATH=str(site)), capture_output=True, text=True, timeout=60)
    assert run.stdout == "3\n", run.stderr
    said = [line for line in run.stderr.splitlines() if "own I/O in C" in line]
    assert said == ["[pyward] the program used 1 library that does its own I/O in C, which the audit layer does "
                    "not see (pyarrow: the files Arrow opens (pyarrow.csv, parquet, pyarrow.fs, datasets)), so "
                    "those files and hosts are not in the policy; under enforce only the kernel wall holds them, "
                    "refusing what the policy does not list (add them, or run with --no-kernel)"], run.stderr
    policy = (tmp_path / "p.toml").read_text()
    comment = policy.index("# these do their own I/O in C, which was not learned: pyarrow")
    assert comment < policy.index("import = [") < policy.index('"pyarrow"')


def test_duckdb_is_refused_at_its_import_by_name_rather_than_aborting_at_the_wall(tmp_path):
    """DuckDB's C++ reads /proc/self/cgroup for every database it makes and aborts the process when it
    cannot: a policy that does not grant it refuses `import duckdb` with an AccessDenied naming the file,
    where the kernel wall alone killed the program (SIGABRT, no journal event)."""
    library("duckdb")
    code = """\
        try:
            import duckdb
            print(duckdb.sql("SELECT 42").fetchall())
        except PermissionError as exc:
            print("DENIED", type(exc).__name__)
    """
    run = guard(tmp_path, code, "--mode=enforce", "--allow-import=duckdb")
    assert (run.stdout, run.status) == ("DENIED AccessDenied\n", 0), run
    assert [(e["name"], e["details"]["operation"]) for e in run.denied] == [("/proc/self/cgroup",
                                                                            "import duckdb.duckdb")]
    allowed = guard(tmp_path, code, "--mode=enforce", "--allow-import=duckdb", "--allow-read=/proc/self/cgroup")
    assert (allowed.stdout, allowed.denied, allowed.status) == ("[(42,)]\n", [], 0), allowed
