"""The NsJail adapter of the Sandbox port: untrusted programs, each in a fresh NsJail.

    report = prepare_host(SandboxSettings())     # once per worker: HostNotReady if unsafe
    sandbox = NsJailSandbox(host=report)          # touches nothing on the host
    result = await sandbox.run(request)

Modules, from the top down (an import only ever points down this list; test_imports.py checks):
    host         prepare_host: checks the host, cleans up after dead workers, runs the self-test
    sandbox      NsJailSandbox: the port (run, runtimes), the self-test, the warm jails kept ready
    report       HostReport, what preparing found; HostNotReady
    warm         a warm jail: started before its job, handed one job, destroyed
    jail         one job: set up, supervise, judge, clean up; JailHost, the narrow host it needs
    jailids      the host uid/gid of each running job, leased from a range shared by the host's workers
    jail_process spawning NsJail, reaping it through a pidfd, timers, stop and kill
    streams      stdin as a sealed memfd, stdout/stderr as capped pipe readers
    inputs       the request checked again by core's rules
    leftovers    cleaning up dead workers' scratch mounts and cgroups, safe to run concurrently
    scratch      a job's tmpfs
    cgroups/     detection, one run's cgroups on v1 and on v2, cgroup file plumbing
    runname      run names: `{pid}-{start}-{hex}`, their prefixes, whether the owner lives
    command, policy_files, binary, verdict, nsjail_log, x32, settings: leaves
The jail policy is data in the repo's nsjail/ directory (found by policy_files.policy_dir).
"""

from corral_sandbox.host import prepare_host
from corral_sandbox.report import HostNotReady, HostReport
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
