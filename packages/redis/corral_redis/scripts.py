"""The Lua scripts, in lua/*.lua: every change to the queue is one of them, so no crash lands half-way.

Redis runs a script atomically, and an AOF replay after a crash replays it whole or not at all.
Each script is also safe to run twice, because redis-py re-sends a command whose reply was lost
to a dropped connection (see connect()): each file says what a second run does.

A file includes another by name with a line `--#include <name>`: the pieces the scripts share
(the clock, a job's lines, its progress fields, how a finish is announced) are written once.
Core's status names and the record layout's field lists (records.py) are pieces made here, so
no script spells one itself. Lease deadlines and expiries are Redis' own clock: docs/queue.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources

from corral_core.job import JobStatus
from corral_redis.records import FIELDS, MAX_ANNOUNCED_VIEW_BYTES, PROGRESS, VIEW_FIELDS

_INCLUDE = re.compile(r"^--#include (\w+)\n", re.MULTILINE)


def _lua_names(name: str, values: Iterable[str]) -> str:
    return f"local {name} = {{" + ", ".join(f"'{value}'" for value in values) + "}\n"


# Pieces that name what Python defines, so that the scripts and the adapters cannot disagree.
_MADE_HERE = {
    # The lifecycle is core's (corral_core.job.ALLOWED): PENDING = 'PENDING', ...
    "statuses": "".join(f"local {status.name} = '{status.value}'\n" for status in JobStatus),
    "progress_fields": _lua_names("PROGRESS", PROGRESS),
    "record_fields": _lua_names("FIELDS", FIELDS),
    "view_fields": _lua_names("VIEW", VIEW_FIELDS) + f"local MAX_VIEW = {MAX_ANNOUNCED_VIEW_BYTES}\n",
}


def load(name: str, **instead: str) -> str:
    """The script lua/<name>.lua with every piece it includes put in place of its include line.

    `instead` includes one piece in place of another wherever it is included (publish="spublish").
    """
    source = _MADE_HERE.get(name)
    if source is None:
        source = (resources.files("corral_redis") / "lua" / f"{name}.lua").read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda include: load(instead.get(include[1], include[1]), **instead), source)


# The queue's (queue.py and, for a job whose owner's ledger is in another shard, shards.py).
SUBMIT, DEPTH, START, RENEW, FINISH, CANCEL, RELEASE, RECOVER, SETTLE, ERASE = map(
    load, ["submit", "depth", "start", "renew", "finish", "cancel", "release", "recover", "settle", "erase"]
)
# On a Redis Cluster (shards.py): finishes and cancels announced on the channel's node alone.
SHARDED_FINISH = load("finish", publish="spublish")
SHARDED_CANCEL = load("cancel", publish="spublish")
# The line of callbacks to deliver (callbacks.py).
DELIVERIES_DUE, DELIVERIES_SETTLE = map(load, ["deliveries_due", "deliveries_settle"])
# A key's webhook secret replaced (apikeys.py).
ROTATE_WEBHOOK_SECRET = load("rotate_webhook_secret")
# The worker registry's (workers.py).
HEARTBEAT, HOLD_DUTY, LIVE_WORKERS = map(load, ["heartbeat", "hold_duty", "live_workers"])
# A running job's events and input (events.py); on a Cluster, announced on the channel's node.
APPEND_EVENTS, SEND_INPUT = map(load, ["append_events", "send_input"])
SHARDED_APPEND_EVENTS = load("append_events", publish="spublish")
SHARDED_SEND_INPUT = load("send_input", publish="spublish")
# API keys, usage and idempotency records (apikeys.py).
AUTHORIZE, BOOK, UNBOOK, ADMIT, CLAIM_IDEMPOTENCY, RELEASE_IDEMPOTENCY, HELD, REPAIR_BOOKINGS = map(
    load,
    ["authorize", "book", "unbook", "admit", "claim_idempotency", "release_idempotency", "held", "repair_bookings"],
)
