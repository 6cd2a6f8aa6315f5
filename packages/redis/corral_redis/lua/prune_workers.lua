-- KEYS: workers ZSET, worker info HASH
--#include clock

local function prune()
  local now = micros(now_us())
  local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
  for _, id in ipairs(stale) do redis.call('HDEL', KEYS[2], id) end
  if #stale > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) end
end
