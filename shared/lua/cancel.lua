-- Ask the stream's worker to stop. Idempotent.
-- KEYS: meta
-- Returns the stream's status before the request, or 'missing'.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'queued' or status == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
end
return status
