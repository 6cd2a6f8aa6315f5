-- KEYS: job, processing, leases, reserved
-- ARGV: job id, token, channel, ttl (ms), if_expired ('1' or ''), then the progress values
-- Writes a final state under the job's current lease. With if_expired, only if that lease has
-- run out: that is recovery failing a job whose worker is lost, which a last-moment renewal
-- must still be able to prevent.
--#include statuses
--#include clock
--#include progress
--#include announcement
--#include retire
--#include publish

local job, processing, leases = KEYS[1], KEYS[2], KEYS[3]
local state = redis.call('HMGET', job, 'status', 'fence')
if state[2] ~= ARGV[2] then return 0 end
if state[1] ~= RUNNING then
  -- A finish re-sent after its reply was lost finds exactly what it wrote: it was accepted.
  if holds_progress(job, 6) then return 1 end
  return 0
end
if ARGV[5] ~= '' then
  local deadline = redis.call('ZSCORE', leases, ARGV[1])
  if not deadline or tonumber(deadline) > now_us() then return 0 end
end
write_progress(job, 6)
retire(job, ARGV[1], KEYS[4], processing, leases, ARGV[4])
publish(ARGV[3], announcement(job, ARGV[1]))
return 1
