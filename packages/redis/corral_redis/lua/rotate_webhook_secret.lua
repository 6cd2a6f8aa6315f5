-- KEYS: the apikeys HASH. ARGV: key id, new webhook secret, the apikey:<hash> key prefix
-- -> 1 replaced, 0 no key with that id. One step, so that a key revoked meanwhile is not brought
-- back as a record holding a secret alone. Run twice, it writes the same secret again.
-- It names the key's record, not given in KEYS, from the id: sound on a Cluster because every
-- key shares the prefix's hash tag.
local hashed = redis.call('HGET', KEYS[1], ARGV[1])
if not hashed then return 0 end
redis.call('HSET', ARGV[3] .. hashed, 'webhook_secret', ARGV[2])
return 1
