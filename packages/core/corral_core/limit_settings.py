"""The [limits] section (corral_system.config): the job limits both deployables read.

The API resolves every request against them; the worker sizes its shutdown grace by the
longest wall time. One section, so that one file and one variable set both.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from corral_core.job import Limits
from corral_core.policy import DEFAULT_LIMIT_POLICY, LimitPolicy

Positive = Annotated[int, msgspec.Meta(ge=1)]


class LimitValues(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One value per limit: the defaults, or the maxima."""

    # CPU time of the run, in milliseconds.
    cpu_time_ms: Positive
    # Wall-clock time of the run, in milliseconds.
    wall_time_ms: Positive
    # Memory of the run, in MiB.
    memory_mb: Positive
    # Processes and threads the run may have at once.
    max_processes: Positive
    # Bytes of stdout, and of stderr, kept from the run.
    max_output_bytes: Positive
    # The largest file the run may write, in KiB.
    max_file_size_kb: Positive
    # The compile stage of compiled languages, in its own jail: CPU time, wall time, memory.
    compile_cpu_time_ms: Positive
    compile_wall_time_ms: Positive
    compile_memory_mb: Positive
    # Files a job asks back: how many, and their KiB in all.
    max_returned_files: Positive
    max_returned_files_kb: Positive

    @classmethod
    def of(cls, limits: Limits) -> LimitValues:
        return msgspec.convert(msgspec.structs.asdict(limits), cls)

    def limits(self) -> Limits:
        return msgspec.convert(msgspec.structs.asdict(self), Limits)


class LimitSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Its variables are CORRAL_LIMIT_DEFAULT_<FIELD> and CORRAL_LIMIT_MAX_<FIELD>."""

    config_section: ClassVar[str] = "limits"
    env_prefix: ClassVar[str] = "CORRAL_LIMIT_"

    # The limits a job gets when its request names none.
    default: LimitValues = LimitValues.of(DEFAULT_LIMIT_POLICY.defaults)
    # The most a request may ask for; above it the request is refused with 422, never clamped.
    max: LimitValues = LimitValues.of(DEFAULT_LIMIT_POLICY.maxima)

    def __post_init__(self) -> None:
        self.policy()  # a default above its maximum is refused at start

    def policy(self) -> LimitPolicy:
        return LimitPolicy(defaults=self.default.limits(), maxima=self.max.limits())
