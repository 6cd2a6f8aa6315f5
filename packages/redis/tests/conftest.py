"""Fixtures the Redis adapter's own tests ask for by name: a real Redis for the session."""

from corral_testbed.redis_server import redis_url as redis_url
