-- KEYS: the job's events stream
-- ARGV: job id, appended channel, ttl (ms), most entries kept, token, then per event its kind and data
-- -> the id of the last entry added (or of this same append's last, re-sent)
-- Run twice (a re-sent append), it adds nothing: its last entry carries the call's token.
-- The stream is trimmed to about the most entries kept (MAXLEN ~, whole macro nodes, cheap)
-- and expires `ttl` after its last append, as the record does after the job finishes.
--#include resent
--#include publish

local events = KEYS[1]
if resent(events, ARGV[5]) then
  return redis.call('XREVRANGE', events, '+', '-', 'COUNT', 1)[1][1]
end
local id
for i = 6, #ARGV, 2 do
  if i + 1 == #ARGV then
    id = redis.call('XADD', events, 'MAXLEN', '~', ARGV[4], '*', 'k', ARGV[i], 'd', ARGV[i + 1], 'a', ARGV[5])
  else
    id = redis.call('XADD', events, 'MAXLEN', '~', ARGV[4], '*', 'k', ARGV[i], 'd', ARGV[i + 1])
  end
end
redis.call('PEXPIRE', events, ARGV[3])
publish(ARGV[2], ARGV[1])
return id
