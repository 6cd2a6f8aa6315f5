-- A message to every subscriber of `channel`, on every node of a Cluster (spublish.lua stays on
-- the node that owns the channel's slot).
local function publish(channel, message)
  redis.call('PUBLISH', channel, message)
end
