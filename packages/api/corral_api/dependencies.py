"""The bridge from the container to Litestar: what a handler may ask for by parameter name.

Litestar inspects a dependency's signature, which dependency-injector providers lack, and its
`@inject` wiring clashes with Litestar's handler checks (litestar issue #582): each dependency
is a plain function that asks the container, handed to Litestar through `Provide`.
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
Submit = NamedDependency[SubmitJob]
SubmitOnce = NamedDependency[SubmitJobOnce]
Get = NamedDependency[GetJob]
Cancel = NamedDependency[CancelJob]
Settings = NamedDependency[ApiSettings]
Waits = NamedDependency[LongPolls]
RedisDurability = NamedDependency[Durability]
Metrics = NamedDependency[ApiMetrics]
Gauge = NamedDependency[SkipValidation[QueueGauge]]


def dependencies(container: ApiContainer) -> dict[str, Provide]:
    # The use cases act for the request's caller (auth.py), a cheap copy per request.
    def submit_job() -> SubmitJob:
        return container.submit_job().as_caller(current_caller.get())

    def submit_once() -> SubmitJobOnce:
        ttl_s = container.settings().idempotency_ttl_s
        return SubmitJobOnce(submit_job(), container.store(), container.idempotency(), ttl_s)

    def get_job() -> GetJob:
        return container.get_job().as_caller(current_caller.get())

    def cancel_job() -> CancelJob:
        return container.cancel_job().as_caller(current_caller.get())

    def registry() -> WorkerRegistry:
        return container.registry()

    def runtimes() -> RuntimeCatalog:
        return container.runtimes()

    def settings() -> ApiSettings:
        return container.settings()

    def long_polls() -> LongPolls:
        return container.long_polls()

    def durability() -> Durability:
        return container.durability()

    def metrics() -> ApiMetrics:
        return container.metrics()

    def queue_gauge() -> QueueGauge:
        return container.queue()

    return {
        name: Provide(provider, sync_to_thread=False)
        for name, provider in [
            ("submit_job", submit_job),
            ("submit_once", submit_once),
            ("get_job", get_job),
            ("cancel_job", cancel_job),
            ("registry", registry),
            ("runtimes", runtimes),
            ("settings", settings),
            ("long_polls", long_polls),
            ("durability", durability),
            ("metrics", metrics),
            ("queue_gauge", queue_gauge),
        ]
    }
