-- Functions every script shares; store/redis.py puts this text before each script's own.
-- `p` is the key prefix. Keys are named from it (standalone Redis and Sentinel; not Cluster).

local function push_event(p, id, ev)
  redis.call('RPUSH', p .. 'exec:' .. id .. ':timeline', ev)
end

-- Acknowledge and delete a queue message, so that no worker reads or reclaims it again.
local function ack(p, group, msg)
  if msg and msg ~= '' then
    redis.call('XACK', p .. 'queue', group, msg)
    redis.call('XDEL', p .. 'queue', msg)
  end
end

-- Put an execution on the work queue, remembering its message.
local function enqueue(p, id)
  local msg = redis.call('XADD', p .. 'queue', '*', 'id', id)
  redis.call('HSET', p .. 'exec:' .. id, 'msg', msg)
end

-- If `id` holds its lock, hand the lock to the oldest execution still queued behind it (and
-- queue that one), or free it when none waits.
local function release_lock(p, id)
  local name = redis.call('HGET', p .. 'exec:' .. id, 'lock')
  if not name or name == '' then return end
  local lkey = p .. 'lock:' .. name
  if redis.call('GET', lkey) ~= id then return end
  local qkey = p .. 'lockq:' .. name
  while true do
    local nxt = redis.call('LPOP', qkey)
    if not nxt then
      redis.call('DEL', lkey)
      return
    end
    if redis.call('HGET', p .. 'exec:' .. nxt, 'status') == 'queued' then
      redis.call('SET', lkey, nxt)
      enqueue(p, nxt)
      return
    end
  end
end

-- What every move to a terminal state does besides setting the status: the queue message is
-- acknowledged, the lock passed on, and any approval deadline forgotten.
local function ended(p, group, id)
  ack(p, group, redis.call('HGET', p .. 'exec:' .. id, 'msg'))
  release_lock(p, id)
  redis.call('ZREM', p .. 'approvals', id)
end


-- A live execution's record must outlive the history's retention: renew it whenever it starts,
-- resumes or parks, so a long wait for approval never expires work that is still going on.
local function renew(p, id, retention_ms)
  if retention_ms and retention_ms > 0 then
    redis.call('PEXPIRE', p .. 'exec:' .. id, retention_ms)
    redis.call('PEXPIRE', p .. 'exec:' .. id .. ':timeline', retention_ms)
  end
end
