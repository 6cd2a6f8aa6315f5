-- A finished job with a callback joins the line of deliveries (corral_redis.callbacks), due at
-- once, in the same step that stores its final state: no crash can land between the two.
-- `deliveries` is nil for a job without a callback. NX: a delivery already in line keeps its time.
local function queue_callback(deliveries, id)
  if deliveries then redis.call('ZADD', deliveries, 'NX', micros(now_us()), id) end
end
