-- KEYS: the record. ARGV: "<job id> <fingerprint>", ttl (s) -> nil when claimed, else the first
local first = redis.call('GET', KEYS[1])
if first then return first end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return nil
