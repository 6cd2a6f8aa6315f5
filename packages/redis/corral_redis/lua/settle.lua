-- KEYS: the owner's ledger ZSET. ARGV: job id, ttl (ms). What FINISH does for an unsharded job,
-- for a job whose owner's ledger lives in another shard's slot.
--#include clock

redis.call('ZADD', KEYS[1], 'XX', micros(now_us() + tonumber(ARGV[2]) * 1000), ARGV[1])
return 1
