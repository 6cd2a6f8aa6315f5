"""The Sandbox contract bound to NsJailSandbox: real jails on this host (root, cgroups)."""

from __future__ import annotations

import pytest

from corral_contract.sandbox import SandboxContract
from corral_sandbox import NsJailSandbox
from corral_testbed.nsjail_host import nsjail_sandbox


class TestNsJailSandbox(SandboxContract):
    @pytest.fixture
    def sandbox(self) -> NsJailSandbox:
        return nsjail_sandbox()
