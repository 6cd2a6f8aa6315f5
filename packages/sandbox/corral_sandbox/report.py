"""What preparing a worker host found (HostReport), and the refusal of a host that is unfit."""

from __future__ import annotations

import msgspec

from corral_core.ports import SandboxError
from corral_sandbox.cgroups.hierarchy import HostCgroups
from corral_sandbox.jail import JailHost
from corral_sandbox.policy import RuntimeSpec
from corral_sandbox.settings import SandboxSettings


class HostNotReady(SandboxError):
    """This host cannot run jobs safely; the message says why."""


class HostReport(msgspec.Struct, frozen=True, kw_only=True):
    settings: SandboxSettings
    nsjail_bin: str
    policy_dir: str
    cgroups: HostCgroups
    runtimes: tuple[RuntimeSpec, ...]
    cpu_count: int
    cleaned_up: tuple[str, ...] = ()

    def jail_host(self) -> JailHost:
        """The part of the report that running a jail needs."""
        settings = self.settings
        return JailHost(
            nsjail_bin=self.nsjail_bin,
            policy_dir=self.policy_dir,
            jail_uid=settings.jail_uid,
            jail_gid=settings.jail_gid,
            work_root=settings.work_root,
            scratch_inodes=settings.scratch_inodes,
            output_grace_ms=settings.output_grace_ms,
            kill_grace_ms=settings.kill_grace_ms,
            cgroups=self.cgroups,
            cpu_count=self.cpu_count,
        )

    def describe(self) -> list[str]:
        c = self.cgroups
        lines = [
            f"nsjail: {self.nsjail_bin}",
            f"policy: {self.policy_dir}",
            f"jail user: host uid {self.settings.jail_uid}, gid {self.settings.jail_gid}",
            f"work root: {self.settings.work_root} (a tmpfs, with one tmpfs per job in it)",
        ]
        if c.version == 1:
            lines.append(
                f"cgroups: v1, parents {c.parent} under memory={c.memory} pids={c.pids} " f"cpuacct={c.cpuacct}"
            )
        else:
            lines.append(f"cgroups: v2 at {c.memory}, parent {c.parent}")
        lines.append(
            "swap: accounted, each job's memory+swap limit equals its memory limit"
            if c.swap_accounting
            else "swap: not accounted (no swap limit is set; the host must have no swap)"
        )
        lines.append(f"cpus: {self.cpu_count}")
        lines += [f"runtime: {spec.language} {spec.version}" for spec in self.runtimes]
        lines += [f"cleaned up after a dead worker: {path}" for path in self.cleaned_up]
        return lines
