-- KEYS: the owner's ledger ZSET, its bytes HASH. ARGV: job id, ttl (ms), the bytes the job
-- stored (its record's `stored`; '' when unknown). What FINISH does for an unsharded job, for a
-- job whose owner's ledger lives in another shard's slot. Run twice, it changes nothing more.
--#include clock
--#include stored

redis.call('ZADD', KEYS[1], 'XX', micros(now_us() + tonumber(ARGV[2]) * 1000), ARGV[1])
if ARGV[3] and ARGV[3] ~= '' then shrink_booking(KEYS[2], ARGV[1], tonumber(ARGV[3])) end
return 1
