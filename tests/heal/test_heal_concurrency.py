"""Heal and concurrency, compared with python: a crash in a thread pool's task,
an asyncio task, a process pool's worker, a thread.  The exception the caller
sees (through `future.result()`, `await`) is python's unless heal genuinely
healed it, and then the run says so."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from helpers import clean_env, pyward, pyward_lines

TASK = '''
USERS = {"ann": {"name": "Ann"}}

def task(n):
    return USERS.get(n)["name"]
'''


def python(tmp_path, name="app.py"):
    return subprocess.run([sys.executable, name], cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                          timeout=60)


def write(tmp_path, head, body):
    (tmp_path / "app.py").write_text(head + textwrap.dedent(body))


def test_a_thread_pool_task_s_exception_stays_the_caller_s(tmp_path):
    """concurrent.futures keeps the task's exception for `future.result()`: the
    caller may catch it (the first), or not (the second).  A guard in the task
    would see the pool's catch-all and let it through, so healing it is not
    offered: python's output, traceback and status, and no re-run."""
    write(tmp_path, TASK, '''
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as ex:
        try:
            print("result", ex.submit(task, "zed").result())
        except TypeError as e:
            print("caller caught", e)
        print("uncaught", ex.submit(task, "zed").result())
    ''')
    plain = python(tmp_path)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert plain.returncode == run.returncode == 1
    assert run.stdout == plain.stdout == "caller caught 'NoneType' object is not subscriptable\n"
    lines = pyward_lines(run.stderr)
    assert not any("re-running" in line or line.startswith("[pyward][warning] healed") for line in lines), lines
    assert any(line.startswith("[pyward][error] unhealed TypeError") and
               "caught on its way (concurrent.futures.thread: _WorkItem.run)" in line for line in lines), lines
    assert "0 healed" in lines[-1]


def test_a_program_catching_and_raising_again_is_not_healed(tmp_path):
    write(tmp_path, TASK, '''
    def outer():
        try:
            return task("zed")
        except TypeError:
            print("logged")
            raise
    outer()
    ''')
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert run.returncode == 1 and run.stdout == "logged\n"
    assert any("caught on its way (__main__: outer)" in line for line in pyward_lines(run.stderr)), run.stderr


ASYNC = TASK.replace("def task(n):", "async def task(n):\n    await asyncio.sleep(0)").replace(
    "USERS =", "import asyncio\nUSERS =")


def test_an_asyncio_task_s_exception_goes_to_whoever_awaits_it(tmp_path):
    """gather(return_exceptions=True) and a caller's try/except get python's
    exception; the one that escapes is not healed by a guard that never fires."""
    write(tmp_path, ASYNC, '''
    async def main():
        r = await asyncio.gather(task("ann"), task("zed"), return_exceptions=True)
        print("gather", [type(x).__name__ if isinstance(x, BaseException) else x for x in r])
        try:
            await asyncio.gather(task("zed"))
        except TypeError as e:
            print("caught", e)
        print(await asyncio.gather(task("zed")))
    asyncio.run(main())
    ''')
    expected = "gather ['Ann', 'TypeError']\ncaught 'NoneType' object is not subscriptable\n"
    plain = python(tmp_path)
    assert (plain.returncode, plain.stdout) == (1, expected)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stdout in (expected, expected * 2)  # a re-run prints it again, never a fallback
    lines = pyward_lines(run.stderr)
    assert not any("guard fired" in line for line in lines), lines
    assert any(line.startswith("[pyward][error] unhealed TypeError") for line in lines), lines
    assert run.stderr.rstrip().splitlines()[-2] == "TypeError: 'NoneType' object is not subscriptable"
    again = pyward("run", "--heal", "app.py", cwd=tmp_path)  # what a stored guard does next time: the same
    assert (again.returncode, again.stdout) == (1, expected)
    assert any("let it through" in line for line in pyward_lines(again.stderr)), again.stderr


def test_a_task_group_s_exception_group_is_caught_as_under_python(tmp_path):
    write(tmp_path, ASYNC, '''
    async def main():
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(task("zed"))
        except* TypeError as eg:
            print("caught group", [str(e) for e in eg.exceptions])
    asyncio.run(main())
    ''')
    if sys.version_info < (3, 11):
        pytest.skip("TaskGroup is 3.11+")
    plain = python(tmp_path)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert (run.returncode, run.stdout) == (plain.returncode, plain.stdout) == (
        0, "caught group [\"'NoneType' object is not subscriptable\"]\n")
    assert not any("guard fired" in line or "healed" in line.split("·")[0] for line in pyward_lines(run.stderr))


def test_the_task_asyncio_run_waits_for_is_healed(tmp_path):
    """The main coroutine's exception escapes through the loop to the top level: healed, re-run, said."""
    write(tmp_path, ASYNC, '''
    async def main():
        print(await task("zed"))
    asyncio.run(main())
    ''')
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert (run.returncode, run.stdout) == (0, "None\n")
    lines = pyward_lines(run.stderr)
    assert any(line.startswith("[pyward][warning] healed TypeError") for line in lines), lines
    assert "1 healed" in lines[-1] and "1 guard firing" in lines[-1]


@pytest.mark.parametrize("how", ["ProcessPoolExecutor", "fork", "spawn"])
def test_a_process_pool_worker_s_crash_is_python_s(tmp_path, how):
    """The worker is another process: its frames are not here to patch, the caller gets python's exception."""
    if how == "ProcessPoolExecutor":
        pool, call = "concurrent.futures.ProcessPoolExecutor(1)", "p.submit(task, 'zed').result()"
    else:
        pool, call = f"multiprocessing.get_context({how!r}).Pool(1)", "p.apply(task, ('zed',))"
    write(tmp_path, TASK, f'''
    import concurrent.futures, multiprocessing
    if __name__ == "__main__":
        with {pool} as p:
            try:
                {call}
            except TypeError as e:
                print("caller caught", e)
            {call}
    ''')
    plain = python(tmp_path)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert (run.returncode, run.stdout) == (plain.returncode, plain.stdout) == (
        1, "caller caught 'NoneType' object is not subscriptable\n")
    lines = pyward_lines(run.stderr)
    assert any(line.startswith("[pyward][error] unhealed TypeError") and "another process" in line
               for line in lines), lines
    assert "0 healed" in lines[-1]
