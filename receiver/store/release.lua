-- A stopping worker hands a running execution back: its queue message is made to look idle for
-- longer than reclaim_after, so the next claim on any replica takes it over at once.
-- ARGV[1]: JSON {prefix, group, id, consumer, idle_ms, event}. Returns 1 if handed back.
local r = cjson.decode(ARGV[1])
local p = r.prefix
local ekey = p .. 'exec:' .. r.id
local msg = redis.call('HGET', ekey, 'msg')
if not msg then return 0 end
local pending = redis.call('XPENDING', p .. 'queue', r.group, msg, msg, 1)
if #pending == 0 or pending[1][2] ~= r.consumer then return 0 end
redis.call('XCLAIM', p .. 'queue', r.group, r.consumer, 0, msg, 'IDLE', r.idle_ms, 'JUSTID')
push_event(p, r.id, r.event)
return 1
