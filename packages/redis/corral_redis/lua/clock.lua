-- Redis' clock in microseconds, as a string: a Lua number formats with 14 digits only, which
-- would round a score of 16.
local function now_us()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000000 + tonumber(time[2])
end

local function micros(value)
  return string.format('%d', value)
end
