-- KEYS: duty hash. ARGV: worker id, ttl (ms) -> 1 when the worker holds the duty
--#include clock

local now = now_us()
local holder = redis.call('HGET', KEYS[1], 'holder')
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires') or '0')
if holder and holder ~= ARGV[1] and expires > now then
  return 0
end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'expires', micros(now + tonumber(ARGV[2]) * 1000))
return 1
