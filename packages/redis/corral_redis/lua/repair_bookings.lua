-- KEYS: ledger ZSET, bytes HASH. ARGV: the job keys' prefix
-- -> {':total' before, ':total' after}
-- Recomputes a key's bookings from its live records, for bookings that drifted (a crash between
-- a sharded finish and its SETTLE, a restore, a hand edit): a booking whose record is gone is
-- dropped; a finished job's is what it stored (stored.lua), with its record's expiry as its
-- score; an unfinished job's stays (or, lost, is its request and reserve again). The total is
-- the sum. Run twice, the second run changes nothing.
--#include statuses
--#include clock
--#include stored

local ledger, sizes, prefix = KEYS[1], KEYS[2], ARGV[1]
local before = tonumber(redis.call('HGET', sizes, ':total') or '0')
local total = 0
local entries = redis.call('ZRANGE', ledger, 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  local id, score = entries[i], entries[i + 1]
  local job = prefix .. id
  local state = redis.call('HMGET', job, 'status', 'reserve')
  local booked = redis.call('HGET', sizes, id)
  if not state[1] then
    redis.call('ZREM', ledger, id)
    redis.call('HDEL', sizes, id)
  else
    local size
    if state[1] == PENDING or state[1] == RUNNING then
      size = tonumber(booked or (redis.call('HSTRLEN', job, 'spec') + tonumber(state[2] or '0')))
    else
      -- What FINISH (or CANCEL) measured, else measured now.
      size = tonumber(redis.call('HGET', job, 'stored') or stored_bytes(job))
      if booked then size = math.min(size, tonumber(booked)) end
      local ttl = redis.call('PTTL', job)
      if score == 'inf' and ttl > 0 then redis.call('ZADD', ledger, 'XX', micros(now_us() + ttl * 1000), id) end
    end
    redis.call('HSET', sizes, id, micros(size))
    total = total + size
  end
end
redis.call('HSET', sizes, ':total', micros(total))
return {micros(before), micros(total)}
