"""Ordinary Python programs in real jails: what a well-behaved job may count on."""

from __future__ import annotations

import textwrap

import msgspec
import pytest

from corral_core.job import InputFile, RunRequest, RunResult, Verdict
from corral_core.policy import DEFAULT_LIMIT_POLICY
from corral_sandbox import NsJailSandbox
from corral_testbed.nsjail_host import assert_host_unharmed, nsjail_host
from corral_testbed.time_scale import scaled

LIMITS = msgspec.structs.replace(
    DEFAULT_LIMIT_POLICY.defaults, cpu_time_ms=scaled(5_000), wall_time_ms=scaled(10_000), memory_mb=256
)


@pytest.fixture
def sandbox() -> NsJailSandbox:
    return NsJailSandbox(host=nsjail_host())


async def run(sandbox: NsJailSandbox, code: str, **fields: object) -> RunResult:
    limits = msgspec.structs.replace(LIMITS, **fields.pop("limits", {}))  # type: ignore[arg-type]
    request = RunRequest(language="python", code=textwrap.dedent(code), limits=limits, **fields)  # type: ignore[arg-type]
    result = await sandbox.run(request)
    assert_host_unharmed(nsjail_host())
    return result


async def test_stdin_is_read_line_by_line(sandbox: NsJailSandbox) -> None:
    code = """
        total = 0
        while True:
            try:
                line = input()
            except EOFError:
                break
            total += int(line)
        print(total)
    """
    result = await run(sandbox, code, stdin="1\n2\n3\n")
    assert (result.verdict, result.stdout) == (Verdict.OK, "6\n")


async def test_args_follow_the_script(sandbox: NsJailSandbox) -> None:
    result = await run(sandbox, "import sys\nprint(sys.argv)", args=("--flag", "two words", "é"))
    assert result.stdout == "['main.py', '--flag', 'two words', 'é']\n"


async def test_an_uncaught_exception_shows_its_traceback(sandbox: NsJailSandbox) -> None:
    result = await run(sandbox, "def f():\n    raise KeyError('missing')\nf()")
    assert result.verdict is Verdict.RUNTIME_ERROR and result.exit_code == 1
    assert 'File "/box/main.py", line 2, in f' in result.stderr
    assert "KeyError: 'missing'" in result.stderr


async def test_exit_and_sys_exit_with_a_message_work(sandbox: NsJailSandbox) -> None:
    assert (await run(sandbox, "print('a')\nexit()")).verdict is Verdict.OK
    result = await run(sandbox, "import sys\nsys.exit('bad input')")
    assert (result.verdict, result.exit_code, result.stderr) == (Verdict.RUNTIME_ERROR, 1, "bad input\n")


async def test_unicode_in_and_out(sandbox: NsJailSandbox) -> None:
    code = "import sys, locale\nprint(input()[::-1], sys.stdout.encoding, locale.getpreferredencoding())"
    result = await run(sandbox, code, stdin="żółw 🐢\n")
    assert result.stdout == "🐢 włóż utf-8 UTF-8\n"


async def test_stdlib_modules_import_and_work(sandbox: NsJailSandbox) -> None:
    code = """
        import asyncio, decimal, fractions, hashlib, json, re, sqlite3, statistics, zlib
        db = sqlite3.connect(":memory:")
        db.execute("create table t (x)")
        db.executemany("insert into t values (?)", [(1,), (2,), (3,)])
        async def double(x):
            await asyncio.sleep(0)
            return 2 * x
        print(json.dumps({
            "sql": db.execute("select sum(x) from t").fetchone()[0],
            "decimal": str(decimal.Decimal("0.1") + decimal.Decimal("0.2")),
            "async": asyncio.run(double(21)),
            "sha": hashlib.sha256(b"x").hexdigest()[:8],
            "zlib": len(zlib.compress(b"a" * 1000)) < 100,
            "re": re.findall(r"\\d+", "a1b22"),
            "mean": statistics.mean([1, 2, 3]),
            "fraction": str(fractions.Fraction(1, 3) * 3),
        }, sort_keys=True))
    """
    result = await run(sandbox, code)
    assert result.verdict is Verdict.OK, result.stderr
    assert result.stdout == (
        '{"async": 42, "decimal": "0.3", "fraction": "1", "mean": 2, "re": ["1", "22"], '
        '"sha": "2d711642", "sql": 6, "zlib": true}\n'
    )


async def test_threads_run_and_join(sandbox: NsJailSandbox) -> None:
    code = """
        import threading
        results = [0] * 4
        def work(i):
            results[i] = sum(range(i * 1000))
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(results)
    """
    result = await run(sandbox, code)
    assert result.stdout == "[0, 499500, 1999000, 4498500]\n"


async def test_python_may_run_python_as_a_subprocess(sandbox: NsJailSandbox) -> None:
    code = """
        import subprocess, sys
        done = subprocess.run([sys.executable, "-c", "print(input() * 2)"], input="ab",
                              capture_output=True, text=True, check=True)
        print(done.stdout, end="")
    """
    result = await run(sandbox, code)
    assert (result.verdict, result.stdout) == (Verdict.OK, "abab\n"), result.stderr


async def test_a_multiprocessing_pool_works(sandbox: NsJailSandbox) -> None:
    code = """
        import multiprocessing
        def square(x):
            return x * x
        if __name__ == "__main__":
            with multiprocessing.Pool(2) as pool:
                print(pool.map(square, range(6)))
            queue = multiprocessing.Queue()
            worker = multiprocessing.Process(target=queue.put, args=("from a child",))
            worker.start()
            print(queue.get())
            worker.join()
    """
    result = await run(sandbox, code)
    assert result.verdict is Verdict.OK, result.stderr
    assert result.stdout == "[0, 1, 4, 9, 16, 25]\nfrom a child\n"


async def test_input_files_can_be_imported_and_scratch_files_written(sandbox: NsJailSandbox) -> None:
    code = """
        import tempfile, helper
        with tempfile.NamedTemporaryFile("w+", suffix=".txt") as f:
            f.write(helper.greeting())
            f.seek(0)
            print(f.read(), f.name.startswith("/tmp/"))
        open("out.txt", "w").write("kept in the box")
        print(open("out.txt").read())
    """
    files = (InputFile("helper.py", b"def greeting():\n    return 'hi from helper'\n"),)
    result = await run(sandbox, code, files=files)
    assert result.stdout == "hi from helper True\nkept in the box\n", result.stderr


async def test_output_exactly_at_the_cap_is_not_truncated(sandbox: NsJailSandbox) -> None:
    result = await run(sandbox, "import sys\nsys.stdout.write('z' * 1000)", limits={"max_output_bytes": 1000})
    assert result.verdict is Verdict.OK
    assert result.stdout == "z" * 1000 and not result.stdout_truncated


async def test_an_empty_program_runs(sandbox: NsJailSandbox) -> None:
    result = await run(sandbox, "")
    assert (result.verdict, result.exit_code, result.stdout, result.stderr) == (Verdict.OK, 0, "", "")


async def test_resources_used_are_reported(sandbox: NsJailSandbox) -> None:
    code = "x = bytearray(40 << 20)\nsum(range(3_000_000))"
    result = await run(sandbox, code)
    assert result.verdict is Verdict.OK
    assert result.memory_kb >= 40 * 1024
    assert result.cpu_time_ms >= 20
    assert result.wall_time_ms >= result.cpu_time_ms // 2
