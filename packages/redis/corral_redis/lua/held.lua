-- KEYS: ledger ZSET, bytes HASH. -> the bytes the key's jobs hold now, once the bookings of
-- expired records are dropped (as the next booking drops them).
--#include clock
--#include lapse
drop_lapsed(KEYS[1], KEYS[2], now_us())
return tonumber(redis.call('HGET', KEYS[2], ':total') or '0')
