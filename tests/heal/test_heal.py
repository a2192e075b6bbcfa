"""Heal scenarios: side effects, stale recipes, honesty of exit statuses, commands, boundaries."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from helpers import clean_env, pyward, pyward_lines

BUGGY = """
users = {"ada": {"bio": "mathematician"}, "bob": None}

def get_bio(name):
    profile = users.get(name)
    return profile["bio"]

for name in ["ada", "bob"]:
    print(name, get_bio(name))
"""


def write(tmp_path, source, name="app.py"):
    (tmp_path / name).write_text(textwrap.dedent(source))


def recipes(tmp_path):
    """The stored recipes; none when no store was created (nothing was ever healed)."""
    if not (tmp_path / ".pyward" / "heal.db").exists():
        return []
    db = sqlite3.connect(tmp_path / ".pyward" / "heal.db")
    try:
        return db.execute("SELECT qualname, kind, operand, fallback FROM recipes ORDER BY id").fetchall()
    finally:
        db.close()


def test_side_effect_before_the_crash_is_not_repeated(tmp_path):
    write(tmp_path, """
        with open("out.txt", "a") as f:
            f.write("line\\n")
        d = {}
        print(d["missing"])
    """)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert run.returncode == 1
    assert (tmp_path / "out.txt").read_text() == "line\n"  # written once
    lines = pyward_lines(run.stderr)
    assert any("not re-running: the crashed attempt had side effects: write to" in line and "out.txt" in line
               for line in lines), lines
    assert "KeyError: 'missing'" in run.stderr  # python's own traceback, status 1
    assert recipes(tmp_path) == [("<module>", "key_guard", "d", "none")]
    second = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert second.returncode == 0 and second.stdout == "None\n"
    assert (tmp_path / "out.txt").read_text() == "line\nline\n"


def test_rerun_side_effects_says_what_repeats(tmp_path):
    write(tmp_path, """
        open("out.txt", "a").write("x")
        print({}["k"])
    """)
    run = pyward("run", "--heal", "--rerun-side-effects", "app.py", cwd=tmp_path)
    assert run.returncode == 0
    assert (tmp_path / "out.txt").read_text() == "xx"
    assert any("--rerun-side-effects: these will happen again: write to" in line
               for line in pyward_lines(run.stderr))


def test_caught_exceptions_are_never_patched(tmp_path):
    write(tmp_path, """
        def lookup(d, k):
            return d[k]
        try:
            lookup({}, "k")
        except KeyError:
            print("caught")
        print(lookup({"k": 1}, "k"))
    """)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout == "caught\n1\n"
    assert recipes(tmp_path) == []
    assert "0 healed" in pyward_lines(run.stderr)[-1]


def test_stale_recipe_is_not_applied_after_the_source_is_fixed(tmp_path):
    write(tmp_path, BUGGY)
    assert pyward("run", "--heal", "app.py", cwd=tmp_path).returncode == 0
    (tmp_path / "app.py").write_text(textwrap.dedent(BUGGY).replace('profile["bio"]',
                                                                    '(profile or {}).get("bio", "-")'))
    fixed = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert fixed.returncode == 0 and fixed.stdout == "ada mathematician\nbob -\n"
    lines = pyward_lines(fixed.stderr)
    assert any("stale patch not applied: get_bio (subscript_guard on profile)" in line for line in lines), lines
    assert not any("already healed" in line for line in lines)
    listing = pyward("patches", cwd=tmp_path)
    assert "stale" in listing.stdout.splitlines()[1]


def test_unhealable_crash_keeps_python_behaviour(tmp_path):
    write(tmp_path, """
        class User:
            pass
        print(User().name)
    """)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert run.returncode == 1
    assert "AttributeError: 'User' object has no attribute 'name'" in run.stderr
    assert any(line.startswith("[pyward][error] unhealed AttributeError") and "not on None" in line
               for line in pyward_lines(run.stderr))
    assert recipes(tmp_path) == []


def test_crash_inside_a_library_is_not_patched(tmp_path):
    write(tmp_path, """
        import json
        json.loads(None)
    """)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert run.returncode == 1
    assert any("outside the program's own code" in line for line in pyward_lines(run.stderr))


def test_fail_on_heal_gives_a_non_zero_exit(tmp_path):
    write(tmp_path, BUGGY)
    run = pyward("run", "--heal", "--fail-on-heal", "app.py", cwd=tmp_path)
    assert run.returncode == 79
    assert "exit=79" in pyward_lines(run.stderr)[-1]
    again = pyward("run", "--heal", "--fail-on-heal", "app.py", cwd=tmp_path)  # healed by a stored patch: same
    assert again.returncode == 79
    assert pyward("run", "--heal", "app.py", cwd=tmp_path).returncode == 0


def test_dry_run_proves_the_patch_and_changes_nothing(tmp_path):
    write(tmp_path, BUGGY)
    run = pyward("run", "--heal", "--dry-run", "app.py", cwd=tmp_path)
    assert run.returncode == 1
    assert "dry run: TypeError: 'NoneType' object is not subscriptable in get_bio (subscript_guard on profile) " \
           "can be healed" in run.stderr
    assert "+    6 LOAD_CONST           <pyward guard>" in run.stderr  # the instruction diff
    assert recipes(tmp_path) == []


def test_patches_explain_rollback(tmp_path):
    write(tmp_path, BUGGY)
    pyward("run", "--heal", "app.py", cwd=tmp_path)
    table = pyward("patches", cwd=tmp_path).stdout.splitlines()
    assert table[0].split() == ["ID", "FUNCTION", "GUARD", "OPERAND", "FALLBACK", "RECOVERY", "HITS", "AGE", "WHERE",
                                "STATUS"]
    assert table[1].split()[:7] == ["1", "get_bio", "subscript_guard", "profile", "none", "value", "1"]
    assert table[1].split()[-2:] == ["app.py:6", "active"]
    explained = pyward("explain", "get_bio", cwd=tmp_path)
    assert explained.returncode == 0
    text = explained.stdout
    assert "what failed:  TypeError: 'NoneType' object is not subscriptable" in text
    assert "source line:  6: return profile[\"bio\"]" in text
    assert "suggested fix: profile may be None" in text
    assert "recovery:     value: the failing operation gives the fallback" in text
    assert "+" in text and "<pyward guard>" in text
    dry = pyward("rollback", "--dry-run", "get_bio", cwd=tmp_path)
    assert dry.stdout.startswith("would remove patch 1: get_bio") and len(recipes(tmp_path)) == 1
    done = pyward("rollback", "get_bio", cwd=tmp_path)
    assert done.returncode == 0 and recipes(tmp_path) == []
    missing = pyward("rollback", "nothing", cwd=tmp_path)
    assert missing.returncode == 1 and "no patch named 'nothing'" in missing.stderr
    crash = pyward("run", "--heal", "--retries", "0", "app.py", cwd=tmp_path)
    assert crash.returncode == 1 and any("--retries 0 used up" in line for line in pyward_lines(crash.stderr))


def test_commands_without_a_store_say_so(tmp_path):
    run = pyward("patches", cwd=tmp_path)
    assert run.returncode == 1 and "no patch store at" in run.stderr and "Traceback" not in run.stderr


def test_resilient_heals_in_flight(tmp_path):
    write(tmp_path, """
        import pyward

        @pyward.resilient
        def ratio(a, b):
            return a / b

        print([ratio(1, 2), ratio(1, 0), ratio(3, 4)])
        with pyward.resilient():
            print({}["k"])
            print("not reached")
        print("end")
    """)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "[0.5, None, 0.75]\nend\n"
    lines = pyward_lines(run.stderr)
    assert not any("re-running" in line for line in lines)
    assert any("the rest of the `with pyward.resilient()` block was skipped" in line for line in lines)
    # without --heal the decorator is inert: python's behaviour
    plain = pyward("run", "app.py", cwd=tmp_path)
    assert plain.returncode == 1 and "ZeroDivisionError" in plain.stderr


def test_thread_crash_is_patched_at_the_thread_boundary(tmp_path):
    write(tmp_path, """
        import threading
        out = []
        def work(item):
            out.append(item["v"] * 2)
        for item in [{"v": 1}, {}, {"v": 3}]:
            t = threading.Thread(target=work, args=(item,))
            t.start(); t.join()
        print(out)
    """)
    first = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert first.returncode == 0 and first.stdout == "[2, 6]\n"
    assert "KeyError: 'v'" in first.stderr  # python's thread report still appears
    assert any("healed KeyError" in line and "boundary: thread" in line for line in pyward_lines(first.stderr))
    second = pyward("run", "--heal", "app.py", cwd=tmp_path)
    # the guard makes item["v"] None for the bad item; None * 2 is a new crash (honest: not hidden)
    assert any("already healed: work (key_guard on item)" in line for line in pyward_lines(second.stderr))


def test_sandbox_off_means_no_rerun(tmp_path):
    write(tmp_path, BUGGY)
    run = pyward("run", "--heal", "--mode", "off", "app.py", cwd=tmp_path)
    assert run.returncode == 1
    assert any("not re-running: the sandbox is off" in line for line in pyward_lines(run.stderr))


def test_expired_patches_warn(tmp_path):
    write(tmp_path, BUGGY)
    pyward("run", "--heal", "app.py", cwd=tmp_path)
    db = sqlite3.connect(tmp_path / ".pyward" / "heal.db")
    db.execute("UPDATE recipes SET created = ?", (time.time() - 10 * 86400,))
    db.commit()
    db.close()
    run = pyward("run", "--heal", "--ttl", "7", "app.py", cwd=tmp_path)
    assert run.returncode == 0
    assert any("is 10 days old (--ttl 7): the root cause at app.py:6 is still unfixed" in line
               for line in pyward_lines(run.stderr))


def test_module_run_with_dash_m(tmp_path):
    pkg = tmp_path / "tool"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("def size(xs):\n    return xs[5]\nprint(size([1]))\n")
    first = pyward("run", "--heal", "-m", "tool", cwd=tmp_path)
    assert first.returncode == 0 and first.stdout == "None\n", first.stderr
    second = pyward("run", "--heal", "-m", "tool", cwd=tmp_path)
    assert second.returncode == 0 and second.stdout == "None\n"
    assert any("already healed: size (index_guard on xs)" in line for line in pyward_lines(second.stderr))


def test_two_bugs_in_one_function(tmp_path):
    write(tmp_path, """
        def show(user):
            return user["name"].upper(), 10 / user["age"]
        print(show({"name": "ada", "age": 5}))
        print(show({"name": None, "age": 0}))
    """)
    first = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert [k for _, k, _, _ in recipes(tmp_path)] == ["null_guard", "division_guard"]
    assert first.stdout.endswith("('ADA', 2.0)\n(None, None)\n")
    second = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert second.returncode == 0 and second.stdout == "('ADA', 2.0)\n(None, None)\n"
    assert sum("already healed: show" in line for line in pyward_lines(second.stderr)) == 2


def test_the_store_skips_the_fsync_per_commit_only_in_wal_mode(tmp_path):
    from pyward.heal.store import Store

    path = str(tmp_path / ".pyward" / "recipes.db")
    store = Store(path)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: safe with WAL
    store.close()
    with sqlite3.connect(path) as db:  # the same store with a rollback journal (as where WAL is refused)
        assert db.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    store = Store(path, create=False)
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL, the default: NORMAL could corrupt
    store.close()


def test_many_processes_share_the_store(tmp_path):
    write(tmp_path, BUGGY)
    procs = [subprocess.Popen([sys.executable, "-m", "pyward", "run", "--heal", "-q", "app.py"], cwd=tmp_path,
                              env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert recipes(tmp_path) == [("get_bio", "subscript_guard", "profile", "none")]


def test_configured_fallback(tmp_path):
    write(tmp_path, "print('n=' + 5)\n")
    (tmp_path / "pyward.toml").write_text('[heal]\nenabled = true\n[heal.fallback]\nstr_coerce_guard = "str"\n')
    run = pyward("run", "app.py", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout == "n=5\n", run.stderr
    (tmp_path / "pyward.toml").write_text('[heal.fallback]\ndivision_guard = "x"\n')
    bad = pyward("run", "app.py", cwd=tmp_path)
    assert bad.returncode == 2 and "division_guard" in bad.stderr and "'none', 'zero'" in bad.stderr


@pytest.mark.parametrize("container,key", [("collections.defaultdict(int)", "'k'"), ("Custom()", "'k'")])
def test_guard_never_fires_where_the_original_would_not_raise(tmp_path, container, key):
    """A key guard made for a dict leaves defaultdicts and custom __getitem__ alone."""
    write(tmp_path, f"""
        import collections
        class Custom:
            def __getitem__(self, k):
                return "custom"
        def get(d, k):
            return d[k]
        print(get({{}}, "k"))
        print(get({container}, {key}))
    """)
    first = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    expected = "0" if "defaultdict" in container else "custom"
    assert first.stdout.splitlines()[-2:] == ["None", expected]


def test_verification_gate_refuses_a_changed_instruction():
    from pyward.heal.synth import RefusedPatch, verify

    def function(source):
        space = {}
        exec(compile(source, "<gate>", "exec"), space)
        return space["f"].__code__

    plus, minus = function("def f(x):\n    return x + 1\n"), function("def f(x):\n    return x - 1\n")
    verify(plus, plus, [])
    with pytest.raises(RefusedPatch, match="changed its argument"):
        verify(plus, minus, [])
    with pytest.raises(RefusedPatch, match="inserted"):
        verify(plus, plus, [2])


def test_two_guards_on_one_instruction(tmp_path):
    """profile["bio"] fails first on None, then on a missing key: both guards run, chained."""
    write(tmp_path, """
        def bio(p):
            return p["bio"]
        for p in [{"bio": "x"}, None, {}]:
            print(bio(p))
    """)
    first = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert [k for _, k, _, _ in recipes(tmp_path)] == ["subscript_guard", "key_guard"]
    second = pyward("run", "--heal", "--log", "events.jsonl", "app.py", cwd=tmp_path)
    assert second.returncode == 0 and second.stdout == "x\nNone\nNone\n"
    fired = [e for e in map(json.loads, (tmp_path / "events.jsonl").read_text().splitlines())
             if e["engine"] == "heal" and e["kind"] == "fired"]
    assert len(fired) == 2 and all(e["where"] == "app.py:3" and e["function"] == "bio" for e in fired), fired


def test_analysis_sees_a_jump_target_behind_extended_arg():
    """A jump to an instruction with an EXTENDED_ARG prefix lands on the prefix;
    the instruction list the analysis walks must still mark the target, or a
    backward walk would cross a join (found by the round-trip harness)."""
    import dis

    from pyward.heal.analyse import instructions, offset_table

    assigns = "".join(f"    v{i} = {i}\n" for i in range(300))  # v299 needs an EXTENDED_ARG
    space = {}
    exec(compile(f"def f(x):\n{assigns}    if x:\n        x = 1\n    return v299\n", "<big>", "exec"), space)
    code = space["f"].__code__
    raw = [i.offset for i in dis.get_instructions(code) if i.is_jump_target]
    assert any(i.opname == "EXTENDED_ARG" for i in dis.get_instructions(code) if i.is_jump_target)
    instrs, table = instructions(code), offset_table(code)
    marked = [n for n, i in enumerate(instrs) if i.is_jump_target]
    assert sorted({table[offset] for offset in raw}) == marked
    assert instrs[marked[-1]].opname.startswith("LOAD_FAST") and instrs[marked[-1]].argval == "v299"


def test_watch_restarts_after_a_healed_crash(tmp_path):
    """A long-running program with a side effect before its crash, not re-run by
    `run --heal` (--retries 0): `pyward watch` starts it again once the patch is
    saved, since --rerun-side-effects says the side effect may happen again."""
    write(tmp_path, 'with open("log.txt", "a") as f:\n    f.write("start\\n")\n' + BUGGY)
    run = pyward("watch", "--max-restarts", "2", "--retries", "0", "--rerun-side-effects", "app.py", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "ada mathematician\n" + "ada mathematician\nbob None\n"
    assert (tmp_path / "log.txt").read_text() == "start\nstart\n"  # two runs, each started once
    lines = pyward_lines(run.stderr)
    assert any("watch: app.py exited with status 1; patch saved for get_bio (subscript_guard on profile): "
               "restarting (restart 1 of 2)" in line for line in lines), lines
    assert lines[-1] == "[pyward] watch: app.py ended with status 0 after 1 restart " \
                        "(healed: get_bio (subscript_guard on profile))", lines


def test_watch_does_not_restart_an_unhealed_crash(tmp_path):
    write(tmp_path, """
        print("up")
        raise RuntimeError("not structural")
    """)
    run = pyward("watch", "app.py", cwd=tmp_path)
    assert run.returncode == 1 and run.stdout == "up\n"  # one run, python's status
    assert "RuntimeError: not structural" in run.stderr
    assert pyward_lines(run.stderr)[-1] == \
        "[pyward] watch: app.py exited with status 1 and no new patch was saved: not restarting"


def test_watch_max_restarts_zero(tmp_path):
    write(tmp_path, "open('log.txt', 'a').close()\n" + textwrap.dedent(BUGGY))
    run = pyward("watch", "--max-restarts=0", "app.py", cwd=tmp_path)
    assert run.returncode == 1 and run.stdout == "ada mathematician\n"
    assert "--max-restarts 0 is used up: not restarting (the next run uses the patch)" in run.stderr
    assert recipes(tmp_path) == [("get_bio", "subscript_guard", "profile", "none")]


def test_watch_stops_on_sigterm_without_restarting(tmp_path):
    import signal

    write(tmp_path, """
        import time
        print("serving", flush=True)
        while True:
            time.sleep(0.05)
    """)
    proc = subprocess.Popen([sys.executable, "-m", "pyward", "watch", "app.py"], cwd=tmp_path, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "serving\n"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "restarting" not in err and out == ""


@pytest.mark.parametrize(("args", "message"), [
    (["--max-restarts", "x", "app.py"], "--max-restarts takes a whole number >= 0, not 'x'"),
    (["--max-restarts"], "argument --max-restarts: expected one argument"),
    (["--heal"], "nothing to run"),
    (["-"], "a program read from stdin cannot be restarted"),
])
def test_watch_usage_errors(tmp_path, args, message):
    run = pyward("watch", *args, cwd=tmp_path)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_crash_shape_is_recognised_in_another_function_and_another_run(tmp_path):
    write(tmp_path, """
        def first(cfg):
            return cfg["name"].upper()
        print(first({}))
    """)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout == "None\n", run.stderr
    assert "recognised" not in run.stderr  # learned here, by analysis
    db = sqlite3.connect(tmp_path / ".pyward" / "heal.db")
    # one heal: the missing key's value goes to `.upper()`, so the function returns None (handing `.upper()`
    # None would be a second crash and a second heal)
    assert [origin for (origin,) in db.execute("SELECT origin FROM shapes")] == ["first (app.py:3)"]
    db.close()
    write(tmp_path, """
        def first(cfg):
            return cfg["name"].upper()
        def second(settings):
            return settings["title"].upper()
        print(first({}), second({}))
    """)
    second = pyward("run", "--heal", "--log", "events.jsonl", "app.py", cwd=tmp_path)
    assert second.returncode == 0 and second.stdout.splitlines()[-1] == "None None", second.stderr
    healed = [e for e in map(json.loads, (tmp_path / "events.jsonl").read_text().splitlines())
              if e["engine"] == "heal" and e["kind"] == "healed"]
    assert [(e["name"], e["details"]["recognised_from"], e["details"]["recovery"]) for e in healed] == [
        ('second (key_guard on settings)', "first (app.py:3)", "return")]
    assert 'crash shape recognised from first (app.py:3)' in second.stderr


def test_shadow_follows_the_fallback(tmp_path):
    """--shadow says where each guard's None goes: output, an operation that fails, or a check."""
    write(tmp_path, """
        data = {"ada": {"bio": "x", "age": 36, "city": "London"}, "bob": None}

        def bio(name):
            return data.get(name)["bio"]

        def age(name):
            return data.get(name)["age"]

        def city(name):
            return data.get(name)["city"]

        def show(name):
            text = bio(name)
            print(name, text)

        def older(name):
            return age(name) + 1

        def where(name):
            c = city(name)
            if c is None:
                return "?"
            return c

        show("bob")
        print(where("bob"))
        print(older("bob"))
    """)
    first = pyward("run", "--heal", "--shadow", "--retries", "5", "app.py", cwd=tmp_path)
    assert first.returncode == 1, first.stderr  # None + 1 cannot be healed: the shadow names the guard
    shadows = [line for line in pyward_lines(first.stderr) if "shadow:" in line]
    assert "[pyward][warning] shadow: the None from bio (subscript_guard on data.get(name)) goes: returned to " \
           "show() -> text (app.py:14) -> output by print() at app.py:15" in shadows, shadows
    assert "[pyward] shadow: the None from city (subscript_guard on data.get(name)) goes: returned to where() " \
           "-> c (app.py:21) -> checked at app.py:22 (the program handles it)" in shadows, shadows
    assert "[pyward][warning] shadow: the None from age (subscript_guard on data.get(name)) goes: returned to " \
           "older() -> used in `+` at app.py:18: fails on None" in shadows, shadows
    assert any("shadow: TypeError: unsupported operand type(s) for +: 'NoneType' and 'int': guards produced None "
               "before this crash and may have caused it: " in line and "age (subscript_guard on data.get(name))"
               in line for line in shadows), shadows
    plain = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert "shadow:" not in plain.stderr  # off unless asked


def test_gate_refuses_a_guard_between_kw_names_and_its_call():
    """KW_NAMES hands keyword names to the next call (3.11/3.12): nothing may come between them.
    On 3.13 the names are on the stack (CALL_KW) and there is no KW_NAMES to separate."""
    from pyward.heal.analyse import PY, Site, instructions
    from pyward.heal.synth import RefusedPatch, synthesise

    space = {}
    exec("def f(g, a):\n    return g(a, k=1)\n", space)
    code = space["f"].__code__
    names = [i.opname for i in instructions(code)]
    if PY >= (3, 13):
        assert "KW_NAMES" not in names and "CALL_KW" in names
        return
    after = names.index("KW_NAMES") + 1  # PRECALL on 3.11, CALL on 3.12
    site = Site("callable_guard", after, names[after], 4, (4,), "g", 2)
    with pytest.raises(RefusedPatch, match="separate KW_NAMES from its call"):
        synthesise(code, [site], lambda s, link: (lambda value: value))


def test_watch_help_among_run_options(tmp_path):
    run = pyward("watch", "--heal", "--help", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.startswith("usage: pyward watch [--max-restarts N]"), run.stderr


def test_a_thread_still_in_the_original_code_adds_its_guard_to_the_live_patch(tmp_path):
    """Threaded servers: thread T entered f before f was healed (key_guard, in the main thread); T then
    crashes elsewhere in f's original code.  That guard must join the patch f now runs, in one heal."""
    write(tmp_path, """
        import threading
        import pyward

        entered, gate = threading.Event(), threading.Event()

        def f(d, n, wait=False):
            if wait:
                entered.set()
                gate.wait()
            a = d["x"]
            return a, 10 / n

        @pyward.resilient
        def call(*args):
            return f(*args)

        t = threading.Thread(target=lambda: print("thread", call({"x": 1}, 0, True)))
        t.start()
        entered.wait()
        print("main", call({}, 1))
        gate.set()
        t.join()
        print("after", f({}, 0))
    """)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "main (None, 10.0)\nthread (1, None)\nafter (None, None)\n"
    healed = [line for line in pyward_lines(run.stderr) if "] healed " in line]
    assert [line.split(" in f (")[1].split(")")[0] for line in healed] == ["key_guard on d", "division_guard on n"]


def test_heal_under_the_enforcing_sandbox(tmp_path):
    """Healing builds code objects and finds the functions to patch through the gc: under --mode enforce
    the sandbox judges that like the program's own (ffi bytecode, introspection).  Denied: the crash is
    reported unhealed with the flag that would allow it, the program's traceback and exit status are its
    own, nothing is saved.  Allowed: healed, and the next run applies the stored patch."""
    write(tmp_path, BUGGY)
    denied = pyward("run", "--heal", "--mode", "enforce", "app.py", cwd=tmp_path)
    assert denied.returncode == 1
    assert denied.stderr.splitlines()[-2:-1] == ["TypeError: 'NoneType' object is not subscriptable"]
    assert "pyward/" not in "\n".join(line for line in denied.stderr.splitlines() if line.startswith("  File"))
    unhealed = [line for line in pyward_lines(denied.stderr) if line.startswith("[pyward][error] unhealed")]
    assert len(unhealed) == 1 and "allow it with --allow-ffi=bytecode" in unhealed[0], denied.stderr
    assert recipes(tmp_path) == []
    for output in ("ada mathematician\nada mathematician\nbob None\n",  # re-run after the heal
                   "ada mathematician\nbob None\n"):  # the stored patch applies before the first call
        allowed = pyward("run", "--heal", "--mode", "enforce", "--allow-ffi=bytecode,introspection", "app.py",
                         cwd=tmp_path)
        assert (allowed.returncode, allowed.stdout) == (0, output), allowed.stderr
    assert "[pyward] already healed: get_bio (subscript_guard on profile)" in pyward_lines(allowed.stderr)
    assert recipes(tmp_path) == [("get_bio", "subscript_guard", "profile", "none")]


STARTS_PYTHON = """
import subprocess, sys
subprocess.run(["/bin/true"])
subprocess.run([sys.executable, "-c", "print('child')"])
subprocess.run([sys.executable, "-c", "print('child')"])
"""


def test_a_python_child_the_sandbox_does_not_arm_is_said_once_not_to_be_healed(tmp_path):
    """The sandbox arms Python children and carries the heal engine to them (a development server's
    reloader serves from one): nothing to say. Under --no-inherit heal does not follow them: said once under
    --heal, never without it, and not for pyward's own re-run of the program."""
    write(tmp_path, STARTS_PYTHON)
    followed = pyward("run", "--heal", "--no-report", "app.py", cwd=tmp_path)
    assert (followed.returncode, followed.stdout) == (0, "child\nchild\n"), followed.stderr
    assert "does not follow" not in followed.stderr
    assert len([line for line in pyward_lines(followed.stderr) if "run end:" in line]) == 1, followed.stderr
    healed = pyward("run", "--heal", "--no-inherit", "--no-report", "app.py", cwd=tmp_path)
    assert (healed.returncode, healed.stdout) == (0, "child\nchild\n"), healed.stderr
    said = [line for line in pyward_lines(healed.stderr) if "heal does not follow the Python process" in line]
    assert len(said) == 1 and " -c print('child')" in said[0], healed.stderr
    plain = pyward("run", "--no-report", "app.py", cwd=tmp_path)
    assert "does not follow" not in plain.stderr
    write(tmp_path, BUGGY)
    rerun = pyward("run", "--heal", "--no-report", "app.py", cwd=tmp_path)
    assert "re-running the program" in rerun.stderr and "does not follow" not in rerun.stderr, rerun.stderr


def test_the_verbose_listing_of_a_coroutine_names_every_instruction():
    """`-v` lists the guarded bytecode: a coroutine's own plumbing (its cleanup handler) has no line number,
    which failed the listing and with it the heal ('could not heal it') of an async handler under -v."""
    from pyward.heal.analyse import instructions
    from pyward.heal.synth import diff

    async def handler(x):
        return x["a"]["b"]

    listing = diff(handler.__code__, [])
    assert len(listing) == len(list(instructions(handler.__code__)))
    assert any(line.split()[0] == "CALL_INTRINSIC_1" for line in listing) or sys.version_info < (3, 12)


CHILD_THREADS = """
import threading
USERS = {"bob": {"profile": None}}
def bio(name):
    return USERS[name]["profile"]["bio"]
def work():
    print("bio", bio("bob"), flush=True)
for _ in range(3):
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
"""


@pytest.mark.parametrize("mode", ["watch", "enforce"])
def test_a_python_child_heals_and_its_heals_are_the_runs(tmp_path, mode):
    """The sandbox carries the heal engine into a Python child (a reloader's server): its thread's crash is
    healed there, under enforce too (what the engine reads of pyward's own is not judged as the program's),
    and the run's report counts the heal and the child's guard firings."""
    (tmp_path / "child.py").write_text(CHILD_THREADS)
    write(tmp_path, "import subprocess, sys\nsubprocess.run([sys.executable, 'child.py'], check=True)\n")
    options = ["--mode", "enforce", "--allow-run", "--allow-ffi=bytecode,introspection"] if mode == "enforce" else []
    run = pyward("run", "--heal", *options, "--report", "r.json", "app.py", cwd=tmp_path)
    assert (run.returncode, run.stdout) == (0, "bio None\nbio None\n"), run.stderr
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert (summary["denied"], summary["healed"], summary["guard_firings"]) == (0, 1, 2), summary
