-- KEYS: job, processing, leases, reserved, and the job's files HASH (needed only when it
-- returned files), then the deliveries ZSET for a job with a callback (callback.lua)
-- ARGV: job id, token, channel, ttl (ms), if_expired ('1' or ''), then the progress values, then
-- each returned file's name and content (records.file_fields)
-- Writes a final state under the job's current lease. With if_expired, only if that lease has
-- run out: that is recovery failing a job whose worker is lost, which a last-moment renewal
-- must still be able to prevent.
-- The files' contents go into their own hash, not the record (whose result lists them without
-- content), written in this same step and given the record's TTL just before the record is
-- (retire), so that no content outlives the job that lists it.
--#include statuses
--#include clock
--#include progress
--#include announcement
--#include retire
--#include publish
--#include callback

local job, processing, leases = KEYS[1], KEYS[2], KEYS[3]
local state = redis.call('HMGET', job, 'status', 'fence')
if state[2] ~= ARGV[2] then return 0 end
if state[1] ~= RUNNING then
  -- A finish re-sent after its reply was lost finds exactly what it wrote: it was accepted.
  -- Its files were written whole by that first run, so this one writes nothing again.
  if holds_progress(job, 6) then return 1 end
  return 0
end
if ARGV[5] ~= '' then
  local deadline = redis.call('ZSCORE', leases, ARGV[1])
  if not deadline or tonumber(deadline) > now_us() then return 0 end
end
write_progress(job, 6)
local first_file = 6 + #PROGRESS
if #ARGV > first_file then
  local files = KEYS[5]
  -- One HSET per file: a job may return more files than Lua's unpack can spread.
  for i = first_file, #ARGV, 2 do redis.call('HSET', files, ARGV[i], ARGV[i + 1]) end
  redis.call('PEXPIRE', files, ARGV[4])
end
retire(job, ARGV[1], KEYS[4], processing, leases, ARGV[4])
queue_callback(KEYS[6], ARGV[1])
publish(ARGV[3], announcement(job, ARGV[1]))
return 1
