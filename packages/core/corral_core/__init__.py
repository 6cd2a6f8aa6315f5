"""Corral's domain: jobs, their lifecycle, the ports adapters implement, and the use cases.

Pure by rule (the build enforces it): the standard library and msgspec only, no I/O, no clock.
"""
