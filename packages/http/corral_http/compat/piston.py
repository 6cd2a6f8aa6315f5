"""A Piston v2-compatible API, mounted at /api/v2: a Piston client's base URL is this server's.

`POST /api/v2/execute` submits a Corral job through the same use case as /execute and waits for
it (Piston answers synchronously), up to the server's longest wait. Requests are checked the way
Piston checks them, with its messages; every error answer is {"message": ...}.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, HttpMethod, Request, Response, Router, delete, get, post, route
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_204_NO_CONTENT,
    HTTP_405_METHOD_NOT_ALLOWED,
    HTTP_409_CONFLICT,
    HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_504_GATEWAY_TIMEOUT,
)
from litestar.types import ExceptionHandlersMap

from corral_core.access import Caller
from corral_core.job import ErrorCode, Job, JobStatus, RunResult, Verdict
from corral_core.policy import InvalidSubmission
from corral_core.submission import JobRequest, SubmitJob
from corral_http.auth import caller_of
from corral_http.compat.errors import shared_handlers
from corral_http.compat.languages import OfferedLanguage, offered
from corral_http.compat.piston_request import PistonError, bad_request, to_request
from corral_http.dependencies import Jobs

# Piston's numbers for signals, by name.
SIGNALS = {
    1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
    8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
    14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP",
    20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ",
    26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
}  # fmt: skip


class RuntimeOut(msgspec.Struct, frozen=True, omit_defaults=True):
    language: str
    version: str
    aliases: list[str]
    runtime: str | None = None


class PackageOut(msgspec.Struct, frozen=True):
    language: str
    language_version: str
    installed: bool


class StageOut(msgspec.Struct, frozen=True):
    """One stage's outcome: the fields Piston's isolate runner reports."""

    stdout: str
    stderr: str
    output: str
    code: int | None
    signal: str | None
    message: str | None
    status: str | None
    memory: int | None
    cpu_time: int | None
    wall_time: int | None


class ExecuteOut(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Piston's answer, its keys in Piston's order; `compile` only for a runtime Piston
    compiles in a stage of its own."""

    compile: StageOut | None = None
    run: StageOut
    language: str
    version: str


# ---- answering ------------------------------------------------------------------------------


def stage_of(result: RunResult) -> StageOut:
    """The run stage as Piston reports it: isolate's status letters and messages."""
    code: int | None = result.exit_code
    signal = SIGNALS.get(result.signal) if result.signal is not None else None
    status: str | None = None
    message: str | None = None
    match result.verdict:
        case Verdict.TIME_LIMIT_EXCEEDED:
            code, signal, status, message = None, "SIGKILL", "TO", "Time limit exceeded"
        case Verdict.MEMORY_LIMIT_EXCEEDED:
            # Piston's cgroup kills the program: a signal, with the reason said plainly.
            code, signal, status, message = None, "SIGKILL", "SG", "Memory limit exceeded"
        case Verdict.OUTPUT_LIMIT_EXCEEDED:
            which = "stdout" if result.stdout_truncated or not result.stderr_truncated else "stderr"
            status = "OL" if which == "stdout" else "EL"
            code, signal, message = None, "SIGKILL", f"{which} length exceeded"
        case Verdict.RUNTIME_ERROR if result.signal is not None:
            code, status, message = None, "SG", f"Caught fatal signal {result.signal}"
        case Verdict.RUNTIME_ERROR:
            status, message = "RE", f"Exited with error status {result.exit_code}"
        # A job with test cases (Corral's own API; Piston's carry none). Piston judges nothing:
        # a wrong answer is a run that ended well, said plainly; a failed checker program is an
        # internal error, isolate's XX.
        case Verdict.WRONG_ANSWER:
            message = "Wrong answer"
        case Verdict.CHECKER_ERROR:
            status, message = "XX", "Checker error: a test's checker program failed"
    return StageOut(
        stdout=result.stdout,
        stderr=result.stderr,
        # Corral keeps the two streams apart, so their interleaving is lost: stdout comes first.
        output=result.stdout + result.stderr,
        code=code,
        signal=signal,
        message=message,
        status=status,
        # Piston reads isolate's kilobytes and counts 1000 bytes to one.
        memory=result.memory_kb * 1000,
        cpu_time=result.cpu_time_ms,
        wall_time=result.wall_time_ms,
    )


def answer(job: Job, chosen: OfferedLanguage, language: str, version: str) -> ExecuteOut:
    if job.status is JobStatus.CANCELLED:
        # Piston cannot cancel; another client called this job off through Corral's own API.
        raise PistonError(HTTP_409_CONFLICT, f"job {job.id} was cancelled (DELETE /jobs/{job.id}) before it finished")
    if job.error is not None:
        if job.error.code is ErrorCode.UNSUPPORTED_LANGUAGE:
            raise bad_request(f"{language}-{version} runtime is unknown")
        raise PistonError(HTTP_500_INTERNAL_SERVER_ERROR, job.error.message)
    if job.result is None:
        raise PistonError(
            HTTP_504_GATEWAY_TIMEOUT,
            f"job {job.id} did not finish within the server's longest wait; read it at /jobs/{job.id}",
        )
    result = job.result
    compiled = compile_stage(result) if chosen.compiled else None
    if compiled is not None and result.verdict is Verdict.COMPILE_ERROR:
        # Nothing ran: Piston answers the compile stage as the run stage too.
        run = compiled
    else:
        run = stage_of(result)
    if chosen.row is not None and not chosen.row.piston_compile_stage:
        # Piston runs this language in one stage (java's source-file mode, go run): what the
        # compiler said is the run's.
        compiled = None
    return ExecuteOut(compile=compiled, run=run, language=chosen.runtime.language, version=chosen.runtime.version)


def compile_stage(result: RunResult) -> StageOut:
    """The compile stage as Piston reports it: the compiler's output, and how it ended."""
    ended = result.compile
    if ended is None:  # compiled before the compile stage was recorded apart
        return StageOut("", "", "", 0, None, None, None, None, None, None)
    as_run = RunResult(
        verdict=ended.verdict,
        exit_code=ended.exit_code,
        signal=ended.signal,
        # Corral keeps the compiler's stdout and stderr together, as its diagnostics.
        stderr=result.compile_output,
        stderr_truncated=result.compile_output_truncated,
        cpu_time_ms=ended.cpu_time_ms,
        wall_time_ms=ended.wall_time_ms,
        memory_kb=ended.memory_kb,
    )
    return stage_of(as_run)


# ---- the routes -----------------------------------------------------------------------------


class PistonController(Controller):
    tags = ["piston"]

    @get("/runtimes", summary="Runtimes the workers offer (Piston)")
    async def runtimes(self, jobs: Jobs) -> list[RuntimeOut]:
        return [
            RuntimeOut(
                language=lang.runtime.language,
                version=lang.runtime.version,
                aliases=list(lang.row.piston_aliases if lang.row else ()),
            )
            for lang in offered(await jobs.runtimes.offered())
        ]

    # Litestar's own OPTIONS answer lists a path's first handler's methods only (see
    # corral_http.controllers.JobsController): this says all, and its name sorts first.
    @route("/packages", http_method=HttpMethod.OPTIONS, status_code=HTTP_204_NO_CONTENT, include_in_schema=False)
    async def allowed_package_methods(self) -> Response[None]:
        return Response(None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": "DELETE, GET, OPTIONS, POST"})

    @get("/packages", summary="Installed packages (Piston; read-only)")
    async def packages(self, jobs: Jobs) -> list[PackageOut]:
        return [
            PackageOut(lang.runtime.language, lang.runtime.version, True)
            for lang in offered(await jobs.runtimes.offered())
        ]

    @post("/packages", status_code=HTTP_200_OK, summary="Install a package (Piston): not here")
    async def install(self, request: Request[Any, Any, Any]) -> None:
        _json_only(request)
        raise _read_only()

    @delete("/packages", status_code=HTTP_200_OK, summary="Uninstall a package (Piston): not here")
    async def uninstall(self, request: Request[Any, Any, Any]) -> None:
        _json_only(request)
        raise _read_only()

    @post("/execute", status_code=HTTP_200_OK, summary="Run code and wait for it (Piston)")
    async def execute(
        self,
        request: Request[Any, Any, Any],
        jobs: Jobs,
    ) -> ExecuteOut:
        _json_only(request)
        try:
            body = msgspec.json.decode(await request.body())
        # msgspec raises UnicodeDecodeError for invalid UTF-8 in a string, RecursionError for
        # deep nesting: the client's fault as much as any other malformed JSON.
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
            raise bad_request(f"malformed JSON: {error}") from None
        options, caller = jobs.options, caller_of(request)
        job_request, chosen = to_request(body, offered(await jobs.runtimes.offered()), options.limits.maxima)
        with jobs.long_polls.hold(caller):
            job = await _submit(jobs.submit, caller, job_request)
            job = await jobs.get(caller, job.id, wait_s=options.max_wait_s)
        return answer(job, chosen, body["language"], body["version"])


async def _submit(submit_job: SubmitJob, caller: Caller, request: JobRequest) -> Job:
    try:
        return (await submit_job(caller, request)).job
    except InvalidSubmission as error:
        raise bad_request(str(error)) from None


def _json_only(request: Request[Any, Any, Any]) -> None:
    """Piston refuses any request but GET, HEAD and OPTIONS that is not JSON, before all else."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise PistonError(HTTP_415_UNSUPPORTED_MEDIA_TYPE, "requests must be of type application/json")


def _read_only() -> PistonError:
    return PistonError(
        HTTP_405_METHOD_NOT_ALLOWED,
        "packages are read-only here: the runtimes are those Corral's workers offer",
    )


def exception_handlers(retry_after_s: int) -> ExceptionHandlersMap:
    def piston_error(_: Request[Any, Any, Any], error: PistonError) -> Response[dict[str, str]]:
        headers = {"Allow": "GET"} if error.status_code == HTTP_405_METHOD_NOT_ALLOWED else None
        return Response({"message": error.message}, status_code=error.status_code, headers=headers)

    return {**shared_handlers(lambda message: {"message": message}, retry_after_s), PistonError: piston_error}


def router(retry_after_s: int) -> Router:
    """The Piston API, for the app to mount."""
    # Imported here: the WebSocket's module reads this one's answers.
    from corral_http.compat.piston_connect import connect

    return Router(
        path="/api/v2", route_handlers=[PistonController, connect], exception_handlers=exception_handlers(retry_after_s)
    )
