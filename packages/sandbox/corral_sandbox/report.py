"""What preparing a worker host found (HostReport), and the refusal of a host that is unfit."""

from __future__ import annotations

import msgspec

from corral_core.ports import SandboxError
from corral_core.structs import copied
from corral_sandbox.cgroups.hierarchy import HostCgroups
from corral_sandbox.jail import JailHost
from corral_sandbox.jailids import JailIdRange
from corral_sandbox.policy_files import RuntimeSpec
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
    # Runtimes installed here whose self-test failed, with why: not offered.
    failed_selftest: tuple[tuple[str, str], ...] = ()
    # Where the runtimes' warm hooks are bound from (see host._ready_hooks).
    hook_dir: str = ""

    def jail_host(self) -> JailHost:
        """The part of the report that running a jail needs."""
        # The settings' work root, scratch inodes, grace periods and cores per job; the rest
        # as this host was found.
        return copied(
            JailHost,
            self.settings,
            nsjail_bin=self.nsjail_bin,
            policy_dir=self.policy_dir,
            hook_dir=self.hook_dir or self.policy_dir,
            cgroups=self.cgroups,
            cpu_count=self.cpu_count,
        )

    def jail_ids(self) -> JailIdRange:
        """The host uids and gids the jails run as, one pair per running job."""
        settings = self.settings
        return JailIdRange(settings.jail_uid_first, settings.jail_gid_first, settings.jail_id_count)

    def jail_id_leases(self) -> str:
        """The directory of the id leases every worker of this host shares (see jailids.py)."""
        return lease_dir(self.settings.work_root)


    def describe(self) -> list[str]:
        c = self.cgroups
        ids = self.jail_ids()
        lines = [
            f"nsjail: {self.nsjail_bin}",
            f"policy: {self.policy_dir}",
            f"jail users: one per running job, host uids {ids.uids().start}-{ids.uids().stop - 1}, "
            f"gids {ids.gids().start}-{ids.gids().stop - 1}",
            f"work root: {self.settings.work_root} (a tmpfs, with one tmpfs per job in it)",
        ]
        if c.version == 1:
            lines.append(
                f"cgroups: v1, parents {c.parent} under memory={c.memory} pids={c.pids} "
                f"cpuacct={c.cpuacct} cpu={c.cpu}"
            )
        else:
            lines.append(f"cgroups: v2 at {c.memory}, parent {c.parent}")
        lines.append(
            "swap: accounted, each job's memory+swap limit equals its memory limit"
            if c.swap_accounting
            else "swap: not accounted (no swap limit is set; the host must have no swap)"
        )
        lines.append(f"cpus: {self.cpu_count}, each job held to {self.settings.cpu_cores_per_job:g} of them")
        lines += [f"runtime: {spec.language} {spec.version}" for spec in self.runtimes]
        lines += [f"runtime not offered: {language}: {reason}" for language, reason in self.failed_selftest]
        lines += [f"cleaned up after a dead worker: {path}" for path in self.cleaned_up]
        return lines


def hook_dir(work_root: str) -> str:
    # Beside the work root too: a path every jail's user namespace can search.
    return f"{work_root}.hooks"


def lease_dir(work_root: str) -> str:
    # Beside the work root, not in it: preparing may mount a tmpfs over the work root.
    return f"{work_root}.ids"
