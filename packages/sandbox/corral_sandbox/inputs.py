"""A request checked again at the door, by core's rules: the sandbox trusts no caller.

The API and core already refused anything that breaks these; a request that reaches the sandbox
through another path (a queue payload, a test, a future caller) gets the same rules, not a copy.
"""

from __future__ import annotations

import msgspec

from corral_core.job import Limits, RunRequest
from corral_core.policy import LIMIT_FIELDS, InvalidSubmission, LimitPolicy, LimitRequest, check_file_name
from corral_core.ports import SandboxError
from corral_sandbox.policy_files import RuntimeSpec

# Limits no client may have, whatever a caller passes (the server's maxima are far below).
_CEILING = Limits(
    cpu_time_ms=3_600_000,
    wall_time_ms=3_600_000,
    memory_mb=1 << 20,
    max_processes=1 << 16,
    max_output_bytes=1 << 30,
    max_file_size_kb=1 << 30,
    compile_cpu_time_ms=3_600_000,
    compile_wall_time_ms=3_600_000,
    compile_memory_mb=1 << 20,
)
_CEILINGS = LimitPolicy(defaults=_CEILING, maxima=_CEILING)


def check_limits(limits: Limits) -> None:
    for name in LIMIT_FIELDS:
        value = getattr(limits, name)
        if isinstance(value, bool) or not isinstance(value, int):  # Limits built without validation
            raise SandboxError(f"limit {name}={value!r} is not an integer")
    try:
        _CEILINGS.resolve(LimitRequest(**msgspec.structs.asdict(limits)))
    except InvalidSubmission as error:
        raise SandboxError(str(error)) from None


def job_files(runtime: RuntimeSpec, request: RunRequest) -> list[tuple[str, bytes]]:
    """The files the host writes before the jail starts: the source first, then the inputs."""
    files = [(runtime.source, request.code.encode("utf-8", "surrogatepass"))]
    seen = {runtime.source}
    for index, file in enumerate(request.files):
        try:
            check_file_name(f"files[{index}].name", file.name)
        except InvalidSubmission as error:
            raise SandboxError(str(error)) from None
        except UnicodeError:
            raise SandboxError(f"files[{index}].name: {file.name!r} is not valid UTF-8") from None
        if file.name in seen:
            raise SandboxError(f"input file {file.name!r} clashes with another file of the job")
        seen.add(file.name)
        files.append((file.name, bytes(file.content)))
    for arg in (*request.args, *request.compiler_args):
        if "\0" in arg:  # exec cannot pass it
            raise SandboxError("an argument contains a NUL character")
    if request.compiler_args and not runtime.takes_compiler_args:
        raise SandboxError(f"the {runtime.language!r} runtime takes no compiler arguments")
    return files
