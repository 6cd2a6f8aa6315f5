-- KEYS: job, processing, leases, reserved
-- ARGV: job id, token, channel, ttl (ms), if_expired ('1' or ''), then the progress values
-- Writes a final state under the job's current lease. With if_expired, only if that lease has
-- run out: that is recovery failing a job whose worker is lost, which a last-moment renewal
-- must still be able to prevent.
--#include statuses
--#include clock
--#include progress
--#include announcement
--#include publish

local job, processing, leases = KEYS[1], KEYS[2], KEYS[3]
local state = redis.call('HMGET', job, 'status', 'fence')
if state[2] ~= ARGV[2] then return 0 end
if state[1] ~= RUNNING then
  -- A finish re-sent after its reply was lost finds exactly what it wrote: it was accepted.
  if holds_progress(job, 6) then return 1 end
  return 0
end
if ARGV[5] ~= '' then
  local deadline = redis.call('ZSCORE', leases, ARGV[1])
  if not deadline or tonumber(deadline) > now_us() then return 0 end
end
write_progress(job, 6)
-- The request's bulk goes (the worker is done with it) and its result's reserve comes back.
local head = redis.call('HGET', job, 'head')
if head then redis.call('HSET', job, 'spec', head) end
local reserve = redis.call('HGET', job, 'reserve')
if reserve then redis.call('DECRBY', KEYS[4], reserve) end
-- The owner's booking (corral_redis.apikeys): no longer unfinished, its bytes held until expiry.
local usage = redis.call('HGET', job, 'usage')
if usage then redis.call('ZADD', usage, 'XX', micros(now_us() + tonumber(ARGV[4]) * 1000), ARGV[1]) end
-- `worker` stays: who ran the final attempt, for operators and the fault tests.
redis.call('HDEL', job, 'reserve')
redis.call('LREM', processing, 0, ARGV[1])
redis.call('ZREM', leases, ARGV[1])
redis.call('PEXPIRE', job, ARGV[4])
publish(ARGV[3], announcement(job, ARGV[1]))
return 1
