-- One atomic admission per webhook payload. ARGV[1] is a JSON request built by store/redis.py.
local req = cjson.decode(ARGV[1])
local p = req.prefix
local out = {}

local function record_event(id, ev)
  push_event(p, id, ev)
  redis.call('PEXPIRE', p .. 'exec:' .. id .. ':timeline', req.retention_ms)
end

-- Storm bound: the stream holds one message per queued or running execution. Refuse the whole
-- payload, recording nothing, when its candidates could go past the bound.
if req.max_queued > 0 and req.candidates > 0 then
  local backlog = redis.call('XLEN', p .. 'queue')
  if backlog + req.candidates > req.max_queued then
    return cjson.encode({full = backlog})
  end
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
        local waiting = st == 'queued' or st == 'waiting_approval'
        if waiting and redis.call('HGET', ekey, 'on_resolved') == 'cancel' then
          redis.call('HSET', ekey, 'status', 'cancelled', 'finished_at', req.now, 'error', a.cancel_error)
          record_event(id, a.cancel_event)
          ended(p, req.group, id)
          table.insert(out, {id, 'cancelled'})
        else
          record_event(id, a.resolved_event)
          table.insert(out, {id, 'resolved'})
        end
      end
    end
    redis.call('DEL', okey)
  else
    for _, c in ipairs(a.candidates) do
      local ok = true
      local verdict = nil
      local rkey = p .. 'rate:' .. c.rule
      if c.rate_max > 0 then
        -- Circuit breaker: open, or opening now because the rule ran rate_max times in rate_per.
        local bkey = p .. 'breaker:' .. c.rule
        redis.call('ZREMRANGEBYSCORE', rkey, '-inf', '(' .. (req.now_ms - c.rate_per_ms))
        if redis.call('EXISTS', bkey) == 1 then
          verdict = 'circuit_open'
        elseif redis.call('ZCARD', rkey) >= c.rate_max then
          redis.call('SET', bkey, 'rate', 'PX', c.rate_per_ms)
          verdict = 'rate_limited'
        end
      end
      if verdict == nil and c.cooldown_ms > 0 then
        ok = redis.call('SET', p .. 'cooldown:' .. c.cooldown_key, c.id, 'NX', 'PX', c.cooldown_ms)
        if not ok then verdict = 'cooldown' end
      end
      if verdict ~= nil then
        table.insert(out, {c.id, verdict})
      else
        if c.rate_max > 0 then
          redis.call('ZADD', rkey, req.now_ms, c.id)
          redis.call('PEXPIRE', rkey, c.rate_per_ms)
        end
        local ekey = p .. 'exec:' .. c.id
        redis.call('HSET', ekey, 'meta', c.meta, 'status', 'queued', 'on_resolved', c.on_resolved,
          'lock', c.lock, 'lock_policy', c.lock_policy)
        enqueue(p, c.id)
        redis.call('PEXPIRE', ekey, req.retention_ms)
        record_event(c.id, c.event)
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
-- Only ended executions leave: one still queued, running or waiting must never be lost to the cap.
local excess = redis.call('ZCARD', all) - req.max_executions
if excess > 0 then
  local ended_states = req.terminal
  local dropped = 0
  for _, id in ipairs(redis.call('ZRANGE', all, 0, excess + 999)) do
    if dropped >= excess then break end
    local st = redis.call('HGET', p .. 'exec:' .. id, 'status')
    if not st or ended_states[st] then
      redis.call('DEL', p .. 'exec:' .. id, p .. 'exec:' .. id .. ':timeline')
      redis.call('ZREM', all, id)
      dropped = dropped + 1
    end
  end
end
return cjson.encode(out)
