-- KEYS: job, processing, leases, reserved
-- ARGV: job id, finished_at (JSON), finished channel, cancelled channel, ttl (ms)
-- -> 1 cancelled (or this same cancel, re-sent), 0 unknown or already finished
-- A pending job's id stays in its line: START drops an id whose job is no longer PENDING, so
-- this script need not know which line holds it. The fence moves on, so the worker of a running
-- job has its renewals and result refused; the cancelled channel tells it to stop the run now.
-- What the job booked is given back as FINISH gives it back.
--#include statuses
--#include clock
--#include publish

local job, processing, leases = KEYS[1], KEYS[2], KEYS[3]
local state = redis.call('HMGET', job, 'status', 'finished_at')
if state[1] == CANCELLED and state[2] == ARGV[2] then return 1 end
if state[1] ~= PENDING and state[1] ~= RUNNING then return 0 end
redis.call('HINCRBY', job, 'fence', 1)
redis.call('HSET', job, 'status', CANCELLED, 'finished_at', ARGV[2])
local head = redis.call('HGET', job, 'head')
if head then redis.call('HSET', job, 'spec', head) end
local reserve = redis.call('HGET', job, 'reserve')
if reserve then redis.call('DECRBY', KEYS[4], reserve) end
local usage = redis.call('HGET', job, 'usage')
if usage then redis.call('ZADD', usage, 'XX', micros(now_us() + tonumber(ARGV[5]) * 1000), ARGV[1]) end
redis.call('HDEL', job, 'reserve')
redis.call('LREM', processing, 0, ARGV[1])
redis.call('ZREM', leases, ARGV[1])
redis.call('PEXPIRE', job, ARGV[5])
publish(ARGV[3], ARGV[1])
publish(ARGV[4], ARGV[1])
return 1
