-- KEYS: the key's record, its rate, its ledger ZSET and bytes HASH, then SUBMIT's KEYS
-- ARGV: the key's id, its rate limit and window (s), the job's size, its max unfinished and max
-- bytes (the key's quotas, resolved), then SUBMIT's ARGV (whose second is the job id)
-- -> {outcome, GCRA's answer}; outcome 'ok', 'revoked' (no key with that id: no answer
--    follows), 'rate', BOOK's refusal, or 'queue <SUBMIT outcome>'
-- The key's quotas come from the caller, who read them from the key's record (they never
-- change); the record itself is only checked to be there, which is what revoking removes.
-- BOOK, UNBOOK and SUBMIT run as they are, as functions whose KEYS and ARGV are ADMIT's slices,
-- so a refusal at any step leaves nothing behind.
--#include clock
--#include gcra
local function book(KEYS, ARGV, now)
--#include booking
end
local function unbook(KEYS, ARGV)
--#include unbook
end
local function submit(KEYS, ARGV)
--#include submit
end

if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return {'revoked'} end
local now = now_us()
local rate = gcra(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]), now)
if rate[1] ~= 1 then return {'rate', unpack(rate)} end
local ledger = {KEYS[3], KEYS[4]}
local job_keys, job_args = {unpack(KEYS, 5)}, {unpack(ARGV, 7)}
local booked = book(ledger, {job_args[2], ARGV[4], ARGV[5], ARGV[6]}, now)
if booked ~= 'ok' then return {booked, unpack(rate)} end
local queued = submit(job_keys, job_args)
if queued ~= 1 then
  unbook(ledger, {job_args[2]})
  return {'queue ' .. queued, unpack(rate)}
end
return {'ok', unpack(rate)}
