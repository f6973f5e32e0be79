-- Take one queue message for a worker: start a queued execution (if its lock allows) or resume
-- a reclaimed running one; acknowledge and drop a message that is stale.
-- ARGV[1]: JSON {prefix, group, id, msg, now, reclaimed, running_event, resumed_event, terminal}.
-- Returns the execution (its hash as a flat list, and its timeline) when the worker should run
-- it, 0 otherwise: the worker needs no second round trip to read what it takes.
local r = cjson.decode(ARGV[1])
local p, id = r.prefix, r.id
local ekey = p .. 'exec:' .. id
local function taken()
  return {redis.call('HGETALL', ekey), redis.call('LRANGE', ekey .. ':timeline', 0, -1)}
end
local st = redis.call('HGET', ekey, 'status')
local current = redis.call('HGET', ekey, 'msg')
if current ~= r.msg then
  ack(p, r.group, r.msg)
  return 0
end
if r.reclaimed and (st == 'running' or st == 'rolling_back') then
  renew(p, id, r.retention_ms)
  push_event(p, id, r.resumed_event)
  return taken()
end
if st ~= 'queued' then
  ack(p, r.group, r.msg)
  return 0
end
local name = redis.call('HGET', ekey, 'lock')
if name and name ~= '' then
  local lkey = p .. 'lock:' .. name
  local holder = redis.call('GET', lkey)
  if holder and holder ~= id then
    -- A holder that ended or expired without passing the lock on would hold it forever.
    local hst = redis.call('HGET', p .. 'exec:' .. holder, 'status')
    if not hst or r.terminal[hst] then holder = false end
  end
  if not holder then
    redis.call('SET', lkey, id)
  elseif holder ~= id then
    ack(p, r.group, r.msg)
    redis.call('HDEL', ekey, 'msg')
    local why = 'lock ' .. name .. ' is held by execution ' .. holder
    if redis.call('HGET', ekey, 'lock_policy') == 'skip' then
      local err = 'skipped: ' .. why
      redis.call('HSET', ekey, 'status', 'cancelled', 'finished_at', r.now, 'error', err)
      push_event(p, id, cjson.encode({at = tonumber(r.now), event = 'cancelled', detail = err}))
    else
      redis.call('RPUSH', p .. 'lockq:' .. name, id)
      push_event(p, id, cjson.encode({at = tonumber(r.now), event = 'waiting_lock', detail = why}))
    end
    return 0
  end
end
renew(p, id, r.retention_ms)
redis.call('HSET', ekey, 'status', 'running')
redis.call('HSETNX', ekey, 'started_at', r.now)
push_event(p, id, r.running_event)
return taken()
