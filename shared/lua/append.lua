-- Append non-terminal events, fenced by the lease.
-- KEYS: meta, events, lease
-- KEYS[4], KEYS[5]: the meta and events of the durable stream the generation also writes
--       into (an agent run), if it does: each event goes there too, as a JSON message
--       (durable.lua), while that stream is open
-- ARGV: owner, max_events, alive_ttl_ms, channel, now_s, seq, completion, the durable
--       stream's channel and the generation's id (or ''), then type, data of each event
-- seq: the first event's number in the stream (1, 2, ...). An append whose reply was lost
-- (the connection broke) is sent again with the same seq; if it was applied, it is not
-- again. completion: the stream's chunk-level fields (JSON) to store, or ''.
-- Returns {'ok', offset of the last event}, {'fenced'} (we no longer hold the lease: a
-- second run of the job, or a stream already declared lost), {'full'} (the length cap
-- was reached, after appending what fit; one slot stays free for the terminal event) or
-- {'gap'} (seq skips ahead: a bug).
-- include: durable.lua
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return {'fenced'} end
local count = tonumber(redis.call('HGET', KEYS[1], 'event_count') or '0')
local seq = tonumber(ARGV[6])
if seq <= count then return {'ok', redis.call('HGET', KEYS[1], 'last_offset')} end
if seq ~= count + 1 then return {'gap'} end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'completion', ARGV[7]) end
local max_events = tonumber(ARGV[2])
local previous = redis.call('HGET', KEYS[1], 'last_offset') or '0-0'
local appended = 0
local id = previous
local copies = {}
for i = 10, #ARGV, 2 do
  if count + appended + 1 >= max_events then break end
  id = redis.call('XADD', KEYS[2], '*', 'type', ARGV[i], 'data', ARGV[i + 1])
  -- "<previous offset> <offset> <type> <data>": a reader at the previous offset can take
  -- the event from the message without reading the stream
  redis.call('PUBLISH', ARGV[4], previous .. ' ' .. id .. ' ' .. ARGV[i] .. ' ' .. ARGV[i + 1])
  previous = id
  appended = appended + 1
  if KEYS[4] then copies[appended] = durable_event(ARGV[9], ARGV[i], ARGV[i + 1]) end
end
if appended > 0 and KEYS[4] and durable_takes(KEYS[4], appended, max_events) then
  durable_add(KEYS[4], KEYS[5], ARGV[8], copies)
end
if appended > 0 then
  redis.call('HSET', KEYS[1], 'last_offset', id)
  redis.call('HINCRBY', KEYS[1], 'event_count', appended)
  if count == 0 then
    redis.call('HSET', KEYS[1], 'first_token_at', ARGV[5])
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
  end
end
if count + appended + 1 >= max_events and 10 + 2 * appended <= #ARGV then return {'full'} end
return {'ok', id}
