"""Corral's HTTP adapter: a Litestar app over the core use cases and ports.

`app.http_app()` builds it from the services a deployable's container made (`services`):
`controllers` (one per resource), `compat` (the Judge0- and Piston-compatible routes),
`errors` (the one error-to-answer map), `auth` (the API-key door), `middleware` and `requests`
(what every request must be), `schemas` (the public bodies). It imports no storage, sandbox or
deployable; the build refuses such an import (the top-level BUILD).
"""
