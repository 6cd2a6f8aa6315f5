-- KEYS: job, the language's line, processing, lines SET, reserved, the owner's line in that
-- language (the language's line for a job without an owner)
-- ARGV: max_unfinished, job id, spec, head, reserve, ceiling, the usage ledger of the job's owner
-- ('' for none; corral_redis.apikeys), which FINISH settles, then the progress values, and last
-- the job's `queued` (its created_at)
-- -> 1 accepted, 0 queue full, -1 another job has this id, -2 no room for its bytes
-- The ceiling is in bytes; 0 means 80% of Redis' maxmemory, none when Redis has no maxmemory.
-- Run twice (its reply lost), it finds its own record and answers as the first run did.
--#include progress
--#include lines

local job, line, processing, lines = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local reserved, own = KEYS[5], KEYS[6]
if redis.call('EXISTS', job) == 1 then
  -- A submit re-sent after its reply was lost finds its own record: it was accepted.
  if redis.call('HGET', job, 'spec') == ARGV[3] then return 1 end
  return -1
end
local unfinished = redis.call('LLEN', processing)
for _, other in ipairs(redis.call('SMEMBERS', lines)) do
  unfinished = unfinished + waiting(other)
end
if unfinished >= tonumber(ARGV[1]) then
  return 0
end
local reserve, ceiling = tonumber(ARGV[5]), tonumber(ARGV[6])
local memory = redis.call('INFO', 'memory')
if ceiling == 0 then
  ceiling = math.floor(tonumber(string.match(memory, '\nmaxmemory:(%d+)')) * 0.8)
end
if ceiling > 0 then
  local used = tonumber(string.match(memory, 'used_memory:(%d+)'))
  local held = tonumber(redis.call('GET', reserved) or '0')
  if used + held + #ARGV[3] + #ARGV[4] + reserve > ceiling then return -2 end
end
local fields = {'spec', ARGV[3], 'head', ARGV[4], 'reserve', reserve, 'fence', 0, 'line', line, 'queued', ARGV[#ARGV]}
if own ~= line then table.insert(fields, 'own'); table.insert(fields, own) end
if ARGV[7] ~= '' then table.insert(fields, 'usage'); table.insert(fields, ARGV[7]) end
redis.call('HSET', job, unpack(fields))
redis.call('INCRBY', reserved, reserve)
write_progress(job, 8)
redis.call('SADD', lines, line)
redis.call('RPUSH', own, ARGV[2])
in_turn(line, own)
redis.call('RPUSH', line .. ':wake', 1)
return 1
