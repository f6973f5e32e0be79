-- running -> waiting_approval: record the request, release the worker's message, and remember
-- the deadline for the sweeper. The lock, if any, stays held.
-- ARGV[1]: JSON {prefix, group, id, approval, deadline, event}.
local r = cjson.decode(ARGV[1])
local p, id = r.prefix, r.id
local ekey = p .. 'exec:' .. id
if redis.call('HGET', ekey, 'status') ~= 'running' then
  return 0
end
redis.call('HSET', ekey, 'status', 'waiting_approval', 'approval', r.approval)
redis.call('HDEL', ekey, 'decision')
ack(p, r.group, redis.call('HGET', ekey, 'msg'))
redis.call('HDEL', ekey, 'msg')
redis.call('ZADD', p .. 'approvals', r.deadline, id)
renew(p, id, r.retention_ms)
push_event(p, id, r.event)
return 1
