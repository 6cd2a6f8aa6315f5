-- KEYS: job, processing, leases
-- ARGV: job id, token, when it is put back in line (its `queued`)
-- Back to the front of its line with the attempt given back (core's requeue(count_attempt=False)).
-- Run twice, the second run answers 0 although the job is back in line.
--#include statuses
--#include lines

local job = KEYS[1]
local state = redis.call('HMGET', job, 'status', 'fence', 'attempts')
if state[1] ~= RUNNING or state[2] ~= ARGV[2] then return 0 end
if tonumber(state[3]) > 0 then redis.call('HINCRBY', job, 'attempts', -1) end
redis.call('HSET', job, 'status', PENDING)
redis.call('HDEL', job, 'started_at', 'worker')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('LREM', KEYS[2], 0, ARGV[1])
put_back(job, ARGV[1], true, ARGV[3])
return 1
