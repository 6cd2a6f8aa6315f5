-- KEYS: the job's input stream, its `sent` hash (bytes, eof)
-- ARGV: job id, sent channel, ttl (ms), most bytes in all, token, '1' to close the input, data
-- -> 1 added (or this same send, re-sent), 0 refused: past the most bytes, or closed already
-- Run twice (a re-sent send), it adds nothing: its entry carries the call's token.
--#include resent
--#include publish

local input, sent = KEYS[1], KEYS[2]
local data, eof = ARGV[7], ARGV[6] == '1'
if resent(input, ARGV[5]) then return 1 end
if redis.call('HEXISTS', sent, 'eof') == 1 then return 0 end
local total = tonumber(redis.call('HGET', sent, 'bytes') or '0') + #data
if total > tonumber(ARGV[4]) then return 0 end
if #data == 0 and not eof then return 1 end
if eof then
  redis.call('XADD', input, '*', 'd', data, 'eof', '1', 'a', ARGV[5])
  redis.call('HSET', sent, 'bytes', total, 'eof', '1')
else
  redis.call('XADD', input, '*', 'd', data, 'a', ARGV[5])
  redis.call('HSET', sent, 'bytes', total)
end
redis.call('PEXPIRE', input, ARGV[3])
redis.call('PEXPIRE', sent, ARGV[3])
publish(ARGV[2], ARGV[1])
return 1
