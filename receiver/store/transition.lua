-- Compare-and-set an execution's status; on a terminal state, acknowledge its queue message.
-- KEYS: exec hash, timeline list, queue stream.
-- ARGV: group, new status, now, error, event JSON, terminal ('1' or '0'), allowed sources...
local st = redis.call('HGET', KEYS[1], 'status')
local allowed = false
for i = 7, #ARGV do
  if ARGV[i] == st then allowed = true end
end
if not allowed then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[3])
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'error', ARGV[4])
end
redis.call('RPUSH', KEYS[2], ARGV[5])
if ARGV[6] == '1' then
  local msg = redis.call('HGET', KEYS[1], 'msg')
  if msg then
    redis.call('XACK', KEYS[3], ARGV[1], msg)
    redis.call('XDEL', KEYS[3], msg)
  end
end
return 1
