-- KEYS: ledger ZSET, bytes HASH. ARGV: job id. Only a booking still unfinished is taken back.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score ~= 'inf' then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], ':total', -tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0'))
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
