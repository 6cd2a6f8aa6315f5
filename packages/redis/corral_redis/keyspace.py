"""Every Redis key and channel the adapters use, named in one place (docs/redis-keys.md).

All of them start with one prefix that carries a Redis Cluster hash tag (`corral:{q}:` by
default), so every key of one queue lives in one slot and each multi-key script runs on one
node. The scripts also name two keys beside a line themselves, `<line>:wake` and `<line>:turns`,
as wake() and turns() do here.
"""

from __future__ import annotations


class QueueKeys:
    """The names of the queue's keys and channels, and of the API keys', all under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lines = f"{prefix}lines"  # SET of the per-language lines ever used
        self.processing = f"{prefix}processing"  # LIST of job ids taken by workers
        self.leases = f"{prefix}leases"  # ZSET job id -> lease deadline (µs, Redis' TIME)
        self.reserved = f"{prefix}reserved"  # STRING: bytes reserved for unfinished jobs' results
        self.finished = f"{prefix}finished"  # pub/sub channel: ids of jobs that just finished
        self.cancelled = f"{prefix}cancelled"  # pub/sub channel: ids of jobs just cancelled
        self.appended = f"{prefix}events:appended"  # pub/sub channel: ids of jobs whose events grew
        self.sent = f"{prefix}input:sent"  # pub/sub channel: ids of jobs whose input grew
        self.workers = f"{prefix}workers"  # ZSET worker id -> heartbeat expiry (µs, Redis' TIME)
        self.worker_info = f"{prefix}workers:info"  # HASH worker id -> encoded WorkerInfo
        self.job_prefix = f"{prefix}job:"
        # ZSET job id -> when its callback is next due, or its lease's end (µs, Redis' TIME)
        self.deliveries = f"{prefix}deliveries"

    def line(self, language: str) -> str:
        """The LIST of a language's job ids in line, oldest on the left.

        It holds the jobs without an owner (keys off); each owner's jobs have a line of their
        own (owner_line), taken in turn with the others (turns)."""
        return f"{self.prefix}pending:{language}"

    def owner_line(self, language: str, owner: str) -> str:
        """The LIST of one owner's job ids waiting in a language, oldest on the left."""
        return f"{self.line(language)}:owner:{owner}" if owner else self.line(language)

    def turns(self, language: str) -> str:
        """The LIST of the language's lines with jobs waiting, the next to serve on the left."""
        return f"{self.line(language)}:turns"

    @staticmethod
    def wake(line: str) -> str:
        """The LIST of wake-up tokens beside `line`, one per job put in it, that idle workers BLPOP."""
        return f"{line}:wake"

    def job(self, job_id: str) -> str:
        return self.job_prefix + job_id  # HASH, records.py

    def job_files(self, job_id: str) -> str:
        """The HASH of a finished job's returned files, name -> content, beside its record (which
        lists them without content) and expiring with it: a read of the job never fetches them."""
        return f"{self.job(job_id)}:files"

    def job_events(self, job_id: str) -> str:
        """The STREAM of a job's events (corral_redis.events), beside its record in its slot and
        expiring with it: fields `k` (the kind) and `d` (the data)."""
        return f"{self.job(job_id)}:events"

    def job_input(self, job_id: str) -> str:
        """The STREAM of what a client sent an interactive job's stdin: fields `d` (the bytes) and,
        on the last entry, `eof`."""
        return f"{self.job(job_id)}:input"

    def job_input_sent(self, job_id: str) -> str:
        """The HASH of what that input holds so far, `bytes` and `eof`, which a send checks."""
        return f"{self.job_input(job_id)}:sent"

    def duty(self, name: str) -> str:
        return f"{self.prefix}duty:{name}"  # HASH holder, expires (µs, Redis' TIME)

    # API keys and what each holds (corral_redis.apikeys): under the same hash tag as the jobs,
    # because FINISH settles a job's booking in its key's ledger.
    def api_key(self, hashed: str) -> str:
        return f"{self.prefix}apikey:{hashed}"  # HASH id, name, created_at, admin, quotas

    @property
    def api_keys(self) -> str:
        return f"{self.prefix}apikeys"  # HASH key id -> hash of its secret

    def rate(self, key_id: str) -> str:
        return f"{self.prefix}rate:{key_id}"  # STRING: GCRA's theoretical arrival time (µs)

    def usage(self, key_id: str) -> str:
        return f"{self.prefix}usage:{key_id}"  # ZSET job id -> inf while unfinished, then expiry (µs)

    def usage_bytes(self, key_id: str) -> str:
        return f"{self.prefix}usage:{key_id}:bytes"  # HASH job id -> booked bytes, ':total'

    def idempotency(self, scope: str, hashed: str) -> str:
        return f"{self.prefix}idempotency:{scope}:{hashed}"  # STRING "<job id> <fingerprint>"
