"""The worker's [worker] section (corral_system.config); it also reads [limits], [redis] and [sandbox]."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from corral_core.limit_settings import LimitSettings
from corral_redis import RedisSettings
from corral_sandbox import SandboxSettings
from corral_system.config import Processes

Positive = Annotated[int, msgspec.Meta(ge=1)]

# What a job needs on top of its wall time to end: the jail's start and teardown, the result
# write (retried within the lease while Redis is away).
SHUTDOWN_MARGIN_S = 10
_MAX_WALL_TIME_MS = LimitSettings().max.wall_time_ms


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Its variables are CORRAL_<FIELD>."""

    config_section: ClassVar[str] = "worker"
    env_names: ClassVar[dict[str, str]] = {"processes": "CORRAL_WORKER_PROCESSES"}

    # The name the worker registers under; empty: the host name, the pid and a random suffix.
    worker_id: str = ""
    # Worker processes: above 1, a supervisor forks them, restarts a dead one and stops them
    # together (`corral-worker run --processes` wins); 1: this process runs jobs itself.
    processes: Processes = 1
    # Jobs run at once, in each worker process (`corral-worker run --concurrency` wins).
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=256)] = 2
    # A running job's lease: a worker silent this long loses the job to recovery.
    lease_ms: Positive = 10_000
    # How often a running job's lease is renewed; shorter than lease_ms.
    renew_every_ms: Positive = 2_500
    # Times a job may be taken by a worker that is then lost, before it fails as worker_lost.
    max_attempts: Positive = 3
    # How often the worker looks for jobs whose lease expired.
    recover_every_ms: Positive = 1_000
    # How often the worker tells the registry it is alive and which runtimes it offers.
    heartbeat_every_ms: Positive = 1_000
    # The job limits: the [limits] section the API resolves requests with. Only the shutdown
    # grace depends on them here, on the longest wall time a job may ask for.
    limits: LimitSettings = LimitSettings()
    # On SIGTERM, how long running jobs get to finish before they go back to the queue; at
    # least [limits.max] wall_time_ms plus 10 s, so that no job is handed back at every restart.
    shutdown_grace_s: Annotated[float, msgspec.Meta(ge=0)] = _MAX_WALL_TIME_MS / 1000 + SHUTDOWN_MARGIN_S
    # Where the worker serves /metrics (Prometheus): the supervisor, for all its processes.
    # Port 0: no metrics endpoint.
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9464

    def __post_init__(self) -> None:
        if self.renew_every_ms >= self.lease_ms:
            raise ValueError("renew_every_ms must be shorter than lease_ms")
        longest_s = self.limits.max.wall_time_ms / 1000
        if self.shutdown_grace_s < longest_s + SHUTDOWN_MARGIN_S:
            raise ValueError(
                f"shutdown_grace_s must be at least limits.max.wall_time_ms plus {SHUTDOWN_MARGIN_S} s "
                f"({longest_s + SHUTDOWN_MARGIN_S:g}), or the longest jobs are "
                "handed back at every restart and may never finish"
            )


# The sections `corral-worker` reads, in the order `corral-worker config` shows them.
SECTIONS = (WorkerSettings, LimitSettings, RedisSettings, SandboxSettings)
