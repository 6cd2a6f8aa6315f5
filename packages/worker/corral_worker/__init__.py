"""Corral's worker: takes jobs from Redis and runs each in a fresh NsJail sandbox.

`service.Worker` is the loop (jobs, lease renewal through the use case, heartbeats, recovery of
abandoned jobs, graceful stop); `container.WorkerContainer` composes it; `cli` is the PEX
entry point.
"""
