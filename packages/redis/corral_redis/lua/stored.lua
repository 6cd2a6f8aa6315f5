-- What a finished job really holds, in bytes of content (not Redis' own overhead): its record's
-- fields and values, its returned files, its events (when it has any: the output its record
-- holds, once more, and a few bytes per entry) and its input. The status and result events the worker appends
-- just after the finish are within STORED_SLACK. Its owner's booking shrinks to this
-- (shrink_booking) in the step that stores the job's end.
local EVENT_ENTRY_BYTES = 32
local STORED_SLACK = 256

local function hash_bytes(key)
  local total = 0
  for _, field in ipairs(redis.call('HKEYS', key)) do
    total = total + #field + redis.call('HSTRLEN', key, field)
  end
  return total
end

local function stored_bytes(job)
  local total = STORED_SLACK + hash_bytes(job) + hash_bytes(job .. ':files')
  local events = redis.call('XLEN', job .. ':events')
  if events > 0 then
    total = total + EVENT_ENTRY_BYTES * events
    for _, name in ipairs({'stdout', 'stderr', 'compile_output'}) do
      total = total + redis.call('HSTRLEN', job, name)
    end
  end
  return total + tonumber(redis.call('HGET', job .. ':input:sent', 'bytes') or '0')
end

-- A booking only shrinks: run twice, the second run finds nothing to take back.
local function shrink_booking(sizes, id, stored)
  local booked = redis.call('HGET', sizes, id)
  if not booked or stored >= tonumber(booked) then return end
  redis.call('HSET', sizes, id, micros(stored))
  redis.call('HINCRBY', sizes, ':total', micros(stored - tonumber(booked)))
end
