-- queued -> running, or acknowledge and drop the message when the execution is no longer queued.
-- KEYS: exec hash, timeline list, queue stream. ARGV: group, message id, now, event JSON.
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[3])
  redis.call('RPUSH', KEYS[2], ARGV[4])
  return 1
end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
return 0
