-- KEYS: deliveries, job. ARGV: job id, claim, the callback's state (JSON), next due time (µs,
-- or '' when the delivery is over: delivered or failed)
-- -> 1 written, 0 the claim was lost (another caller holds the delivery now)
-- The state is written only on a record that still exists: HSET would make one without a TTL.
-- Run twice, the second run finds the claim moved on and writes nothing (0).
--#include clock

local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or micros(tonumber(score)) ~= ARGV[2] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'callback', ARGV[3]) end
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], 'XX', ARGV[4], ARGV[1])
end
return 1
