-- KEYS: job, leases
-- ARGV: job id, token, lease (ms)
-- Run twice, it only moves the same lease's deadline again.
--#include statuses
--#include clock

local state = redis.call('HMGET', KEYS[1], 'status', 'fence')
if state[1] ~= RUNNING or state[2] ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[2], micros(now_us() + tonumber(ARGV[3]) * 1000), ARGV[1])
return 1
