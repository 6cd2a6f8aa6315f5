"""A run's cgroups are removed without a pause once nothing runs in them, a forked jail's own
cgroups under them included (RunCgroups.adopt). On the host's real cgroups."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from corral_sandbox import runname
from corral_sandbox.jail import run_cgroups
from corral_testbed.nsjail_host import nsjail_host


def test_the_cgroups_of_a_forked_jail_that_ended_go_without_a_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    jail_host = nsjail_host().jail_host()
    run = runname.new_run()
    cgroups = run_cgroups(jail_host.cgroups, run, 64 << 20, jail_host.cpu_cores_per_job)
    runs = [os.path.join(parent, runname.cgroup_name(run)) for parent in jail_host.cgroups.parent_dirs()]
    process = subprocess.Popen(["/bin/sleep", "60"])
    try:
        cgroups.adopt(process.pid, 128 << 20, 16)
    finally:
        process.kill()
        process.wait()
    jails = [os.path.join(directory, f"NSJAIL.{process.pid}") for directory in runs]
    assert any(os.path.isdir(jail) for jail in jails), "adopt made the jail a cgroup of its own under the run's"
    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)  # cgroups/files.py pauses with time.sleep
    cgroups.remove()
    assert pauses == [], "a cgroup held only by the cgroups under it was tried again only after a pause"
    assert [directory for directory in runs + jails if os.path.exists(directory)] == []
