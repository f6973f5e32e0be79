-- One atomic admission per webhook payload. ARGV[1] is a JSON request built by store/redis.py.
-- Keys are named inside the request (standalone Redis and Sentinel; not Redis Cluster).
local req = cjson.decode(ARGV[1])
local p = req.prefix
local out = {}

local function push_event(id, ev)
  local tl = p .. 'exec:' .. id .. ':timeline'
  redis.call('RPUSH', tl, ev)
  redis.call('PEXPIRE', tl, req.retention_ms)
end

for _, a in ipairs(req.alerts) do
  local fresh = redis.call('SET', p .. 'seen:' .. a.seen, '1', 'NX', 'PX', req.seen_ttl_ms)
  if not fresh then
    for _, c in ipairs(a.candidates) do table.insert(out, {c.id, 'duplicate'}) end
  elseif a.resolved then
    local okey = p .. 'open:' .. a.fp
    for _, id in ipairs(redis.call('SMEMBERS', okey)) do
      local ekey = p .. 'exec:' .. id
      local st = redis.call('HGET', ekey, 'status')
      if st then
        redis.call('HSET', ekey, 'resolved_at', a.resolved_at)
        if st == 'queued' and redis.call('HGET', ekey, 'on_resolved') == 'cancel' then
          redis.call('HSET', ekey, 'status', 'cancelled', 'finished_at', req.now, 'error', a.cancel_error)
          push_event(id, a.cancel_event)
          table.insert(out, {id, 'cancelled'})
        else
          push_event(id, a.resolved_event)
          table.insert(out, {id, 'resolved'})
        end
      end
    end
    redis.call('DEL', okey)
  else
    for _, c in ipairs(a.candidates) do
      local ok = true
      if c.cooldown_ms > 0 then
        ok = redis.call('SET', p .. 'cooldown:' .. c.cooldown_key, c.id, 'NX', 'PX', c.cooldown_ms)
      end
      if not ok then
        table.insert(out, {c.id, 'cooldown'})
      else
        local ekey = p .. 'exec:' .. c.id
        local msg = redis.call('XADD', p .. 'queue', '*', 'id', c.id)
        redis.call('HSET', ekey, 'meta', c.meta, 'status', 'queued', 'on_resolved', c.on_resolved, 'msg', msg)
        redis.call('PEXPIRE', ekey, req.retention_ms)
        push_event(c.id, c.event)
        for _, ix in ipairs(c.idx) do
          redis.call('ZADD', ix, 0, c.id)
          redis.call('PEXPIRE', ix, req.retention_ms)
        end
        local okey = p .. 'open:' .. a.fp
        redis.call('SADD', okey, c.id)
        redis.call('PEXPIRE', okey, req.retention_ms)
        table.insert(out, {c.id, 'admitted'})
      end
    end
  end
end

-- Retention: drop index entries older than the cutoff, and the oldest beyond the cap.
local all = p .. 'idx:all'
redis.call('ZREMRANGEBYLEX', all, '-', '(' .. req.cutoff)
local excess = redis.call('ZCARD', all) - req.max_executions
if excess > 0 then
  for _, id in ipairs(redis.call('ZRANGE', all, 0, excess - 1)) do
    redis.call('DEL', p .. 'exec:' .. id, p .. 'exec:' .. id .. ':timeline')
  end
  redis.call('ZREMRANGEBYRANK', all, 0, excess - 1)
end
return cjson.encode(out)
