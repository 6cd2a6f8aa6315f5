-- The job leaves the queue in its final state: its request's bulk goes (no worker needs it
-- now), its result's reserve comes back, its owner's booking (corral_redis.apikeys) is no
-- longer unfinished, holds its bytes until the record expires, ttl (ms) from now, and shrinks
-- from the most the job could grow to what it really stored (stored.lua). That size is kept in
-- the record's `stored`, for a ledger in another shard's slot (SETTLE).
-- `worker` stays: who ran the final attempt, for operators and the fault tests.
--#include stored

local function retire(job, id, reserved, processing, leases, ttl)
  local head = redis.call('HGET', job, 'head')
  if head then redis.call('HSET', job, 'spec', head) end
  local reserve = redis.call('HGET', job, 'reserve')
  if reserve then redis.call('DECRBY', reserved, reserve) end
  redis.call('HDEL', job, 'reserve')
  local stored = stored_bytes(job)
  redis.call('HSET', job, 'stored', micros(stored))
  local usage = redis.call('HGET', job, 'usage')
  if usage and usage ~= '' then
    redis.call('ZADD', usage, 'XX', micros(now_us() + tonumber(ttl) * 1000), id)
    shrink_booking(usage .. ':bytes', id, stored)
  end
  redis.call('LREM', processing, 0, id)
  redis.call('ZREM', leases, id)
  redis.call('PEXPIRE', job, ttl)
end
