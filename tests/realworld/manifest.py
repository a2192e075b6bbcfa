"""What the real-world corpus runs: pinned sdists with their own test suites, the
exact test dependencies, the pytest arguments each needs, and the stdlib
programs run as users run them.

Every version is pinned.  A suite is fetched as an sdist (`pip download
--no-binary :all: --no-deps NAME==VERSION`) and its tests are run from the
unpacked sdist, with the package itself built from that sdist and installed
into the corpus virtualenv of each Python version.

Rejected candidates (kept here so nobody tries them again): iniconfig 2.0.0 and
2.1.0, tomli 2.0.1 and 2.2.1 -- their sdists ship no tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: Installed in every corpus virtualenv, with --no-deps: the complete closure is
#: listed, so nothing floats.  (`pip check` runs after installing and its output
#: is kept in the results.)  packaging and iniconfig are pytest's own
#: dependencies; packaging's wheel is replaced by the packaging suite's sdist build.
BASE_REQUIREMENTS = [
    "pytest==8.3.4", "pluggy==1.5.0", "iniconfig==2.0.0", "packaging==24.2",
    # to build pyward (from this checkout) and the sdists without build isolation where possible
    "setuptools==75.6.0", "wheel==0.45.1",
    # pyward's one run-time dependency
    "bytecode==0.16.0",
]


@dataclass(frozen=True)
class Suite:
    name: str                    # the suite's name in the table (the distribution name)
    version: str
    #: pinned test dependencies, installed with --no-deps (their own closure listed too)
    test_deps: tuple[str, ...] = ()
    #: arguments to pytest, after `-m pytest`, run in the unpacked sdist
    pytest_args: tuple[str, ...] = ()
    #: tests deselected on every mode (plain included), each with the reason
    deselect: tuple[tuple[str, str], ...] = ()
    #: part of the fast slice (tests/test_realworld.py, in `make test`)
    fast: bool = False
    #: also run under a hand-written tight policy (mode "tight")
    tight: bool = False
    #: extra permissions for the tight policy beyond read(suite, venv, interpreter, $TMP) and write($TMP)
    tight_extra: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: tamper alerts that are the suite's own patches made in code with no file of its (target, place): a
    #: test that pipes code to a Python child, which runs under the run's seals
    own_alerts: tuple[tuple[str, str], ...] = ()
    note: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def dirname(self) -> str:
        """The top directory inside the sdist."""
        return f"{self.name}-{self.version}"


SUITES: tuple[Suite, ...] = (
    Suite("six", "1.17.0", pytest_args=("test_six.py",), fast=True, tight=True,
          tight_extra={"import": ("six",), "run": ("/bin/sh",)},  # test_getoutput runs a shell
          note="one module, one test file; tests moved stdlib names and their imports"),
    Suite("idna", "3.10", pytest_args=("tests",), fast=True, tight=True, tight_extra={"import": ("idna",)},
          note="unittest-style tests; reads its own data files"),
    Suite("toolz", "1.0.0", pytest_args=("toolz/tests",), fast=True, tight=True,
          tight_extra={"import": ("toolz", "tlz")},
          note="tests live inside the package and import the sdist's copy"),
    Suite("markupsafe", "3.0.2", pytest_args=("tests",), fast=True,
          note="filterwarnings = error in its config; the C speedups are built when a compiler is there"),
    Suite("more-itertools", "10.5.0", pytest_args=("tests",)),
    Suite("click", "8.1.7", pytest_args=("tests",),
          own_alerts=(("builtins.__import__", "<stdin>:"),),  # test_imports: a child tracks imports
          note="filterwarnings = error; CliRunner swaps sys.stdin/stdout/stderr"),
    Suite("jinja2", "3.1.4", pytest_args=("tests",), test_deps=("MarkupSafe==3.0.2",),
          note="filterwarnings = error; asyncio tests; needs MarkupSafe (the markupsafe suite's build); "
               "on 3.13.0 its plain run fails (5 async tests and test_package_zip_list: jinja2 3.1.4 predates "
               "3.13), so it is reported as plain failed there"),
    Suite("python-dateutil", "2.9.0.post0", pytest_args=("tests",),
          test_deps=("six==1.17.0", "freezegun==1.5.1", "hypothesis==6.115.3", "attrs==24.2.0",
                     "sortedcontainers==2.4.0", "pytest-cov==5.0.0", "coverage==7.6.1"),
          note="filterwarnings = error; pytest-cov registers the no_cover mark its tests use; "
               "freezegun patches time"),
    Suite("packaging", "24.2", pytest_args=("tests",), test_deps=("pretend==1.0.9",),
          note="~27,000 parametrised tests; monkeypatches platform, sys and os"),
    Suite("attrs", "24.2.0", pytest_args=("tests",),
          test_deps=("hypothesis==6.115.3", "sortedcontainers==2.4.0", "pympler==1.1", "cloudpickle==3.1.0"),
          deselect=(("tests/test_converters.py::TestPipe::test_wrapped_annotation",
                     "fails under plain python 3.11.7 and 3.12.1 (bool is None in get_return_type; passes on "
                     "3.13.0), an attrs/CPython matter unrelated to pyward; deselected on every version"),),
          note="hypothesis-heavy"),
)

#: What every tight policy grants besides read(suite, venv, interpreter, $TMP) and write($TMP): the
#: imports of pytest and of the plugins it loads from this virtualenv's entry points
#: (hypothesis, pytest-cov, pyward's own inert plugin), and the environment variables pytest
#: and those plugins document.  A user writing a policy for `pytest` would list the same.
TIGHT_COMMON = {
    "import": ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "py",
               "hypothesis", "_hypothesis_pytestplugin", "_hypothesis_globals", "attr", "attrs",
               "sortedcontainers", "pytest_cov", "coverage"),
    # hypothesis's plugin, loaded by pytest from the virtualenv, relabels code objects as it imports
    # (reflection.impersonate: code.replace); a policy for pytest with hypothesis installed grants it
    "ffi": ("bytecode",),
    "env": ("PYTEST_*", "PY_COLORS", "PY_IGNORE_IMPORTMISMATCH", "_ARGCOMPLETE", "HYPOTHESIS_*", "CI", "BUILD_NUMBER",
            "TF_BUILD", "COLUMNS", "LINES", "TERM", "NO_COLOR", "FORCE_COLOR", "COV_CORE_*", "COVERAGE_*",
            "READTHEDOCS", "HOME"),
}

#: Modes, in the order they run.  "plain" is the baseline every other mode is compared with.
MODES = ("plain", "run", "learn", "learned", "heal", "tight")
MODE_HELP = {
    "plain": "python -m pytest ...",
    "run": "pyward run -m pytest ... (watch + tamper, the defaults)",
    "learn": "pyward learn -o POLICY -m pytest ... (watch; writes POLICY)",
    "learned": "pyward run --config POLICY -m pytest ... (enforce under the learned policy)",
    "heal": "pyward run --heal -m pytest ...",
    "tight": "pyward run --mode enforce --config TIGHT ... "
             "(hand-written: read suite+venv+interpreter+$TMP, write $TMP)",
}


@dataclass(frozen=True)
class Program:
    """A real program run the way users run it; stdout and exit status are compared."""
    name: str
    #: argv after the interpreter (`python ARGS` / `pyward run ARGS`); {programs}, {data},
    #: {wheels}, {tmp} and {port} are substituted
    args: tuple[str, ...]
    kind: str = "plain"          # "plain", "http" (a server answering one request), "unittest"
    fast: bool = True
    #: files the program writes below {tmp} whose contents are compared too
    outputs: tuple[str, ...] = ()
    #: run only when the interpreter can import these modules (stdlib test packages)
    needs: tuple[str, ...] = ()
    note: str = ""


PROGRAMS: tuple[Program, ...] = (
    Program("pip-list", ("-m", "pip", "list", "--disable-pip-version-check", "--format=freeze")),
    Program("pip-download", ("-m", "pip", "download", "--disable-pip-version-check", "--no-index",
                             "--find-links", "{wheels}", "--no-deps", "-d", "{tmp}/dl", "six==1.17.0"),
            outputs=("dl/six-1.17.0-py2.py3-none-any.whl",),
            note="a wheel built once from the six sdist, served from a local directory"),
    Program("http-server", ("-m", "http.server", "{port}", "--bind", "127.0.0.1", "--directory", "{data}"),
            kind="http", note="answers one GET, then gets SIGINT"),
    Program("json-tool", ("-m", "json.tool", "--sort-keys", "{data}/sample.json")),
    Program("pydoc-w", ("-m", "pydoc", "-w", "json"), outputs=("json.html",),
            note="runs in {tmp}: writes json.html there"),
    Program("unittest-stdlib", ("-m", "unittest", "test.test_json", "test.test_csv", "test.test_textwrap"),
            kind="unittest", needs=("test.test_json", "test.test_csv", "test.test_textwrap")),
    Program("asyncio", ("{programs}/asyncio_prog.py",)),
    Program("logging", ("{programs}/logging_prog.py", "{tmp}"), outputs=("app.log",)),
    Program("multiprocessing", ("{programs}/mp_pool.py",)),
    Program("sqlite3", ("{programs}/sqlite_prog.py", "{tmp}")),
)

#: Modes the programs run in (no hand-written policy for them).
PROGRAM_MODES = ("plain", "run", "learn", "learned", "heal")
