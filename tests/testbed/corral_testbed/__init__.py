"""Real services for Corral's tests and benchmarks, one module each: a Redis server that can
crash and come back (redis_server), Corral's own API and workers as OS processes (services), an
NsJail host.

Test code only: the build refuses any deployable that depends on it.
"""
