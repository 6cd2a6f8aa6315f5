-- KEYS: processing, leases
-- ARGV: job key prefix, max attempts, batch size, when jobs are put back in line (`queued`)
-- -> {requeued ids, {{fence, record fields, id}, ...} of jobs out of attempts, expired count}
-- Jobs out of attempts are only reported: core fails them (corral_core.job.fail with
-- worker_lost), and the caller stores each with FINISH, fenced and only if its lease is still
-- expired. Run twice, the second run finds nothing more to do.
-- It touches job hashes it was not given in KEYS (it finds their ids in the leases ZSET): sound
-- on a Cluster because every key shares the prefix's hash tag, so they live in the slot of KEYS.
--#include statuses
--#include clock
--#include lines
--#include record_fields

local processing, leases = KEYS[1], KEYS[2]
local prefix, now, max_attempts = ARGV[1], micros(now_us()), tonumber(ARGV[2])
local requeued, exhausted = {}, {}
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(expired) do
  local job = prefix .. id
  local state = redis.call('HMGET', job, 'status', 'attempts', 'fence')
  if state[1] ~= RUNNING then
    redis.call('ZREM', leases, id)
  elseif tonumber(state[2]) >= max_attempts then
    table.insert(exhausted, {state[3], redis.call('HMGET', job, unpack(FIELDS)), id})
  else
    redis.call('HSET', job, 'status', PENDING)
    redis.call('HDEL', job, 'started_at', 'worker')
    redis.call('ZREM', leases, id)
    redis.call('LREM', processing, 0, id)
    put_back(job, id, false, ARGV[4])
    table.insert(requeued, id)
  end
end
-- An id in processing without a lease was taken by a BLMOVE whose worker died before START.
-- It never ran: back to the front of the line, no attempt counted.
for _, id in ipairs(redis.call('LRANGE', processing, 0, -1)) do
  if not redis.call('ZSCORE', leases, id) then
    local status = redis.call('HGET', prefix .. id, 'status')
    if status == RUNNING then
      -- Running without a lease breaks the scripts' invariant; expire it so it is recovered.
      redis.call('ZADD', leases, now, id)
    else
      redis.call('LREM', processing, 0, id)
      if status == PENDING then put_back(prefix .. id, id, true, ARGV[4]) end
    end
  end
end
return {requeued, exhausted, #expired}
