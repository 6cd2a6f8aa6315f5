"""Which Redis the adapters use, under which key prefix (keyspace.py), and how much they accept."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar

import msgspec

_HASH_TAG = re.compile(r"\{[^{}]+\}")


class RedisSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The [redis] section both deployables read, so that one config file sets it once.

    Its variables are CORRAL_REDIS_<FIELD> (corral_system.config), except the two in env_names.
    max_unfinished acts in the API (submissions), finished_ttl_s in the worker (finishing and
    recovering jobs); either deployable ignores the other's.
    """

    config_section: ClassVar[str] = "redis"
    env_prefix: ClassVar[str] = "CORRAL_REDIS_"
    env_names: ClassVar[Mapping[str, str]] = {
        "max_unfinished": "CORRAL_MAX_UNFINISHED_JOBS",
        "finished_ttl_s": "CORRAL_FINISHED_JOB_TTL_S",
    }

    # redis://, rediss:// (TLS) or unix:// (a socket path); see connection.connect. It may
    # carry the ACL user and password (rediss://user:password@host:6380/0), but then
    # `corral-… config` shows the password: prefer username and password_file.
    url: str = "redis://127.0.0.1:6379/0"
    # The Redis ACL user to log in as; empty: the URL's, else Redis' default user.
    username: str = ""
    # A file holding that user's password (one line): the password never appears in a setting
    # or in `config`. Empty: the URL's password, else none.
    password_file: str = ""
    # rediss:// only: the CA certificate (PEM) the server's certificate must chain to; the
    # certificate must also name the URL's host. Empty: the system's CAs.
    tls_ca_file: str = ""
    # rediss:// only: this client's certificate (PEM), for a Redis with tls-auth-clients yes.
    tls_cert_file: str = ""
    # rediss:// only: the key (PEM) of tls_cert_file; both or neither.
    tls_key_file: str = ""
    # The most connections one process opens to Redis (its notification subscription included).
    max_connections: int = 32
    # How long a command waits for one of those connections to come free before the request
    # is refused as busy (503), which says this limit, not that Redis is unreachable.
    pool_timeout_s: float = 5.0
    # Every key's prefix; it must carry a Redis Cluster hash tag such as {q}.
    key_prefix: str = "corral:{q}:"
    # Submissions beyond this many unfinished (pending or running) jobs are refused with
    # QueueFull: overload answers 429/503 instead of letting Redis fill up until it refuses
    # every write, finishes included.
    max_unfinished: int = 10_000
    # The most memory (bytes) Redis may use before submissions are refused with 503: Redis'
    # used_memory, plus the largest result each unfinished job could still store, plus the new
    # job. 0 means 80% of Redis' own maxmemory (no ceiling when Redis has none). Keep it below
    # maxmemory: results and lease renewals of running jobs must always find room.
    max_memory_bytes: int = 0
    # Start anyway against a Redis that can lose accepted jobs (appendonly no, an evicting
    # maxmemory-policy, or a configuration it will not show); /readyz then says so.
    accept_data_loss: bool = False
    # How long a finished job stays readable (GET /jobs/{id}) before Redis expires it.
    finished_ttl_s: int = 24 * 3600
    # A blocking claim waits in slices no longer than this, so that a client's socket timeout
    # (connect() uses 5 s) never fires on a BLMOVE that is just waiting for work.
    claim_block_s: float = 1.0
    # Expired leases handled per recovery script, so one script never holds Redis for long.
    recover_batch: int = 500
    # The notification reader wakes this often when idle, which lets redis-py's health check
    # notice a dead connection that never said goodbye.
    listen_idle_s: float = 5.0
    # Talk to a Redis Cluster (redis.asyncio.RedisCluster; `url` names any one of its nodes):
    # finishes are announced with sharded pub/sub (SPUBLISH), which stays on the node that owns
    # the channel's slot instead of being broadcast to every node.
    cluster: bool = False
    # Queue shards, each a whole queue under its own hash tag (key_prefix's `{q}` becomes
    # `{q0}`, `{q1}`, ...), so a Cluster spreads them over its masters (corral_redis.shards).
    # API keys, quotas, workers and duties stay under key_prefix. 1 is one queue under
    # key_prefix itself.
    shards: int = 1
    # A submit, and a worker's finish, count only once this many replicas have them (WAIT
    # after the script): a submit they do not confirm answers 503, a finish is retried. 0
    # trusts the primary's word alone, and a failover may then lose what it last acknowledged.
    min_replicas_acked: int = 0
    # How long (ms) a submit or finish waits for min_replicas_acked replicas before it gives up.
    replica_ack_timeout_ms: int = 1000

    def __post_init__(self) -> None:
        tag = _HASH_TAG.search(self.key_prefix)
        if tag is None or "{" in self.key_prefix[: tag.start()]:
            raise ValueError(
                f"key_prefix {self.key_prefix!r} needs a hash tag such as '{{q}}', "
                "so that all of the queue's keys share one Redis Cluster slot"
            )
        if min(self.max_unfinished, self.finished_ttl_s, self.recover_batch, self.max_connections) < 1:
            raise ValueError("max_unfinished, finished_ttl_s, recover_batch and max_connections must be positive")
        if self.max_memory_bytes < 0:
            raise ValueError("max_memory_bytes must be 0 (80% of Redis' maxmemory) or a number of bytes")
        if self.max_connections < 2:
            raise ValueError("max_connections must be at least 2: the notification subscription keeps one")
        if not 0 < self.pool_timeout_s <= 60:
            raise ValueError("pool_timeout_s must be in (0, 60]")
        tls = {"tls_ca_file": self.tls_ca_file, "tls_cert_file": self.tls_cert_file, "tls_key_file": self.tls_key_file}
        if any(tls.values()) and not self.url.startswith("rediss://"):
            given = ", ".join(name for name, value in tls.items() if value)
            raise ValueError(f"{given} need a rediss:// url (TLS); the url is {self.url.partition('://')[0]}://")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together: give both or neither")
        if self.claim_block_s < 0.01:
            raise ValueError("claim_block_s must be at least 0.01 (Redis blocks in milliseconds)")
        if not 1 <= self.shards <= 256:
            raise ValueError("shards must be between 1 and 256")
        if self.min_replicas_acked < 0 or self.replica_ack_timeout_ms < 1:
            raise ValueError("min_replicas_acked must be 0 or more and replica_ack_timeout_ms positive")
        if self.cluster and self.url.startswith("unix:"):
            raise ValueError("a Redis Cluster is reached over TCP: give a redis:// or rediss:// url of one node")


DEFAULT_SETTINGS = RedisSettings()
