"""The worker's settings, from `CORRAL_…` variables (see corral_system.config)."""

from __future__ import annotations

from typing import Annotated

import msgspec

Positive = Annotated[int, msgspec.Meta(ge=1)]


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    redis_url: str = "redis://127.0.0.1:6379/0"
    worker_id: str = ""
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=256)] = 2
    lease_ms: Positive = 10_000
    renew_every_ms: Positive = 2_500
    max_attempts: Positive = 3
    recover_every_ms: Positive = 1_000
    heartbeat_every_ms: Positive = 1_000
    shutdown_grace_s: Annotated[float, msgspec.Meta(ge=0)] = 20
    finished_job_ttl_s: Positive = 24 * 3600
    max_unfinished_jobs: Positive = 10_000
    nsjail_bin: str = ""
    nsjail_policy_dir: str = ""
    jail_uid: Positive = 99_999
    jail_gid: Positive = 99_999
    work_root: str = "/run/corral/jobs"

    def __post_init__(self) -> None:
        if self.renew_every_ms >= self.lease_ms:
            raise ValueError("renew_every_ms must be shorter than lease_ms")
