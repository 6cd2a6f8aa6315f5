-- KEYS: the key's record. ARGV: rate key prefix, default limit, default window (s)
-- -> nil (no such key), or {id, name, created_at, admin, quotas, then GCRA's answer}
--#include clock
--#include gcra

local record = redis.call('HMGET', KEYS[1], 'id', 'name', 'created_at', 'admin', 'quotas')
if not record[1] then return nil end
local quotas = cjson.decode(record[5] or '{}')
local limit, window = tonumber(ARGV[2]), tonumber(ARGV[3])
if type(quotas.rate_limit) == 'number' then limit = quotas.rate_limit end
if type(quotas.rate_window_s) == 'number' then window = quotas.rate_window_s end
local rate = gcra(ARGV[1] .. record[1], limit, window, now_us())
return {record[1], record[2], record[3], record[4], record[5] or '{}', unpack(rate)}
