#!/usr/bin/env bash
# Bring Corral up on this machine: Redis (append-only, data under var/), the API and
# CORRAL_WORKERS worker processes, all from the PEX files Pants builds. Runs one job to show
# it works, then serves until Ctrl-C or SIGTERM, and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${CORRAL_PORT:-8000}
workers=${CORRAL_WORKERS:-2}
redis_port=${CORRAL_REDIS_PORT:-6390}

scripts/install-system-deps.sh
./pants package packages/api:corral-api packages/worker:corral-worker

pids=()
stop() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    echo "stopping Corral (${#pids[@]} processes)..."
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p var/log
if [ -z "${CORRAL_REDIS_URL:-}" ]; then
  mkdir -p var/redis
  # appendonly + appendfsync always: an accepted job survives a crash of Redis or of the
  # machine; noeviction: Redis never drops a queue key to make room. See README.
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$PWD/var/redis" \
    --appendonly yes --appendfsync always --maxmemory-policy noeviction \
    --save '' --daemonize no --logfile "$PWD/var/log/redis.log" &
  pids+=($!)
  export CORRAL_REDIS_URL="redis://127.0.0.1:$redis_port/0"
  for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
fi

CORRAL_PORT=$port dist/packages.api/corral-api.pex serve >var/log/api.log 2>&1 &
pids+=($!)
for i in $(seq "$workers"); do
  dist/packages.worker/corral-worker.pex run >"var/log/worker-$i.log" 2>&1 &
  pids+=($!)
done

ready=""
for _ in $(seq 300); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=yes; break; fi
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "a Corral process exited during start-up; see var/log/:" >&2
      tail -n 20 var/log/*.log >&2
      exit 1
    fi
  done
  sleep 0.1
done
[ -n "$ready" ] || { echo "Corral did not become ready; see var/log/" >&2; exit 1; }

echo "Corral is up: API on http://127.0.0.1:$port ($workers workers, Redis at $CORRAL_REDIS_URL)."
echo "A first job, print('hello from the sandbox'):"
curl -fsS -X POST "http://127.0.0.1:$port/execute?wait=10" \
  -H 'content-type: application/json' -d '{"code": "print(\"hello from the sandbox\")"}'
echo
cat <<TXT

Submit your own:
  curl -s -X POST 'http://127.0.0.1:$port/execute?wait=10' -H 'content-type: application/json' \\
       -d '{"code": "print(1)"}'
  curl -s -X POST http://127.0.0.1:$port/execute -H 'content-type: application/json' \\
       -d '{"code": "import time; time.sleep(1)"}'
  curl -s 'http://127.0.0.1:$port/jobs/JOB_ID?wait=10'
API docs: http://127.0.0.1:$port/schema/swagger   Logs: var/log/   Stop: Ctrl-C
TXT
wait -n "${pids[@]}" || true
echo "a Corral process exited; stopping the rest" >&2
exit 1
