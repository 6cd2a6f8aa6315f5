-- KEYS: the record. ARGV: job id. Deleted only while it still names that job.
local first = redis.call('GET', KEYS[1])
if first and string.sub(first, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then redis.call('DEL', KEYS[1]) end
return 0
