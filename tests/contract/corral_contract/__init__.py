"""Contract suites: one per port, written against the port alone.

An adapter proves it implements a port by binding the port's suite: subclass it in a test
module and provide the fixture the suite asks for. Corral binds every suite to its in-memory
and its real adapters (see tests/contract/test_*.py); an outside author does the same:

    from corral_contract.queue import JobQueueContract, QueueHarness

    class TestMyQueue(JobQueueContract):
        @pytest.fixture
        async def harness(self, clock):
            yield QueueHarness(queue=..., store=..., clock=clock)

The suites need pytest and pytest-asyncio.
"""
