-- Whether the newest entry of `stream` carries the token `token` in its field `a`: a script that
-- adds entries marks the last one it adds with the caller's token, so the same call, re-sent
-- after its reply was lost, finds its own entries there and adds nothing.
local function resent(stream, token)
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
  if not last then return false end
  local fields = last[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'a' then return fields[i + 1] == token end
  end
  return false
end
