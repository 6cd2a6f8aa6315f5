"""`corral`: run a file in Corral, list its runtimes, read or cancel a job.

`corral run` prints the program's stdout and stderr to its own as the program writes them (from
the job's event stream; with `--interactive` it sends the program its own stdin, line by line)
and exits with the program's exit code; when the program did not simply exit, one line on stderr says why and the exit code is one
of EXIT_CODES (shown by `corral --help`). With `--tests`, it prints one line per test and a
summary instead, and exits 0 only when every test passed. With `--out DIR`, the files the program
left (under out/, or those `--output` names) are written under DIR.
"""

from __future__ import annotations

import itertools
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import NoReturn, TextIO

import click
import msgspec

from corral_client.cases import BadTests, read_tests
from corral_client.client import DEFAULT_URL, POLL_S, Client
from corral_client.errors import (
    ApiError,
    CorralError,
    InvalidRequest,
    JobNotFound,
    NotSupported,
    ServerUnavailable,
    Unauthorized,
)
from corral_client.languages import language_of
from corral_client.models import Job, Limits, TestCase, TestResult

# Lines of our stdin go to an interactive job in pieces of at most this many characters, under
# the server's bytes per call (64 KiB by default) even when each is four bytes of UTF-8.
STDIN_PIECE = 16 * 1024

EXIT_FAILED = 120
EXIT_TESTS_FAILED = 1
EXIT_OUTPUT_LIMIT = 123
EXIT_TIME_LIMIT = 124
EXIT_MEMORY_LIMIT = 125
EXIT_REFUSED = 65
EXIT_UNAVAILABLE = 69
EXIT_UNAUTHORIZED = 77

_LIMIT_EXITS = {
    "time_limit_exceeded": (EXIT_TIME_LIMIT, "time limit exceeded"),
    "memory_limit_exceeded": (EXIT_MEMORY_LIMIT, "memory limit exceeded"),
    "output_limit_exceeded": (EXIT_OUTPUT_LIMIT, "output limit exceeded"),
}


def parse_duration_ms(text: str) -> int:
    """"2s", "1.5s", "500ms", "1m" or a bare number of seconds, in milliseconds."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", text)
    if not found:
        raise click.BadParameter(f"{text!r} is not a duration like 2s or 500ms")
    value, unit = float(found.group(1)), found.group(2) or "s"
    return max(1, round(value * {"ms": 1, "s": 1000, "m": 60_000}[unit]))


def parse_memory_mb(text: str) -> int:
    """"256M", "1G", "65536K" or a bare number of MiB, in MiB (rounded up)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG])?i?[bB]?\s*", text)
    if not found:
        raise click.BadParameter(f"{text!r} is not a size like 256M or 1G")
    value, unit = float(found.group(1)), (found.group(2) or "M").upper()
    mib = value * {"K": 1 / 1024, "M": 1, "G": 1024}[unit]
    return max(1, int(-(-mib // 1)))


class _Spinner:
    """The job's state on a terminal's stderr, redrawn while the job runs; nothing when piped."""

    FRAMES = "|/-\\"

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.state = "submitting"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._draw, daemon=True)

    def _draw(self) -> None:
        for frame in itertools.cycle(self.FRAMES):
            if self._stop.wait(0.1):
                break
            sys.stderr.write(f"\r{frame} {self.state}\033[K")
            sys.stderr.flush()
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()

    @contextmanager
    def running(self) -> Iterator[_Spinner]:
        if self.enabled:
            self._thread.start()
        try:
            yield self
        finally:
            if self.enabled:
                self._stop.set()
                self._thread.join()


def _fail(code: int, reason: str) -> NoReturn:
    click.echo(f"corral: {reason}", err=True)
    sys.exit(code)


def _exit_for(error: CorralError) -> NoReturn:
    if isinstance(error, Unauthorized):
        _fail(EXIT_UNAUTHORIZED, f"the server refused the key: {error}")
    if isinstance(error, InvalidRequest | JobNotFound):
        _fail(EXIT_REFUSED, f"the server refused the request: {error}")
    if isinstance(error, ServerUnavailable) or not isinstance(error, ApiError):
        _fail(EXIT_UNAVAILABLE, f"the server is unavailable: {error}")
    _fail(EXIT_FAILED, f"the server answered with an error: {error}")


def _follow(client: Client, job_id: str) -> tuple[Job, bool]:
    """The job once finished, its output printed as the program wrote it, and whether it was;
    a server without event streams (no such route) leaves the printing to the caller."""
    try:
        for event in client.stream(job_id):
            if event.kind in ("stdout", "stderr"):
                out = sys.stdout if event.kind == "stdout" else sys.stderr
                out.write(event.data)
                out.flush()
            elif event.kind == "result":
                return event.job(), True
    except (JobNotFound, NotSupported):
        pass
    return client.get(job_id), False


def _forward_stdin(client: Client, job_id: str) -> None:
    """Send our stdin to the job, line by line as it comes, then close its stdin."""

    def forward() -> None:
        try:
            for line in sys.stdin:
                for start in range(0, len(line), STDIN_PIECE):
                    client.send_stdin(job_id, line[start : start + STDIN_PIECE])
            client.send_stdin(job_id, "", eof=True)
        except CorralError:
            pass  # the job has finished, or stopped reading: nothing more goes to it

    threading.Thread(target=forward, name="corral stdin", daemon=True).start()


def exit_code_of(job: Job) -> tuple[int, str | None]:
    """The exit code `corral run` ends with for a finished job, and its one-line reason."""
    if job.error is not None:
        return EXIT_FAILED, f"job {job.job_id} failed: {job.error.code}: {job.error.message}"
    if job.status == "CANCELLED":
        return EXIT_FAILED, f"job {job.job_id} was cancelled"
    if job.result is None:
        return EXIT_FAILED, f"job {job.job_id} is still {job.status}"
    result = job.result
    if result.verdict in _LIMIT_EXITS:
        code, reason = _LIMIT_EXITS[result.verdict]
        return code, f"{reason} (cpu {result.cpu_time_ms} ms, wall {result.wall_time_ms} ms, memory {result.memory_kb} KB)"
    if result.signal is not None:
        return 128 + result.signal, f"the program was killed by signal {result.signal}"
    return result.exit_code or 0, None


def exit_code_of_tests(job: Job) -> tuple[int, str | None]:
    """The exit code `corral run --tests` ends with: 0 only when every test passed."""
    if job.error is not None or job.result is None:
        return exit_code_of(job)
    result = job.result
    if result.verdict == "compile_error":
        return EXIT_TESTS_FAILED, "the program did not compile; no test ran"
    summary = result.summary
    if summary is None:
        return EXIT_FAILED, "the server ran no tests: it may be older than test cases"
    if summary.passed == summary.total:
        return 0, None
    return EXIT_TESTS_FAILED, None


def lines_of_tests(tests: list[TestResult]) -> list[str]:
    """One line per test: its name, verdict, CPU time, memory and what its checker said."""
    width = max((len(test.name) for test in tests), default=0)
    lines = []
    for test in tests:
        line = f"{test.name:<{width}}  {test.verdict:<21}  {test.cpu_time_ms:>6} ms  {test.memory_kb:>8} KB"
        message = test.checker_message.strip().replace("\n", " ")
        lines.append(f"{line}  {message}" if message else line)
    return lines


def _print_tests(job: Job) -> None:
    if job.result is None:
        return
    if job.result.compile_output:
        sys.stderr.write(job.result.compile_output)
        sys.stderr.flush()
    for line in lines_of_tests(job.result.tests):
        click.echo(line)
    if (summary := job.result.summary) is not None:
        skipped = f", {summary.skipped} skipped" if summary.skipped else ""
        click.echo(f"{summary.passed}/{summary.total} passed ({summary.failed} failed{skipped}): {job.result.verdict}")


def path_under(directory: Path, name: str) -> Path:
    """Where a returned file goes: below `directory`, whatever name the server sent. The server
    never sends an absolute name or one with `..`; a client that wrote one anyway would let a
    compromised server write anywhere the user can."""
    parts = PurePosixPath(name).parts
    if (
        not parts
        or PurePosixPath(name).is_absolute()
        or any(part in ("", ".", "..") or "\\" in part or "\0" in part for part in parts)
        or name != "/".join(parts)
    ):
        raise ValueError(f"refusing to write a returned file named {name!r}: not a plain relative name")
    return directory.joinpath(*parts)


def _finished(client: Client, job_id: str, spinner: _Spinner, *, live: bool) -> tuple[Job, bool]:
    """The job once finished, and whether its output was printed as it came (`live`)."""
    job, printed = client.get(job_id), False
    if live and not job.finished:
        job, printed = _follow(client, job_id)
    while not job.finished:
        spinner.state = f"{job.status.lower()} {job.job_id}"
        job = client.get(job.job_id, wait_s=POLL_S)
    return job, printed


def _tests_asked(tests_path: Path | None, stop_on_first_failure: bool) -> list[TestCase]:
    if tests_path is None:
        if stop_on_first_failure:
            raise click.UsageError("--stop-on-first-failure goes with --tests")
        return []
    try:
        return read_tests(tests_path)
    except BadTests as error:
        raise click.BadParameter(str(error), param_hint="--tests") from None


def _check_options(
    tests: list[TestCase], stdin_file: TextIO | None, out_dir: Path | None, outputs: tuple[str, ...], interactive: bool
) -> None:
    if outputs and out_dir is None:
        raise click.UsageError("--output goes with --out")
    if interactive and (stdin_file is not None or tests):
        raise click.UsageError("--interactive sends our own stdin: not with --stdin or --tests")


def _print_job(job: Job, *, as_json: bool, tests: bool, printed: bool) -> None:
    """The finished job as `corral run` shows it: JSON, one line per test, or the program's
    output (unless it was printed as it came)."""
    if as_json:
        click.echo(msgspec.json.encode(job).decode())
    elif tests:
        _print_tests(job)
    elif job.result is not None and not printed:
        sys.stdout.write(job.result.stdout)
        sys.stdout.flush()
        sys.stderr.write(job.result.stderr)
        sys.stderr.flush()


def _write_files(client: Client, job: Job, directory: Path) -> None:
    """Each returned file under `directory`, checked against its sha256; one line per file on
    stderr (stdout is the program's)."""
    if job.result is None:
        return
    for file in job.result.files:
        target = path_under(directory, file.name)
        content = client.download(job.job_id, file.name, sha256=file.sha256 or None)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        click.echo(f"corral: wrote {target} ({file.size} bytes, {file.media_type})", err=True)
    for left_out in job.result.files_left_out:
        click.echo(f"corral: left out {left_out.name}: {left_out.reason}", err=True)


EXIT_CODES = """\b
Exit codes of `corral run`:
  0-255  the program's exit code       124  time limit exceeded
  128+N  the program died of signal N  125  memory limit exceeded
  120    Corral failed to run the job  123  output limit exceeded
         (or it was cancelled)
  65     the server refused the request
  69     the server is unreachable or busy
  77     the key was refused
  2      wrong usage of corral itself
With --tests: 0 every test passed, 1 a test failed (or the program
did not compile), and 120, 65, 69, 77, 2 as above."""


# A job id is URL-safe base64, and one made before ids were drawn without a leading "-" (or by
# another server) may begin with one: an unknown option is then the id, not a usage error.
_AN_ID_MAY_BEGIN_WITH_A_DASH = {"ignore_unknown_options": True}


@click.group(epilog=EXIT_CODES)
@click.option("--server", envvar="CORRAL_URL", default=DEFAULT_URL, show_default=True, help="Corral's URL [CORRAL_URL].")
@click.option("--key", envvar="CORRAL_KEY", default=None, help="API key, sent as a bearer token [CORRAL_KEY].")
@click.pass_context
def main(context: click.Context, server: str, key: str | None) -> None:
    """Run code in Corral's sandboxes."""
    context.obj = Client(server, key=key)
    context.call_on_close(context.obj.close)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--lang", "language", help="Language (default: from the file's extension).")
@click.option("--stdin", "stdin_file", type=click.File("r"), help="File whose content is the program's stdin ('-': ours).")
@click.option("--arg", "args", multiple=True, help="An argument for the program (repeat for more).")
@click.option("--time", "cpu_time", help="CPU time limit, e.g. 2s or 500ms.")
@click.option("--wall", "wall_time", help="Wall-clock time limit, e.g. 10s.")
@click.option("--memory", help="Memory limit, e.g. 256M or 1G.")
@click.option("--json", "as_json", is_flag=True, help="Print the finished job as JSON instead of the program's output.")
@click.option(
    "--tests",
    "tests_path",
    type=click.Path(exists=True, path_type=Path),
    help="Test cases: a YAML (or .json) list of {name, stdin, args, expected_stdout, checker}, "
    "or a directory of N.in / N.out files. Prints each test's verdict.",
)
@click.option("--stop-on-first-failure", is_flag=True, help="With --tests: skip the tests after a failing one.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the files the program left under DIR (those under its out/ directory, or those --output names).",
)
@click.option("--output", "outputs", multiple=True, help="A glob pattern of files to send back, e.g. 'plot.png' (repeat for more).")
@click.option("--interactive", is_flag=True, help="Send the program our own stdin, line by line, while it runs.")
@click.pass_obj
def run(
    client: Client,
    file: Path,
    language: str | None,
    stdin_file: TextIO | None,
    args: tuple[str, ...],
    cpu_time: str | None,
    wall_time: str | None,
    memory: str | None,
    as_json: bool,
    tests_path: Path | None,
    stop_on_first_failure: bool,
    out_dir: Path | None,
    outputs: tuple[str, ...],
    interactive: bool,
) -> None:
    """Run FILE and exit with its exit code (`corral --help` lists the others); with --tests,
    run it once per test and exit 0 only if every test passed."""
    language = language or language_of(file)
    if language is None:
        raise click.UsageError(f"cannot tell the language of {file.name} from its extension: pass --lang")
    limits = Limits(
        cpu_time_ms=parse_duration_ms(cpu_time) if cpu_time else None,
        wall_time_ms=parse_duration_ms(wall_time) if wall_time else None,
        memory_mb=parse_memory_mb(memory) if memory else None,
    )
    tests = _tests_asked(tests_path, stop_on_first_failure)
    _check_options(tests, stdin_file, out_dir, outputs, interactive)
    stdin = stdin_file.read() if stdin_file else ""
    # The output as it comes, unless the whole job is printed at the end.
    live = not as_json and not tests
    spinner = _Spinner(enabled=sys.stderr.isatty() and not as_json and not live)
    try:
        with spinner.running():
            accepted = client.submit(
                file.read_text(),
                language,
                stdin=stdin,
                args=args,
                limits=limits,
                tests=tests,
                stop_on_first_failure=stop_on_first_failure,
                outputs=list(outputs) or out_dir is not None,
                stdin_mode="interactive" if interactive else "closed",
            )
            if interactive:
                _forward_stdin(client, accepted.job_id)
            job, printed = _finished(client, accepted.job_id, spinner, live=live)
        if out_dir is not None:
            _write_files(client, job, out_dir)
    except CorralError as error:
        _exit_for(error)
    except (ValueError, OSError) as error:
        _fail(EXIT_FAILED, str(error))
    code, reason = exit_code_of_tests(job) if tests else exit_code_of(job)
    _print_job(job, as_json=as_json, tests=bool(tests), printed=printed)
    if reason:
        click.echo(f"corral: {reason}", err=True)
    sys.exit(code)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def runtimes(client: Client, as_json: bool) -> None:
    """The languages the server's live workers run."""
    try:
        found = client.runtimes()
    except CorralError as error:
        _exit_for(error)
    if as_json:
        click.echo(msgspec.json.encode(found).decode())
        return
    for runtime in found:
        click.echo(f"{runtime.language}\t{runtime.version}\t{runtime.workers} worker(s)")


@main.command(context_settings=_AN_ID_MAY_BEGIN_WITH_A_DASH)
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Wait until the job finishes.")
@click.pass_obj
def job(client: Client, job_id: str, wait: bool) -> None:
    """Print a job as JSON."""
    try:
        found = client.wait(job_id) if wait else client.get(job_id)
    except CorralError as error:
        _exit_for(error)
    click.echo(msgspec.json.encode(found).decode())


@main.command(context_settings=_AN_ID_MAY_BEGIN_WITH_A_DASH)
@click.argument("job_id")
@click.pass_obj
def cancel(client: Client, job_id: str) -> None:
    """Cancel a pending or running job and print it (now CANCELLED) as JSON.

    A job that already finished is left as it is: exit code 65, like any refused request.
    """
    try:
        cancelled = client.cancel(job_id)
    except CorralError as error:
        _exit_for(error)
    click.echo(msgspec.json.encode(cancelled).decode())


if __name__ == "__main__":
    main()
