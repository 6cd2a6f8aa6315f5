-- publish.lua with sharded pub/sub: on a Cluster, a PUBLISH is copied to every node, an
-- SPUBLISH stays on the node that owns the channel's slot, where the queue's keys are.
local function publish(channel, message)
  redis.call('SPUBLISH', channel, message)
end
