--#include lapse
-- KEYS: ledger ZSET, bytes HASH. ARGV: job id, size, max unfinished, max bytes; `now` (µs)
-- -> 'ok', or the quota the booking would break
-- The bytes HASH holds a job's booking exactly while the ledger does (both are written and
-- dropped together; FINISH moves the ledger's score and shrinks the bytes to what the job stored), so one HMGET finds both whether the
-- job is booked and the key's total.
local ledger, sizes, id = KEYS[1], KEYS[2], ARGV[1]
drop_lapsed(ledger, sizes, now)
local booked = redis.call('HMGET', sizes, id, ':total')
-- A booking re-sent after its reply was lost finds itself: it was made.
if booked[1] then return 'ok' end
if redis.call('ZCOUNT', ledger, '+inf', '+inf') >= tonumber(ARGV[3]) then return 'unfinished jobs' end
local total = tonumber(booked[2] or '0') + tonumber(ARGV[2])
if total > tonumber(ARGV[4]) then return 'stored bytes' end
redis.call('ZADD', ledger, '+inf', id)
redis.call('HSET', sizes, id, ARGV[2], ':total', micros(total))
return 'ok'
