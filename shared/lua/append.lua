-- Append one non-terminal event, fenced by the lease.
-- KEYS: meta, events, lease
-- ARGV: owner, max_events, alive_ttl_ms, channel, now_s, type, data, seq
-- seq: this event's number in the stream (1, 2, ...). An append whose reply was lost (the
-- connection broke) is sent again with the same seq; if it was applied, it is not again.
-- Returns {'ok', offset}, {'fenced'} (we no longer hold the lease: a
-- second run of the job, or a stream already declared lost), {'full'} (the length cap;
-- one slot stays free for the terminal event) or {'gap'} (seq skips ahead: a bug).
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return {'fenced'} end
local count = tonumber(redis.call('HGET', KEYS[1], 'event_count') or '0')
local seq = tonumber(ARGV[8])
if seq == count then return {'ok', redis.call('HGET', KEYS[1], 'last_offset')} end
if seq ~= count + 1 then return {'gap'} end
if count + 1 >= tonumber(ARGV[2]) then return {'full'} end
local previous = redis.call('HGET', KEYS[1], 'last_offset') or '0-0'
local id = redis.call('XADD', KEYS[2], '*', 'type', ARGV[6], 'data', ARGV[7])
redis.call('HSET', KEYS[1], 'last_offset', id)
redis.call('HINCRBY', KEYS[1], 'event_count', 1)
if count == 0 then
  redis.call('HSET', KEYS[1], 'first_token_at', ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
-- "<previous offset> <offset> <type> <data>": a reader at the previous offset can take the
-- event from the message without reading the stream
redis.call('PUBLISH', ARGV[4], previous .. ' ' .. id .. ' ' .. ARGV[6] .. ' ' .. ARGV[7])
return {'ok', id}
