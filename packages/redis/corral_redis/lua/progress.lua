-- A job's changing fields come as one ARGV value per PROGRESS field from `first` on, in
-- PROGRESS order (records.progress_fields); '' is unset.
--#include progress_fields

local function write_progress(job, first)
  local set, unset = {}, {}
  for i, name in ipairs(PROGRESS) do
    local value = ARGV[first + i - 1]
    if value == '' then
      table.insert(unset, name)
    else
      table.insert(set, name)
      table.insert(set, value)
    end
  end
  if #unset > 0 then redis.call('HDEL', job, unpack(unset)) end
  redis.call('HSET', job, unpack(set))
end

local function holds_progress(job, first)
  local stored = redis.call('HMGET', job, unpack(PROGRESS))
  for i = 1, #PROGRESS do
    if (stored[i] or '') ~= ARGV[first + i - 1] then return false end
  end
  return true
end
