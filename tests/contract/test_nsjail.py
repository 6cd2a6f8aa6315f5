"""The Sandbox contract bound to NsJailSandbox: real jails on this host (root, cgroups)."""

from __future__ import annotations

import pytest

from corral_contract.sandbox import SandboxContract
from corral_core.ports import Sandbox
from corral_testbed.nsjail_host import nsjail_sandbox
from corral_testbed.time_scale import TIME_SCALE, TimeScaledSandbox


class TestNsJailSandbox(SandboxContract):
    @pytest.fixture
    def sandbox(self) -> Sandbox:
        sandbox = nsjail_sandbox()
        # A slow test host (CORRAL_TEST_TIME_SCALE, see tests/vm) stretches the time limits.
        return sandbox if TIME_SCALE == 1 else TimeScaledSandbox(sandbox)
