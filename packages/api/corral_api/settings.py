"""The API's settings, from `CORRAL_…` variables (see corral_system.config)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from corral_core.job import Limits
from corral_core.policy import DEFAULT_LIMIT_POLICY, LIMIT_FIELDS, LimitPolicy, SizePolicy

Positive = Annotated[int, msgspec.Meta(ge=1)]
_SIZES = SizePolicy()
_DEFAULTS, _MAXIMA = DEFAULT_LIMIT_POLICY.defaults, DEFAULT_LIMIT_POLICY.maxima


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    redis_url: str = "redis://127.0.0.1:6379/0"
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8000
    max_wait_s: Annotated[float, msgspec.Meta(ge=0, le=300)] = 30
    max_unfinished_jobs: Positive = 10_000
    finished_job_ttl_s: Positive = 24 * 3600
    retry_after_s: Positive = 2
    worker_heartbeat_ms: Positive = 2_000
    max_code_bytes: Positive = _SIZES.max_code_bytes
    max_stdin_bytes: Positive = _SIZES.max_stdin_bytes
    max_files: Positive = _SIZES.max_files
    max_files_bytes: Positive = _SIZES.max_files_bytes
    limit_default_cpu_time_ms: Positive = _DEFAULTS.cpu_time_ms
    limit_default_wall_time_ms: Positive = _DEFAULTS.wall_time_ms
    limit_default_memory_mb: Positive = _DEFAULTS.memory_mb
    limit_default_max_processes: Positive = _DEFAULTS.max_processes
    limit_default_max_output_bytes: Positive = _DEFAULTS.max_output_bytes
    limit_default_max_file_size_kb: Positive = _DEFAULTS.max_file_size_kb
    limit_max_cpu_time_ms: Positive = _MAXIMA.cpu_time_ms
    limit_max_wall_time_ms: Positive = _MAXIMA.wall_time_ms
    limit_max_memory_mb: Positive = _MAXIMA.memory_mb
    limit_max_max_processes: Positive = _MAXIMA.max_processes
    limit_max_max_output_bytes: Positive = _MAXIMA.max_output_bytes
    limit_max_max_file_size_kb: Positive = _MAXIMA.max_file_size_kb

    def limit_policy(self) -> LimitPolicy:
        return LimitPolicy(
            defaults=Limits(**{name: getattr(self, f"limit_default_{name}") for name in LIMIT_FIELDS}),
            maxima=Limits(**{name: getattr(self, f"limit_max_{name}") for name in LIMIT_FIELDS}),
        )

    def size_policy(self) -> SizePolicy:
        return SizePolicy(
            max_code_bytes=self.max_code_bytes,
            max_stdin_bytes=self.max_stdin_bytes,
            max_files=self.max_files,
            max_files_bytes=self.max_files_bytes,
        )

    def max_body_bytes(self) -> int:
        # Base64 files grow by 4/3 and JSON escaping can double text; anything past this is
        # refused by Litestar before it is parsed.
        text = 2 * (self.max_code_bytes + self.max_stdin_bytes)
        return text + 2 * self.max_files_bytes + 64 * 1024
