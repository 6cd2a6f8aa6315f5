-- GCRA: one request against a key's rate kept in `rate` (its theoretical arrival time, µs)
-- -> {allowed, limit, window (s), remaining, reset (µs), retry after (µs)}
-- GCRA rather than a token bucket: one value, read and written by one script, no refill loop.
local function gcra(rate, limit, window, now)
  local window_us = window * 1000000
  local interval = window_us / limit
  local tat = math.max(tonumber(redis.call('GET', rate) or '0'), now)
  local next_tat = tat + interval
  if next_tat - now > window_us then
    return {0, limit, window, 0, micros(tat - now), micros(next_tat - now - window_us)}
  end
  redis.call('SET', rate, micros(next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
  return {1, limit, window, math.floor((window_us - (next_tat - now)) / interval), micros(next_tat - now), '0'}
end
