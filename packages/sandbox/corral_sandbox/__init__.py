"""The NsJail adapter of the Sandbox port: untrusted programs, each in a fresh NsJail.

    report = prepare_host(SandboxSettings())     # once per worker: HostNotReady if unsafe
    sandbox = NsJailSandbox(host=report)
    result = await sandbox.run(request)

The jail policy is data in the repo's nsjail/ directory (found by policy.policy_dir).
"""

from corral_sandbox.host import HostNotReady, HostReport, prepare_host
from corral_sandbox.sandbox import NsJailSandbox
from corral_sandbox.settings import CgroupMode, SandboxSettings

__all__ = [
    "CgroupMode",
    "HostNotReady",
    "HostReport",
    "NsJailSandbox",
    "SandboxSettings",
    "prepare_host",
]
