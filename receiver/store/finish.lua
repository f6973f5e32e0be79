-- running -> a terminal state, and acknowledge the execution's queue message.
-- KEYS: exec hash, timeline list, queue stream. ARGV: group, status, now, error, event JSON.
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished_at', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'error', ARGV[4])
end
redis.call('RPUSH', KEYS[2], ARGV[5])
local msg = redis.call('HGET', KEYS[1], 'msg')
if msg then
  redis.call('XACK', KEYS[3], ARGV[1], msg)
  redis.call('XDEL', KEYS[3], msg)
end
return 1
