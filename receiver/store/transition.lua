-- Compare-and-set an execution's status; a terminal one also runs ended(). The runner's last
-- checkpoint (steps, events), when given, is written first whether or not the status moves.
-- ARGV[1]: JSON {prefix, group, id, status, now, error, event, terminal, sources, steps, events}.
local r = cjson.decode(ARGV[1])
local p, id = r.prefix, r.id
local ekey = p .. 'exec:' .. id
if r.steps ~= '' then
  redis.call('HSET', ekey, 'steps', r.steps)
end
for _, ev in ipairs(r.events) do
  push_event(p, id, ev)
end
local st = redis.call('HGET', ekey, 'status')
local allowed = false
for _, s in ipairs(r.sources) do
  if s == st then allowed = true end
end
if not allowed then
  return 0
end
redis.call('HSET', ekey, 'status', r.status)
if r.error ~= '' then
  redis.call('HSET', ekey, 'error', r.error)
end
push_event(p, id, r.event)
if r.terminal then
  redis.call('HSET', ekey, 'finished_at', r.now)
  ended(p, r.group, id)
end
return 1
