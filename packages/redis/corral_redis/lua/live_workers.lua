-- KEYS: workers ZSET, worker info HASH -> encoded WorkerInfo of every live worker
--#include prune_workers

prune()
local live = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  table.insert(live, redis.call('HGET', KEYS[2], id))
end
return live
