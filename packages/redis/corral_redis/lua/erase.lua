-- KEYS: job, its files HASH, events STREAM, input STREAM, input's sent HASH, deliveries ZSET
-- ARGV: job id
-- -> 1 erased, 0 unknown (or already erased) or not finished: nothing changed
-- A finished job removed before its TTL (Judge0's DELETE). What its owner booked lapses now in
-- the ledger, as it would have at the record's expiry (booking.lua frees it at the next book);
-- a ledger in another shard's slot is settled by the caller (shards.py).
--#include statuses
--#include clock

local job = KEYS[1]
local state = redis.call('HMGET', job, 'status', 'usage')
if not state[1] or state[1] == PENDING or state[1] == RUNNING then return 0 end
if state[2] and state[2] ~= '' then redis.call('ZADD', state[2], 'XX', micros(now_us()), ARGV[1]) end
redis.call('DEL', job, KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('ZREM', KEYS[6], ARGV[1])
return 1
