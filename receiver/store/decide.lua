-- waiting_approval -> queued with the decision recorded, so that a worker resumes it.
-- ARGV[1]: JSON {prefix, id, decision, event}.
local r = cjson.decode(ARGV[1])
local p, id = r.prefix, r.id
local ekey = p .. 'exec:' .. id
if redis.call('HGET', ekey, 'status') ~= 'waiting_approval' then
  return 0
end
redis.call('HSET', ekey, 'status', 'queued', 'decision', r.decision)
redis.call('ZREM', p .. 'approvals', id)
enqueue(p, id)
push_event(p, id, r.event)
return 1
