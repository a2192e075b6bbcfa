"""Configuration: discovery, precedence, relative paths, and errors that stop the run."""
from __future__ import annotations

import pytest

from helpers import pyward, pyward_lines
from pyward import config

APP = "import pathlib\npathlib.Path('ran.marker').write_text('yes')\nprint('ran')\n"


@pytest.fixture
def project(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "app.py").write_text(APP)
    return tmp_path


def test_discovery_from_nested_cwd(project):
    (project / "pyproject.toml").write_text("[tool.pyward]\nquiet = true\n")
    cwd = project / "sub" / "deeper"
    assert config.discover(str(cwd)) == str(project / "pyproject.toml")
    result = pyward("run", "app.py", cwd=cwd)
    assert result.stdout == "ran\n"
    assert pyward_lines(result.stderr) == []  # quiet came from the file


def test_pyward_toml_wins_in_the_same_directory(project):
    (project / "pyproject.toml").write_text("[tool.pyward]\nquiet = true\n")
    (project / "pyward.toml").write_text("quiet = false\n")
    assert config.load(cwd=str(project)).source == str(project / "pyward.toml")
    assert config.load(cwd=str(project))["quiet"] is False


def test_pyproject_without_table_is_skipped(project):
    (project / "pyproject.toml").write_text("[tool.pyward]\nverbose = 2\n")
    (project / "sub" / "pyproject.toml").write_text("[project]\nname = 'x'\n[tool.ruff]\nline-length = 1\n")
    settings = config.load(cwd=str(project / "sub" / "deeper"))
    assert settings.source == str(project / "pyproject.toml")
    assert settings["verbose"] == 2


def test_no_file_means_defaults(tmp_path):
    settings = config.load(cwd=str(tmp_path))
    assert settings.source is None or not settings.source.startswith(str(tmp_path))
    assert settings["quiet"] is False and settings["report"] is True


def test_flags_override_the_file(project):
    (project / "pyward.toml").write_text('quiet = true\nlog = "from-file.jsonl"\n')
    cwd = project / "sub" / "deeper"
    result = pyward("run", "--log", "cli.jsonl", "app.py", cwd=cwd)
    assert (cwd / "cli.jsonl").exists()
    assert not (project / "from-file.jsonl").exists()
    assert pyward_lines(result.stderr) == []  # quiet still from the file


def test_a_deny_flag_adds_to_the_files_deny_rules(tmp_path):
    """An allow flag replaces the file's allow rules; a deny flag never drops the file's deny rules
    (each is named by where it comes from); --no-config leaves the file out."""
    for directory in ("secret", "other", "data"):
        (tmp_path / directory).mkdir()
        (tmp_path / directory / "k").write_text(directory)
    (tmp_path / "pyproject.toml").write_text('[tool.pyward.permissions]\nread = ["."]\n'
                                             '[tool.pyward.permissions.deny]\nread = ["secret"]\n')
    (tmp_path / "prog").mkdir()  # (its own directory is read implicitly)
    (tmp_path / "prog" / "app.py").write_text(
        "for name in ('secret', 'other', 'data'):\n"
        "    try:\n"
        "        print(name, open(name + '/k').read())\n"
        "    except PermissionError as exc:\n"
        "        print(name, 'not allowed' if 'allow it with' in str(exc) else 'denied by a rule')\n")
    both = pyward("run", "-q", "--deny-read=other", "prog/app.py", cwd=tmp_path)
    assert both.stdout.splitlines() == ["secret denied by a rule", "other denied by a rule", "data data"], both.stderr
    narrowed = pyward("run", "-q", "--allow-read=data", "prog/app.py", cwd=tmp_path)
    assert narrowed.stdout.splitlines() == ["secret denied by a rule", "other not allowed", "data data"]
    alone = pyward("run", "-q", "--no-config", "--allow-read=.", "--deny-read=other", "prog/app.py", cwd=tmp_path)
    assert alone.stdout.splitlines() == ["secret secret", "other denied by a rule", "data data"]


def test_relative_paths_are_relative_to_the_file(project):
    (project / "pyward.toml").write_text('log = "logs/events.jsonl"\nreport = "r.json"\n')
    (project / "logs").mkdir()
    result = pyward("run", "app.py", cwd=project / "sub" / "deeper")
    assert result.returncode == 0, result.stderr
    assert (project / "logs" / "events.jsonl").exists()
    assert (project / "r.json").exists()


def test_report_false_disables_the_report(project):
    (project / "pyward.toml").write_text("report = false\n")
    result = pyward("run", "app.py", cwd=project / "sub" / "deeper")
    assert pyward_lines(result.stderr)[-1].endswith("no report")
    assert not (project / "sub" / "deeper" / ".pyward").exists()


def test_explicit_config_and_no_config(project):
    (project / "pyward.toml").write_text("quiet = true\n")
    (project / "other.toml").write_text("verbose = 2\n")
    cwd = project / "sub" / "deeper"
    explicit = pyward("run", "--config", str(project / "other.toml"), "app.py", cwd=cwd)
    assert any("run start" in line for line in pyward_lines(explicit.stderr))  # verbose, not quiet
    ignored = pyward("run", "--no-config", "app.py", cwd=cwd)
    assert len(pyward_lines(ignored.stderr)) == 1  # just the summary: the quiet file was ignored
    missing = pyward("run", "--config", "nope.toml", "app.py", cwd=cwd)
    assert missing.returncode == 2 and "nope.toml: no such config file" in missing.stderr


@pytest.mark.parametrize("filename, content, expected", [
    ("pyward.toml", "quiet = [", "invalid TOML"),
    ("pyward.toml", "quite = true\n", "unknown key 'quite' (did you mean 'quiet'?)"),
    ("pyproject.toml", "[tool.pyward]\nquite = true\n", "pyproject.toml: [tool.pyward] unknown key 'quite'"),
    ("pyward.toml", 'quiet = "yes"\n', "quiet: expected a boolean (true or false), got the string 'yes'"),
    ("pyward.toml", "verbose = -1\n", "verbose: expected an integer (zero or more), got the integer -1"),
    ("pyward.toml", "verbose = true\n", "verbose: expected an integer"),
    ("pyward.toml", 'color = "rainbow"\n',
     "color: expected one of 'auto', 'always', 'never', got the string 'rainbow'"),
    ("pyward.toml", "log = 3\n", "log: expected a path string, got the integer 3"),
    ("pyward.toml", "report = true\n", "report: expected a path string or false, got the boolean True"),
    ("pyward.toml", "[heal]\nx = 1\n", "[heal] unknown key 'x'"),
    ("pyproject.toml", "[tool]\npyward = 3\n", "[tool.pyward] must be a table"),
])
def test_config_errors_stop_before_the_program(project, filename, content, expected):
    (project / filename).write_text(content)
    cwd = project / "sub" / "deeper"
    result = pyward("run", "app.py", cwd=cwd)
    assert result.returncode == 2
    assert result.stdout == ""
    assert not (cwd / "ran.marker").exists()
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("[pyward][error] ")
    assert expected in lines[0]
    assert filename in lines[0]


def test_pyward_config_command(project):
    (project / "pyward.toml").write_text("verbose = 1\n")
    result = pyward("config", cwd=project)
    assert result.returncode == 0
    assert "# config file: " in result.stdout and "pyward.toml" in result.stdout
    assert "verbose = 1" in result.stdout
    bad = project / "sub" / "pyward.toml"
    bad.write_text("nope = 1\n")
    assert pyward("config", cwd=project / "sub").returncode == 2


def test_every_option_has_a_valid_default():
    for option in config.OPTIONS:
        if option.default is None or (option.kind == "report" and option.default is True):
            continue
        assert config.check(option, option.default) == option.default
