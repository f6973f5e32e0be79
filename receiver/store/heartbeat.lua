-- A running execution's worker says it is alive: reset its queue message's idle time (so that
-- XAUTOCLAIM leaves it alone) unless another consumer owns the message now.
-- ARGV[1]: JSON {prefix, group, id, consumer}. Returns {status or '', held (1 or 0)}.
local r = cjson.decode(ARGV[1])
local p = r.prefix
local ekey = p .. 'exec:' .. r.id
local st = redis.call('HGET', ekey, 'status')
local held = 1
local msg = redis.call('HGET', ekey, 'msg')
if msg then
  local pending = redis.call('XPENDING', p .. 'queue', r.group, msg, msg, 1)
  if #pending > 0 then
    if pending[1][2] ~= r.consumer then
      held = 0
    else
      redis.call('XCLAIM', p .. 'queue', r.group, r.consumer, 0, msg, 'JUSTID')
    end
  end
end
return {st or '', held}
