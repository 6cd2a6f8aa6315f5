-- KEYS: deliveries. ARGV: lease (ms), most
-- -> {claim, {job id, ...}}: the deliveries due now, each moved to `claim` (now + lease, µs on
-- Redis' clock), which is both their lease and their fence: a caller that dies holding them
-- lets them come due again then, and SETTLE refuses a caller whose claim was taken over.
-- Run twice, the second run finds them leased and takes nothing.
--#include clock

local now = now_us()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', micros(now), 'LIMIT', 0, tonumber(ARGV[2]))
local claim = micros(now + tonumber(ARGV[1]) * 1000)
for _, id in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', claim, id) end
return {claim, due}
