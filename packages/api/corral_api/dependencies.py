"""The bridge from the container to Litestar: what a handler may ask for by parameter name.

Litestar inspects a dependency's signature, which dependency-injector providers lack, and its
`@inject` wiring clashes with Litestar's handler checks (litestar issue #582): each dependency
is a plain function that asks the container, handed to Litestar through `Provide`.

A handler that needs several of them takes `jobs` (Jobs) instead: Litestar resolves a handler's
independent dependencies together, in a task group with a task for each, which cost the job
routes a good share of their CPU per request (a submit in process: 0.93 ms with them, 0.79 ms
with `jobs`); one dependency is resolved in line.
"""

from __future__ import annotations

from litestar.di import NamedDependency, Provide
from litestar.params import SkipValidation

from corral_api.auth import current_caller
from corral_api.container import ApiContainer
from corral_api.longpolls import LongPolls
from corral_api.settings import ApiSettings
from corral_api.telemetry import ApiMetrics
from corral_core.ports import QueueGauge, RuntimeCatalog, WorkerRegistry
from corral_core.usecases import CancelJob, GetJob, SubmitJob, SubmitJobOnce
from corral_redis import Durability

# The types handlers declare, by the names below. Litestar checks a dependency's type at every
# request; a Protocol cannot be checked that way.
Registry = NamedDependency[SkipValidation[WorkerRegistry]]
Runtimes = NamedDependency[SkipValidation[RuntimeCatalog]]
Cancel = NamedDependency[CancelJob]
Settings = NamedDependency[ApiSettings]
RedisDurability = NamedDependency[Durability]
Metrics = NamedDependency[ApiMetrics]
Gauge = NamedDependency[SkipValidation[QueueGauge]]


class Jobs:
    """What the job routes use, for the request's caller (auth.py), each taken when first used."""

    __slots__ = ("_container",)

    def __init__(self, container: ApiContainer) -> None:
        self._container = container

    @property
    def submit(self) -> SubmitJob:
        return self._container.submit_job().as_caller(current_caller.get())

    @property
    def submit_once(self) -> SubmitJobOnce:
        container = self._container
        return SubmitJobOnce(self.submit, container.store(), container.idempotency(), container.settings().idempotency_ttl_s)

    @property
    def get(self) -> GetJob:
        return self._container.get_job().as_caller(current_caller.get())

    @property
    def settings(self) -> ApiSettings:
        return self._container.settings()

    @property
    def long_polls(self) -> LongPolls:
        return self._container.long_polls()

    @property
    def runtimes(self) -> RuntimeCatalog:
        return self._container.runtimes()

    @property
    def metrics(self) -> ApiMetrics:
        return self._container.metrics()


JobRoutes = NamedDependency[SkipValidation[Jobs]]


def dependencies(container: ApiContainer) -> dict[str, Provide]:
    # The use cases act for the request's caller (auth.py), a cheap copy per request.
    jobs = Jobs(container)

    def job_routes() -> Jobs:
        return jobs

    def cancel_job() -> CancelJob:
        return container.cancel_job().as_caller(current_caller.get())

    def registry() -> WorkerRegistry:
        return container.registry()

    def runtimes() -> RuntimeCatalog:
        return container.runtimes()

    def settings() -> ApiSettings:
        return container.settings()

    def durability() -> Durability:
        return container.durability()

    def metrics() -> ApiMetrics:
        return container.metrics()

    def queue_gauge() -> QueueGauge:
        return container.queue()

    return {
        name: Provide(provider, sync_to_thread=False)
        for name, provider in [
            ("jobs", job_routes),
            ("cancel_job", cancel_job),
            ("registry", registry),
            ("runtimes", runtimes),
            ("settings", settings),
            ("durability", durability),
            ("metrics", metrics),
            ("queue_gauge", queue_gauge),
        ]
    }
