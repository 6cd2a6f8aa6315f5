"""What the routes call, made by the deployable's container and handed to Litestar whole:
the use cases and ports of each group of routes, never the container itself."""

from __future__ import annotations

from dataclasses import dataclass

from corral_core.events import JobEvents, JobInput
from corral_core.ports import JobStore, QueueGauge, Readiness, RuntimeCatalog, WorkerRegistry
from corral_core.submission import SubmitJob, SubmitJobOnce
from corral_core.usecases import CancelJob, DeleteJob, GetJob
from corral_http.live import LiveStreams
from corral_http.longpolls import LongPolls
from corral_http.options import HttpOptions
from corral_http.telemetry import ApiMetrics


@dataclass(frozen=True, slots=True)
class JobRoutes:
    """The job routes' services (native, Judge0 and Piston): one dependency per request, since
    Litestar resolves a handler's independent dependencies in a task each."""

    submit: SubmitJob
    submit_once: SubmitJobOnce
    get: GetJob
    cancel: CancelJob
    delete: DeleteJob
    # Read only after `get` has found the caller's job: the content of the files it returned.
    store: JobStore
    runtimes: RuntimeCatalog
    long_polls: LongPolls
    # Read and written only after `get` has found the caller's job, as `store`'s files are.
    events: JobEvents
    job_input: JobInput
    streams: LiveStreams
    metrics: ApiMetrics
    options: HttpOptions


@dataclass(frozen=True, slots=True)
class ServiceRoutes:
    """The operator's routes: runtimes, readiness and metrics."""

    registry: WorkerRegistry
    readiness: Readiness
    queue_gauge: QueueGauge
    metrics: ApiMetrics
