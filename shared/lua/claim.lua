-- Take the lease of a queued stream, so exactly one worker ever generates it.
-- KEYS: meta, events, lease
-- ARGV: owner, lease_ms, now_s, upstream, alive_ttl_ms
-- Returns {'claimed', request, endpoint} (the stream's upstream request and API, so the
-- worker needs no second round trip), or why not: 'missing', 'leased' (another worker
-- holds it), 'orphaned' (running but its lease expired: its worker died), or the final
-- status.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if status == 'running' then
  if redis.call('EXISTS', KEYS[3]) == 0 then return 'orphaned' end
  return 'leased'
end
if status ~= 'queued' then return status end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[3],
  'worker', ARGV[1], 'upstream', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local stored = redis.call('HMGET', KEYS[1], 'request', 'endpoint')
return {'claimed', stored[1] or '', stored[2] or ''}
