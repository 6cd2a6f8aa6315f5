-- Drops the bookings (entry and bytes) of a key's records expired by `now`, at most 1000 a
-- call: so the bytes of expired records come back, at their shrunk size, by the next booking.
local function drop_lapsed(ledger, sizes, now)
  local lapsed = redis.call('ZRANGEBYSCORE', ledger, '-inf', micros(now), 'LIMIT', 0, 1000)
  if #lapsed == 0 then return end
  local freed = 0
  for _, size in ipairs(redis.call('HMGET', sizes, unpack(lapsed))) do freed = freed + tonumber(size or '0') end
  redis.call('HINCRBY', sizes, ':total', -freed)
  redis.call('HDEL', sizes, unpack(lapsed))
  redis.call('ZREM', ledger, unpack(lapsed))
end
