-- KEYS: job, processing, leases, reserved
-- ARGV: job id, finished_at (JSON), finished channel, cancelled channel, ttl (ms)
-- -> 1 cancelled (or this same cancel, re-sent), 0 unknown or already finished
-- A pending job's id stays in its line: START drops an id whose job is no longer PENDING, so
-- this script need not know which line holds it. The fence moves on, so the worker of a running
-- job has its renewals and result refused; the cancelled channel tells it to stop the run now.
-- What the job booked is given back as FINISH gives it back (retire.lua).
--#include statuses
--#include clock
--#include retire
--#include publish

local job, processing, leases = KEYS[1], KEYS[2], KEYS[3]
local state = redis.call('HMGET', job, 'status', 'finished_at')
if state[1] == CANCELLED and state[2] == ARGV[2] then return 1 end
if state[1] ~= PENDING and state[1] ~= RUNNING then return 0 end
redis.call('HINCRBY', job, 'fence', 1)
redis.call('HSET', job, 'status', CANCELLED, 'finished_at', ARGV[2])
retire(job, ARGV[1], KEYS[4], processing, leases, ARGV[5])
publish(ARGV[3], ARGV[1])
publish(ARGV[4], ARGV[1])
return 1
