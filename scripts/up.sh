#!/usr/bin/env bash
# Bring Corral up on this machine: Redis (append-only, data under var/), the API's supervisor
# with CORRAL_API_PROCESSES processes and the worker's with CORRAL_WORKERS, all from the PEX
# files Pants builds. Runs one job to show it works, then serves until Ctrl-C or SIGTERM, and
# stops everything it started.
#
# The supervisors restart a process of theirs that dies; this script restarts a supervisor that
# dies (or Redis), so one dead process never stops the service. A supervisor that gave up on a
# crash loop (exit 70) is not restarted: then everything stops, with the logs.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${CORRAL_PORT:-8000}
workers=${CORRAL_WORKERS:-2}
api_processes=${CORRAL_API_PROCESSES:-2}
redis_port=${CORRAL_REDIS_PORT:-6390}
metrics_port=${CORRAL_METRICS_PORT:-9464}
crash_loop_exit=70

scripts/install-system-deps.sh
./pants package packages/api:corral-api packages/worker:corral-worker

pids=()
stop() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    echo "stopping Corral..."
    # Newest first, one at a time: the worker hands its jobs back while Redis still answers.
    # A keeper passes SIGTERM on to its supervisor and waits for its graceful stop.
    for pid in "${pids[@]}"; do
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    done
  fi
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# keep NAME LOG COMMAND...: run COMMAND, and again after it dies, until this script stops.
keep() {
  local name=$1 log=$2
  shift 2
  (
    child=""
    trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; [ -n "$child" ] && wait "$child"; exit 0' TERM INT
    while true; do
      "$@" >>"$log" 2>&1 &
      child=$!
      status=0
      wait "$child" || status=$?
      child=""
      if [ "$status" -eq "$crash_loop_exit" ]; then
        echo "$name gave up (crash loop); see $log" >&2
        exit "$status"
      fi
      echo "$name exited ($status); starting it again in 1s" >&2
      sleep 1
    done
  ) &
  pids=("$!" "${pids[@]}")
}

mkdir -p var/log
if [ -z "${CORRAL_REDIS_URL:-}" ]; then
  mkdir -p var/redis
  # appendonly + appendfsync always: an accepted job survives a crash of Redis or of the
  # machine; noeviction: Redis never drops a queue key to make room (docs/operations.md).
  keep redis var/log/redis.out redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$PWD/var/redis" \
    --appendonly yes --appendfsync always --maxmemory-policy noeviction \
    --save '' --daemonize no --logfile "$PWD/var/log/redis.log"
  export CORRAL_REDIS_URL="redis://127.0.0.1:$redis_port/0"
  for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
fi

export CORRAL_PORT=$port CORRAL_METRICS_PORT=$metrics_port
keep corral-api var/log/api.log dist/packages.api/corral-api.pex serve --processes "$api_processes"
keep corral-worker var/log/worker.log dist/packages.worker/corral-worker.pex run --processes "$workers"

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

# An API key for the local user, made once and kept in var/api-key (mode 600), unless keys are
# off (CORRAL_AUTH=false). Only its hash is in Redis: the file is the one copy of the key.
auth_header=()
if [ "${CORRAL_AUTH:-true}" != "false" ]; then
  if [ ! -s var/api-key ] || ! curl -fsS -o /dev/null -H "Authorization: Bearer $(cat var/api-key)" \
      "http://127.0.0.1:$port/runtimes" 2>/dev/null; then
    (umask 077; dist/packages.api/corral-api.pex keys create "$(id -un)@$(hostname)" --admin --quiet >var/api-key)
  fi
  export CORRAL_KEY
  CORRAL_KEY=$(cat var/api-key)
  auth_header=(-H "Authorization: Bearer $CORRAL_KEY")
fi

echo "Corral is up: API on http://127.0.0.1:$port ($api_processes processes), $workers worker processes, Redis at $CORRAL_REDIS_URL."
echo "Metrics: http://127.0.0.1:$port/metrics (API), http://127.0.0.1:$metrics_port/metrics (workers)."
echo "A first job, print('hello from the sandbox'):"
curl -fsS -X POST "http://127.0.0.1:$port/execute?wait=10" "${auth_header[@]}" \
  -H 'content-type: application/json' -d '{"code": "print(\"hello from the sandbox\")"}'
echo
if [ ${#auth_header[@]} -gt 0 ]; then
  cat <<TXT

Your API key (an admin key, also in var/api-key; make others with
dist/packages.api/corral-api.pex keys create NAME):
  export CORRAL_KEY=\$(cat var/api-key)
TXT
fi
cat <<TXT

Submit your own:
  curl -s -X POST 'http://127.0.0.1:$port/execute?wait=10' -H "Authorization: Bearer \$CORRAL_KEY" \\
       -H 'content-type: application/json' -d '{"code": "print(1)"}'
  curl -s -X POST http://127.0.0.1:$port/execute -H "Authorization: Bearer \$CORRAL_KEY" \\
       -H 'content-type: application/json' -d '{"code": "import time; time.sleep(1)"}'
  curl -s 'http://127.0.0.1:$port/jobs/JOB_ID?wait=10' -H "Authorization: Bearer \$CORRAL_KEY"
API docs: http://127.0.0.1:$port/schema/swagger   Logs (JSON lines): var/log/   Stop: Ctrl-C
TXT
# A keeper ends only when its supervisor gave up on a crash loop.
status=0
wait -n "${pids[@]}" || status=$?
echo "a Corral supervisor gave up (exit $status); stopping the rest. Logs:" >&2
tail -n 20 var/log/*.log >&2
exit 1
