# Everyday commands. Pants does the work; ./pants bootstraps it on first use.
PANTS ?= ./pants

# mypy runs once per resolve and refuses two files with one module name. Every package's tests/
# directory is the module `tests` under its source root (packages/<name>), so two conftest.py or
# two test_config.py would clash in one run: type-check the library code together, and each
# source root's tests on their own.
LIBRARY_DIRS := $(wildcard packages/*/corral_*) tests/contract tests/testbed bench nsjail
TEST_DIRS := $(wildcard packages/*/tests) tests/testbed/tests tests/integration

.PHONY: settings-tables test test-host unit deps check lint typecheck fix package bench lockfile tailor up cli

## test: the architecture rules, then every test: unit, contract and integration on this host
## (each file in its own process), then the sandbox's suites on cgroup v2 in a VM (test-cgroup2)
test: test-host test-cgroup2

## test-host: the architecture rules, then every test on this host (no VM)
test-host: deps
	$(PANTS) test ::

## unit: the fast tier, the test files tagged "unit" in their BUILD files: no root, no NsJail,
## no Redis (core, settings, the HTTP API and worker on in-memory adapters, the sandbox's pure
## parts, the contract suites bound to the in-memory adapters)
unit:
	$(PANTS) --tag=unit test ::

## deps: every Python file has a BUILD target (else its tests would silently not run), every
## import resolves to a target, and no import crosses the __dependencies_rules__ in the BUILD
## files (Pants 2.17's `lint` does not check those; resolving dependencies does)
deps:
	$(PANTS) tailor --check ::
	$(PANTS) dependencies :: >/dev/null

## check: deps, then lint (ruff) and type-check (mypy)
check: deps lint typecheck

lint:
	$(PANTS) lint ::

typecheck:
	$(PANTS) check $(addsuffix ::,$(LIBRARY_DIRS))
	@set -e; for dir in $(TEST_DIRS); do $(PANTS) check "$$dir::"; done

## fix: apply ruff's fixes
fix:
	$(PANTS) fix ::

## package: build dist/packages.api/corral-api.pex and dist/packages.worker/corral-worker.pex,
## the wheels dist/corral_core-*.whl and dist/corral_contract-*.whl (docs/adapters.md),
## and the client: dist/corral_client-*.whl and dist/packages.client/corral.pex
package:
	$(PANTS) package ::

## bench: build the PEX files, then run each benchmark against them. (Pants 2.17's `run` of a
## source file fails to find the whole-lockfile PEX, hence the flag.)
BENCHES := bench/testcases.py bench/queue_throughput.py bench/sandbox_latency.py bench/http_latency.py bench/longpoll_fanout.py bench/auth_overhead.py bench/multihost_throughput.py bench/runtimes.py bench/cluster_drain.py bench/warm.py bench/live_output.py
bench: package
	@set -e; for script in $(BENCHES); do \
		$(PANTS) --no-python-run-against-entire-lockfile run "$$script"; done

## lockfile: re-resolve 3rdparty/python/requirements.txt into default.lock
lockfile:
	$(PANTS) generate-lockfiles

## settings-tables: rewrite the generated settings tables in docs/configuration.md from the settings Structs
settings-tables:
	scripts/settings-tables.sh

## tailor: add BUILD targets for new Python files
tailor:
	$(PANTS) tailor ::

## test-cgroup2: the sandbox's contract, attack, ordinary and host suites on a cgroup v2 host with the
## x32 ABI on: Debian 12's own kernel in a VM under emulation (tests/vm/run.sh; as root, it
## installs qemu-system-x86, busybox-static and cpio from Debian if missing)
.PHONY: test-cgroup2
test-cgroup2:
	tests/vm/run.sh test

## cli: build the `corral` command line, dist/packages.client/corral.pex (docs/api.md: The corral
## command line)
cli:
	$(PANTS) package packages/client:corral

## up: build the PEX files, start Redis and the API's and the worker's supervisors (each restarted
## if it dies), run a first job, serve until Ctrl-C (or SIGTERM to scripts/up.sh), then stop
## everything it started
up:
	scripts/up.sh
