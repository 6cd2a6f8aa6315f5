"""The services the routes call, as Litestar dependencies: by parameter name, each a value the
deployable's container made (corral_http.services), handed over through `Provide`.

dependency-injector's `@inject` wiring clashes with Litestar's handler checks (litestar issue
#582), and Litestar checks a dependency's type at every request, which a Protocol cannot pass:
hence values, skipped by validation.
"""

from __future__ import annotations

from litestar.di import NamedDependency, Provide
from litestar.params import SkipValidation

from corral_http.services import JobRoutes, ServiceRoutes

Jobs = NamedDependency[SkipValidation[JobRoutes]]
Service = NamedDependency[SkipValidation[ServiceRoutes]]


def dependencies(jobs: JobRoutes, service: ServiceRoutes) -> dict[str, Provide]:
    def job_routes() -> JobRoutes:
        return jobs

    def service_routes() -> ServiceRoutes:
        return service

    return {
        "jobs": Provide(job_routes, sync_to_thread=False),
        "service": Provide(service_routes, sync_to_thread=False),
    }
