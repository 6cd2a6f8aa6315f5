"""Redis adapters: the job queue, the job store, a job's events and input, the worker registry.

They pass the same contract suites as the in-memory adapters (tests/contract/test_redis.py).
They need Redis 6.2 or later (LMOVE, BLMOVE), run with `appendonly yes` and
`maxmemory-policy noeviction`, or Redis can lose accepted jobs: both deployables refuse to
start otherwise (`require_durable_redis`, durability.py) unless the risk is accepted by name. `appendfsync everysec` loses nothing when the Redis process dies, up to about a
second of accepted jobs when the machine does; `always` loses nothing either way, at a cost
bench/queue_throughput.py measures.
"""

from corral_redis.apikeys import RedisAdmittingQueue, RedisIdempotencyRecords, RedisKeyStore, RedisUsageLedger
from corral_redis.callbacks import RedisCallbackDeliveries
from corral_redis.cancels import RedisCancelNotices
from corral_redis.connection import (
    RedisCredentialsError,
    connect,
    connect_cluster,
    connect_to,
    security_options,
    storage_errors,
)
from corral_redis.container import RedisContainer
from corral_redis.durability import Durability, RedisCanLoseJobs, check_durability, require_durable_redis
from corral_redis.events import RedisJobEvents, RedisJobInput
from corral_redis.keyspace import QueueKeys
from corral_redis.queue import RedisJobQueue
from corral_redis.settings import RedisSettings
from corral_redis.shards import (
    ShardedCancelNotices,
    ShardedJobEvents,
    ShardedJobInput,
    ShardedJobQueue,
    ShardedJobStore,
    make_admitting,
    make_cancel_notices,
    make_events,
    make_job_input,
    make_queue,
    make_store,
)
from corral_redis.store import RedisJobStore
from corral_redis.workers import RedisWorkerRegistry

__all__ = [
    "QueueKeys",
    "Durability",
    "RedisAdmittingQueue",
    "RedisCanLoseJobs",
    "RedisCallbackDeliveries",
    "RedisCancelNotices",
    "RedisContainer",
    "RedisCredentialsError",
    "RedisIdempotencyRecords",
    "RedisKeyStore",
    "RedisUsageLedger",
    "RedisJobEvents",
    "RedisJobInput",
    "RedisJobQueue",
    "RedisJobStore",
    "RedisSettings",
    "RedisWorkerRegistry",
    "ShardedCancelNotices",
    "ShardedJobEvents",
    "ShardedJobInput",
    "ShardedJobQueue",
    "ShardedJobStore",
    "check_durability",
    "connect",
    "connect_cluster",
    "connect_to",
    "make_admitting",
    "make_cancel_notices",
    "make_events",
    "make_job_input",
    "make_queue",
    "make_store",
    "security_options",
    "require_durable_redis",
    "storage_errors",
]
