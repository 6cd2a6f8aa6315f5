-- KEYS: workers ZSET, worker info HASH
-- ARGV: worker id, ttl (ms), encoded WorkerInfo
--#include prune_workers

redis.call('ZADD', KEYS[1], micros(now_us() + tonumber(ARGV[2]) * 1000), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
prune()
return 1
