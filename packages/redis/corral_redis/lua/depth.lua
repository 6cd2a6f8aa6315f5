-- KEYS: lines SET -> the number of jobs in line
--#include lines

local pending = 0
for _, line in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  pending = pending + waiting(line)
end
return pending
