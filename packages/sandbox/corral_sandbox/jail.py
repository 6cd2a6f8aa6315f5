"""One job in one fresh jail: set it up, supervise NsJail, judge the run, clean up.

The set-up (scratch tmpfs with the job's files, run cgroups, stdin and log memfds) and the
reading of the result are a few quick system calls on the caller's event loop; supervision never
blocks it (jail_process.py); the clean-up, which may wait for a cgroup's tasks to exit, runs in a
thread.

NsJail's own log goes to a memfd of ours, passed as its --log_fd: the job can neither reach it
nor, by filling its tmpfs, keep NsJail from writing how the program ended.

When the sandbox fails (a SandboxError), the client is told a short, stable message; what
happened in detail (host paths, NsJail's own error lines) goes to this module's log only.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec

from corral_core.events import EventKind
from corral_core.job import CompileResult, Limits, RunRequest, RunResult, SandboxStart, Verdict
from corral_core.ports import SandboxError
from corral_core.structs import copied
from corral_sandbox import nsjail_log, runname
from corral_sandbox.cgroups.hierarchy import CgroupError, HostCgroups, RunCgroups
from corral_sandbox.cgroups.v1 import V1RunCgroups
from corral_sandbox.cgroups.v2 import V2RunCgroups
from corral_sandbox.command import LOG_FD, JailPaths, nsjail_command
from corral_sandbox.jail_process import Outcome, Watch, supervise, through_cancellation
from corral_sandbox.jailids import JailIds
from corral_sandbox.outputs import Bounds, collect
from corral_sandbox.policy_files import RuntimeSpec
from corral_sandbox.scratch import Scratch, ScratchError
from corral_sandbox.streams import feed_pipe, log_memfd, read_memfd, stdin_memfd, stdin_pipe
from corral_sandbox.verdict import RunFacts, decide, nsjail_failure

log = logging.getLogger(__name__)


class JailHost(msgspec.Struct, frozen=True, kw_only=True):
    """What running a jail needs to know about the prepared host (see HostReport.jail_host)."""

    nsjail_bin: str
    policy_dir: str
    # The runtimes' warm hooks, bound into their jails from here (HostReport.hook_dir).
    hook_dir: str
    work_root: str
    scratch_inodes: int
    output_grace_ms: int
    kill_grace_ms: int
    cgroups: HostCgroups
    cpu_count: int
    cpu_cores_per_job: float


def run_cgroups(host: HostCgroups, run: str, memory_bytes: int, cpu_cores: float) -> RunCgroups:
    """Create the cgroups of one run, of the host's cgroup version."""
    if host.version == 1:
        return V1RunCgroups(host, run, memory_bytes, cpu_cores)
    return V2RunCgroups(host, run, memory_bytes, cpu_cores)


def jail_command(
    host: JailHost,
    runtime: RuntimeSpec,
    ids: JailIds,
    scratch: Scratch,
    cgroups: RunCgroups,
    limits: Limits,
    args: tuple[str, ...],
    stage: str = "run",
    warm: bool = False,
) -> list[str]:
    """The NsJail command line for one job whose scratch space and cgroups are ready."""
    return nsjail_command(
        binary=host.nsjail_bin,
        policy=Path(host.policy_dir),
        hook_dir=Path(host.hook_dir),
        runtime=runtime,
        paths=JailPaths(scratch.box, scratch.tmp, scratch.shm),
        limits=limits,
        jail_uid=ids.uid,
        jail_gid=ids.gid,
        cgroup_flags=cgroups.nsjail_flags(limits.max_processes),
        args=args,
        stage=stage,
        warm=warm,
    )


class Compiled(msgspec.Struct, frozen=True, kw_only=True):
    """A compiled runtime's compile stage: how it ended, what the compiler said (stdout then
    stderr), and the program it left, None when it left none (a compile error: nothing runs)."""

    stage: CompileResult
    output: str
    truncated: bool
    artifact: bytes | None


async def compile_program(
    host: JailHost,
    runtime: RuntimeSpec,
    ids: JailIds,
    files: list[tuple[str, bytes]],
    limits: Limits,
    compiler_args: tuple[str, ...] = (),
) -> Compiled:
    """The compile stage of a compiled runtime's job, in a jail of its own with the source and
    input files and the job's compile limits. Its program then runs in a fresh jail
    (run_program) with only the artifact and the input files: nothing else the compiler (or the
    code it compiled at build time) left is visible to the program."""
    ended, artifact = await _in_jail(
        host, runtime, ids, files, _compile_limits(runtime, limits), "", compiler_args, stage="compile", keep=runtime.artifact
    )
    stage = copied(CompileResult, ended, cached=False)
    output = ended.stdout + ended.stderr
    truncated = ended.stdout_truncated or ended.stderr_truncated
    if ended.verdict is Verdict.OK and artifact is not None:
        return Compiled(stage=stage, output=output, truncated=truncated, artifact=artifact)
    if ended.verdict is Verdict.OK:  # it said it succeeded and left nothing usable
        stage = msgspec.structs.replace(stage, verdict=Verdict.RUNTIME_ERROR)
        output += f"\ncorral: the compiler left no {runtime.artifact} (at most {_ARTIFACT_MAX_BYTES >> 20} MiB)"
    elif ended.verdict is not Verdict.RUNTIME_ERROR:
        output += f"\ncorral: compilation stopped: {_STAGE_LIMIT[ended.verdict]}"
    return Compiled(stage=stage, output=output, truncated=truncated, artifact=None)


def compile_error(compiled: Compiled, limits: Limits) -> RunResult:
    """The result of a job whose compile stage left no program."""
    output = compiled.output
    return RunResult(
        verdict=Verdict.COMPILE_ERROR,
        compile_output=output[: limits.max_output_bytes],
        compile_output_truncated=compiled.truncated or len(output) > limits.max_output_bytes,
        compile=compiled.stage,
    )


class Program(msgspec.Struct, frozen=True):
    """What a job's runs start from: its runtime, its files (the source first, then the input
    files) and, for a compiled runtime, its compile."""

    runtime: RuntimeSpec
    files: list[tuple[str, bytes]]
    compiled: Compiled | None = None


async def run_program(
    host: JailHost,
    ids: JailIds,
    program: Program,
    request: RunRequest,
    *,
    on_output: Callable[[EventKind, bytes], None] | None = None,
    stdin_source: AsyncIterator[bytes] | None = None,
) -> RunResult:
    """The program run in a fresh jail with the request's limits, stdin and args: the source
    (`files[0]`) and the input files, or for a compiled runtime the artifact in place of the
    source, with the compile stage reported; then the files matching the request's `outputs`
    read back from its working directory (outputs.collect).

    `on_output` is told the program's output as it comes; `stdin_source`, if given, is its
    stdin (a pipe fed while it runs) in place of the request's."""
    streams = _Streams(on_output, stdin_source)
    runtime, files, compiled = program.runtime, program.files, program.compiled
    limits, stdin, args, outputs = request.limits, request.stdin, request.args, request.outputs
    if compiled is None or compiled.artifact is None:
        result, _ = await _in_jail(host, runtime, ids, files, limits, stdin, args, outputs=outputs, streams=streams)
        return result
    run_files = [(runtime.artifact, compiled.artifact), *files[1:]]
    result, _ = await _in_jail(
        host, runtime, ids, run_files, limits, stdin, args, executable=True, outputs=outputs, streams=streams
    )
    return with_compile_stage(result, compiled)


class _Streams(msgspec.Struct, frozen=True):
    """Who hears a run's output as it comes, and where its stdin comes from while it runs."""

    on_output: Callable[[EventKind, bytes], None] | None = None
    stdin_source: AsyncIterator[bytes] | None = None


_NO_STREAMS = _Streams()


def with_compile_stage(result: RunResult, compiled: Compiled) -> RunResult:
    return msgspec.structs.replace(
        result, compile_output=compiled.output, compile_output_truncated=compiled.truncated, compile=compiled.stage
    )


# An artifact larger than this is refused (a compile that made one is a compile error).
_ARTIFACT_MAX_BYTES = 256 << 20
_STAGE_LIMIT = {
    Verdict.TIME_LIMIT_EXCEEDED: "compile time limit exceeded (compile_cpu_time_ms / compile_wall_time_ms)",
    Verdict.MEMORY_LIMIT_EXCEEDED: "compile memory limit exceeded (compile_memory_mb)",
    Verdict.OUTPUT_LIMIT_EXCEEDED: "the compiler's output reached max_output_bytes",
}


def _compile_limits(runtime: RuntimeSpec, limits: Limits) -> Limits:
    """The compile stage's limits: the job's compile_* ones, the runtime's processes and file size."""
    return msgspec.structs.replace(
        limits,
        cpu_time_ms=limits.compile_cpu_time_ms,
        wall_time_ms=limits.compile_wall_time_ms,
        memory_mb=limits.compile_memory_mb,
        max_processes=max(limits.max_processes, runtime.compile_max_processes),
        max_file_size_kb=max(limits.max_file_size_kb, runtime.compile_max_file_size_mb * 1024),
    )


async def _in_jail(
    host: JailHost,
    runtime: RuntimeSpec,
    ids: JailIds,
    files: list[tuple[str, bytes]],
    limits: Limits,
    stdin: str,
    args: tuple[str, ...],
    *,
    stage: str = "run",
    keep: str = "",
    executable: bool = False,
    outputs: tuple[str, ...] = (),
    streams: _Streams = _NO_STREAMS,
) -> tuple[RunResult, bytes | None]:
    """One jail: its files written, the program run to its end, judged; then the file `keep`
    (None if there is no such regular file) and the files matching `outputs` read back, once
    every process of the jail has ended (its PID namespace went with NsJail's child)."""
    run = runname.new_run()
    memory_bytes = limits.memory_mb << 20
    scratch: Scratch | None = None
    cgroups: RunCgroups | None = None
    stdin_fd = log_fd = stdin_write = -1
    feeding: asyncio.Task[None] | None = None
    try:
        try:
            scratch = _scratch_with(host, run, ids, files, memory_bytes, executable=executable, compiling=stage == "compile")
            cgroups = run_cgroups(host.cgroups, run, memory_bytes, host.cpu_cores_per_job)
            stdin_fd, stdin_write = stdin_pipe() if streams.stdin_source is not None else (stdin_memfd(stdin), -1)
            log_fd = log_memfd()
            argv = jail_command(host, runtime, ids, scratch, cgroups, limits, args, stage)
        except (OSError, ScratchError, CgroupError) as error:
            log.error("run %s: could not set up the jail: %s", run, error)
            raise SandboxError("could not set up the sandbox") from error
        if streams.stdin_source is not None:
            # Fed before NsJail starts: what the client sent already waits in the pipe.
            feeding = asyncio.create_task(feed_pipe(stdin_write, streams.stdin_source))
            feeding.add_done_callback(_fed)
            stdin_write = -1  # the feeding owns it now
        try:
            outcome = await supervise(
                argv, stdin_fd, cgroups, watch_of(host, limits, streams.on_output), extra_fds={LOG_FD: log_fd}
            )
        except OSError as error:
            log.error("run %s: could not start NsJail (%s): %s", run, host.nsjail_bin, error)
            raise SandboxError("could not start the sandbox") from error
        result = judge(run, limits, outcome, cgroups, read_memfd(log_fd))
        kept = await asyncio.to_thread(scratch.read_back, keep, _ARTIFACT_MAX_BYTES) if keep else None
        return (await _with_outputs(result, scratch, outputs, limits) if outputs else result), kept
    finally:
        if feeding is not None:
            # The program has ended (or never started): nobody reads what is still to come. The
            # feeding closes its end of the pipe as it stops, a moment later.
            feeding.cancel()
        for fd in (stdin_fd, log_fd, stdin_write):
            if fd >= 0:
                os.close(fd)
        if scratch is not None or cgroups is not None:
            await through_cancellation(asyncio.to_thread(clean_up, scratch, cgroups))


def _scratch_with(
    host: JailHost,
    run: str,
    ids: JailIds,
    files: list[tuple[str, bytes]],
    memory_bytes: int,
    *,
    executable: bool,
    compiling: bool,
) -> Scratch:
    """The run's scratch tmpfs with the job's files in it, sealed: from here on it is the job's.
    Programs may run from it when the first file is one (`executable`) or a compiler writes one."""
    size, inodes = scratch_size(host, files, memory_bytes)
    mount_executable = executable or compiling
    scratch = Scratch.create(host.work_root, runname.scratch_name(run), size, inodes, ids.uid, ids.gid, executable=mount_executable)
    for index, (file_name, data) in enumerate(files):
        # The first file is the source, or a compiled program's artifact: runnable.
        scratch.write(file_name, data, 0o755 if executable and index == 0 else 0o644)
    scratch.seal()
    return scratch


async def _with_outputs(result: RunResult, scratch: Scratch, outputs: tuple[str, ...], limits: Limits) -> RunResult:
    collected = await asyncio.to_thread(collect, scratch.box, outputs, returned_bounds(limits))
    return msgspec.structs.replace(result, files=tuple(collected.files), files_left_out=tuple(collected.left_out))


def _fed(feeding: asyncio.Task[None]) -> None:
    if not feeding.cancelled() and (error := feeding.exception()) is not None:
        log.error("an interactive job's stdin could not be fed: %r", error)


def returned_bounds(limits: Limits) -> Bounds:
    """How much of what a job leaves comes back: its own limits."""
    return Bounds(
        files=limits.max_returned_files, file_bytes=limits.max_file_size_kb * 1024, total_bytes=limits.max_returned_files_kb * 1024
    )


def scratch_size(host: JailHost, files: list[tuple[str, bytes]], memory_bytes: int) -> tuple[int, int]:
    """Bytes and inodes of a job's tmpfs.

    The job's files count once; its own writes get half its memory (tmpfs pages are charged to
    its memory cgroup anyway, so ENOSPC comes before the OOM killer).
    """
    return sum(len(data) for _, data in files) + memory_bytes // 2 + (1 << 20), host.scratch_inodes + len(files) + 8


def watch_of(host: JailHost, limits: Limits, on_output: Callable[[EventKind, bytes], None] | None = None) -> Watch:
    return Watch(
        wall_time_s=limits.wall_time_ms / 1000,
        cpu_time_ns=limits.cpu_time_ms * 1_000_000,
        cpu_count=host.cpu_count,
        output_cap=limits.max_output_bytes,
        output_grace_s=host.output_grace_ms / 1000,
        kill_grace_s=host.kill_grace_ms / 1000,
        on_output=on_output,
    )


def judge(
    run: str,
    limits: Limits,
    outcome: Outcome,
    cgroups: RunCgroups,
    log_text: str,
    *,
    cpu_before_ns: int = 0,
    start: SandboxStart = SandboxStart.COLD,
    jail_log: nsjail_log.JailLog | None = None,
) -> RunResult:
    """The result of a run NsJail ended; `cpu_before_ns`: the CPU time the run's cgroups had
    used before the program was handed its job (a warm jail's start), not counted."""
    try:
        cpu_ns = cgroups.cpu_ns() - cpu_before_ns
        peak = cgroups.peak_bytes()
        out_of_memory = cgroups.out_of_memory()
    except (OSError, ValueError) as error:
        log.error("run %s: could not read the run's cgroups: %s", run, error)
        raise SandboxError("could not read the program's resource usage") from error
    if cpu_ns == 0 and cpu_before_ns == 0 and outcome.rusage is not None:
        cpu_ns = int((outcome.rusage.ru_utime + outcome.rusage.ru_stime) * 1e9)
    facts = RunFacts(
        stopped_for=outcome.stopped_for,
        stdout_truncated=outcome.stdout_truncated,
        stderr_truncated=outcome.stderr_truncated,
        out_of_memory=out_of_memory,
        cpu_time_ms=cpu_ns // 1_000_000,
        log=jail_log if jail_log is not None else nsjail_log.parse(log_text),
    )
    failure = nsjail_failure(facts)
    if failure is not None:
        if not log_text and jail_log is None:
            # NsJail stopped before opening its log (a bad config, say): the program never
            # ran, so what is on stderr is NsJail's own complaint.
            failure += f"; NsJail wrote: {outcome.stderr[-2000:].decode('utf-8', 'replace').strip()}"
        log.error("run %s: NsJail could not run the program: %s\nNsJail's log:\n%s", run, failure, log_text)
        raise SandboxError("the sandbox could not run the program; the worker's log says why")
    return RunResult(
        verdict=decide(limits, facts),
        exit_code=facts.log.exit_code,
        signal=facts.log.signal,
        stdout=outcome.stdout.decode("utf-8", "replace"),
        stderr=outcome.stderr.decode("utf-8", "replace"),
        stdout_truncated=outcome.stdout_truncated,
        stderr_truncated=outcome.stderr_truncated,
        cpu_time_ms=facts.cpu_time_ms,
        wall_time_ms=round(outcome.wall_time_s * 1000),
        memory_kb=peak // 1024,
        sandbox_start=start,
    )


def clean_up(scratch: Scratch | None, cgroups: RunCgroups | None) -> None:
    """Remove the run's scratch space and cgroups (in a thread: a busy cgroup is waited for)."""
    # The scratch tmpfs first: its pages are charged to the run's memory cgroup.
    if scratch is not None:
        try:
            scratch.remove()
        except (OSError, ScratchError):
            log.exception("could not remove the scratch space %s", scratch.root)
    if cgroups is not None:
        try:
            cgroups.remove()
        except (OSError, CgroupError):
            log.exception("could not remove a run's cgroups")
