-- A finish's announcement on the `finished` channel: the job's id, then, when it is small, what
-- a client's read would fetch (VIEW_FIELDS, records.view_frame), so that a waiter need not read
-- it back: "<id>\n" and per field "-" (none) or "<length>:<bytes>".
--#include view_fields

local function announcement(job, id)
  local parts, size = {id, '\n'}, 0
  for _, value in ipairs(redis.call('HMGET', job, unpack(VIEW))) do
    if value then
      size = size + #value
      table.insert(parts, #value .. ':')
      table.insert(parts, value)
    else
      table.insert(parts, '-')
    end
  end
  if size > MAX_VIEW then return id end
  return table.concat(parts)
end
