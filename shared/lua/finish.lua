-- Append the terminal event and settle the stream's status: the only way a stream ends.
-- KEYS: meta, events, lease
-- KEYS[4], KEYS[5]: the durable stream the generation also writes into, if it does (see
--       append.lua): the terminal event goes there too, as a message; it does not close it
-- ARGV: mode, owner, status, now_s, retention_ms, channel, type, data,
--       finish_reason, error_json, usage_json, completion_json (or ''), the durable
--       stream's channel and the generation's id (or '')
-- mode 'owner': only the lease holder may end it; 'orphan': only a running stream whose
-- lease expired (its worker died); 'queued': only a stream no worker has claimed yet.
-- Returns {'ok', offset} or {reason}: 'missing', 'ended', 'fenced', 'alive', 'claimed'.
-- include: durable.lua
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if status ~= 'queued' and status ~= 'running' then return {'ended'} end
local mode = ARGV[1]
if mode == 'owner' then
  if redis.call('GET', KEYS[3]) ~= ARGV[2] then return {'fenced'} end
elseif mode == 'orphan' then
  if status ~= 'running' or redis.call('EXISTS', KEYS[3]) == 1 then return {'alive'} end
elseif mode == 'queued' then
  if status ~= 'queued' then return {'claimed'} end
end
local previous = redis.call('HGET', KEYS[1], 'last_offset') or '0-0'
local id = redis.call('XADD', KEYS[2], '*', 'type', ARGV[7], 'data', ARGV[8])
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'finished_at', ARGV[4], 'last_offset', id,
  'finish_reason', ARGV[9], 'error', ARGV[10], 'usage', ARGV[11])
redis.call('HINCRBY', KEYS[1], 'event_count', 1)
if ARGV[12] ~= '' then redis.call('HSET', KEYS[1], 'completion', ARGV[12]) end
redis.call('DEL', KEYS[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[6], previous .. ' ' .. id .. ' ' .. ARGV[7] .. ' ' .. ARGV[8])
if KEYS[4] and durable_takes(KEYS[4], 1, math.huge) then
  durable_add(KEYS[4], KEYS[5], ARGV[13], {durable_event(ARGV[14], ARGV[7], ARGV[8])})
end
return {'ok', id}
