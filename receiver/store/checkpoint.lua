-- Checkpoint a running execution: its step records and its new timeline events, in one call
-- (a MULTI/EXEC pipeline costs a worker four commands for the same).
-- ARGV[1]: the execution's hash key; ARGV[2]: the steps as JSON; ARGV[3..]: timeline events.
redis.call('HSET', ARGV[1], 'steps', ARGV[2])
if #ARGV >= 3 then
  redis.call('RPUSH', ARGV[1] .. ':timeline', unpack(ARGV, 3))
end
return 1
