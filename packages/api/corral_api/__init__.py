"""Corral's HTTP API: a Litestar app over the core use cases, and the API's composition root.

`app.create_app()` builds the app from a container: `controllers` (one per resource), `errors`
(the one error-to-answer map), `dependencies` (the container's services as Litestar
dependencies), `schemas` (the public request and response bodies). `container.ApiContainer`
wires the use cases to the Redis adapters; `cli` is the PEX entry point.
"""
