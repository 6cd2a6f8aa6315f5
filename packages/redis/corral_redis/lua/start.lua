-- KEYS: processing, leases, then the lines to take from, in the order to try them
-- ARGV: job key prefix, lease (ms), started_at (JSON), worker id, job id or '', token taken,
-- and '' or the microseconds since the epoch of that started_at when the claim sent it before it
-- blocked (a BLPOP in the same pipeline, queue.py): the job then started when the later of that
-- and its `queued` says, since a claim that waits is woken as a job is put in line.
-- With no job id, takes a job from the first language's line that has one (LMOVE), so a claim
-- with work waiting is one round trip, and one of that line's wake-up tokens with it, unless the
-- claim already took one (ARGV[6] = '1': it woke up on it). Within a language, the owners with
-- jobs waiting take turns (round robin over `<line>:turns`), so one owner's thousands of jobs
-- delay another's first job by at most one job per owner waiting; each owner's jobs go oldest
-- first. With a job id (a claim that moved the id itself, with a BLMOVE), recovery may have put
-- it back in line since, or another worker may have started it.
-- -> {token, record fields, job id} or nil
-- Run twice (its reply lost), it leaves one job leased to nobody, which recovery re-queues (one
-- attempt counted) when the lease runs out; a BLMOVE run twice leaves an id in `processing`
-- that recovery puts back uncounted.
--#include statuses
--#include clock
--#include record_fields

local processing, leases = KEYS[1], KEYS[2]

-- The oldest pending job of one line, moved to processing.
local function take(line)
  while true do
    local id = redis.call('LMOVE', line, processing, 'LEFT', 'RIGHT')
    if not id then return nil end
    if redis.call('HGET', ARGV[1] .. id, 'status') == PENDING then return id end
    -- An id whose record is gone (or not pending) has nothing to run: drop it.
    redis.call('LREM', processing, -1, id)
  end
end

-- A job of the language's next owner in turn; that owner goes to the back of the turns.
local function take_in_turn(line)
  local turns = line .. ':turns'
  -- Jobs in the language's own line without a turn take one too, so that none waits forever.
  if redis.call('LLEN', line) > 0 and not redis.call('LPOS', turns, line) then
    redis.call('RPUSH', turns, line)
  end
  for _ = 1, redis.call('LLEN', turns) do
    local own = redis.call('LMOVE', turns, turns, 'LEFT', 'RIGHT')
    local id = take(own)
    if redis.call('LLEN', own) == 0 then redis.call('LREM', turns, -1, own) end
    if id then return id end
  end
  return nil
end

local id, job = ARGV[5], nil
if id and id ~= '' then
  job = ARGV[1] .. id
  if not redis.call('LPOS', processing, id) then return nil end
  if redis.call('HGET', job, 'status') ~= PENDING then return nil end
else
  id = nil
  for i = 3, #KEYS do
    id = take_in_turn(KEYS[i])
    if id then
      job = ARGV[1] .. id
      if ARGV[6] ~= '1' then redis.call('LPOP', KEYS[i] .. ':wake') end
      break
    end
  end
  if not id then return nil end
end
local started_at = ARGV[3]
if (ARGV[7] or '') ~= '' then
  local queued_us, queued_at = string.match(redis.call('HGET', job, 'queued') or '', '^(%d+) (.+)$')
  if queued_us and tonumber(queued_us) > tonumber(ARGV[7]) then started_at = queued_at end
end
local token = redis.call('HINCRBY', job, 'fence', 1)
redis.call('HINCRBY', job, 'attempts', 1)
redis.call('HSET', job, 'status', RUNNING, 'started_at', started_at, 'worker', ARGV[4])
redis.call('ZADD', leases, micros(now_us() + tonumber(ARGV[2]) * 1000), id)
return {token, redis.call('HMGET', job, unpack(FIELDS)), id}
