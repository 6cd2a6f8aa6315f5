"""Judge0 CE 1.13- and Piston v2-compatible HTTP APIs over Corral's own use cases.

Each module is one API: its request and response schemas, the mapping to and from Corral's jobs,
its error answers, and a Litestar router that `app.create_app` mounts (`/judge0`, `/api/v2`).
`languages` is the one table that names Corral's languages the way those APIs do.
"""
