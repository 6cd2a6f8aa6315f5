"""NsJailSandbox: the Sandbox port, one fresh NsJail per run."""

from __future__ import annotations

from corral_core.job import RunRequest, RunResult
from corral_core.ports import Runtime, UnsupportedLanguage
from corral_sandbox.host import HostReport, prepare_host
from corral_sandbox.jail import run_job
from corral_sandbox.settings import SandboxSettings


class NsJailSandbox:
    """Runs each program in a fresh jail (see jail.py for how, and nsjail/ for the policy).

    Give it the HostReport of `prepare_host`, or let it prepare the host itself (which raises
    HostNotReady on a host that cannot enforce the limits). Runs may overlap: each has its own
    jail, scratch tmpfs and cgroups.
    """

    def __init__(self, settings: SandboxSettings | None = None, host: HostReport | None = None) -> None:
        self.host = host if host is not None else prepare_host(settings or SandboxSettings())
        self._runtimes = {spec.language: spec for spec in self.host.runtimes}

    def runtimes(self) -> list[Runtime]:
        return [Runtime(spec.language, spec.version, spec.source) for spec in self.host.runtimes]

    async def run(self, request: RunRequest) -> RunResult:
        runtime = self._runtimes.get(request.language)
        if runtime is None:
            raise UnsupportedLanguage(request.language)
        return await run_job(self.host, runtime, request)
