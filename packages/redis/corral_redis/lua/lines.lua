-- Jobs wait in lines per language (`pending:<language>`, docs/redis-keys.md), each with a LIST
-- of wake-up tokens beside it (`<line>:wake`, one per job put in line) that idle workers BLPOP
-- on. A job put in line notes when (`queued`: microseconds since the epoch, a space, the time
-- as its JSON), for the claim that waited for it (start.lua).
-- A job remembers its language's line in its hash (`line`).
-- A job with an owner waits in its owner's line of that language (`own`, QueueKeys.owner_line);
-- one without waits in the language's line itself. `<line>:turns` lists the language's lines
-- that have jobs waiting, owners' and its own, each once, the next one to serve on the left.
local function in_turn(line, own)
  local turns = line .. ':turns'
  if not redis.call('LPOS', turns, own) then redis.call('RPUSH', turns, own) end
end

local function put_back(job, id, at_head, queued)
  redis.call('HSET', job, 'queued', queued)
  local line = redis.call('HGET', job, 'line')
  local own = redis.call('HGET', job, 'own') or line
  if at_head then redis.call('LPUSH', own, id) else redis.call('RPUSH', own, id) end
  in_turn(line, own)
  redis.call('RPUSH', line .. ':wake', 1)
end

-- The jobs waiting in a language: in its own line and in its owners'.
local function waiting(line)
  local count = redis.call('LLEN', line)
  for _, own in ipairs(redis.call('LRANGE', line .. ':turns', 0, -1)) do
    if own ~= line then count = count + redis.call('LLEN', own) end
  end
  return count
end
