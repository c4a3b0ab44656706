-- Append to a durable stream (Durable Streams POST), close it, or both, validating an
-- idempotent producer and Stream-Seq in the same atomic step as the write: a retried
-- append is recognised even if the first reply was lost.
-- KEYS: meta, events
-- ARGV: content_type ('' when the request has no body), close ('1' or ''), producer id
--       ('' for none), producer epoch, producer seq, stream_seq ('' for none), now_s,
--       max_events, channel, then the messages
-- Returns {outcome, last entry id, ...}:
--   {'ok', last, closed}            appended (and/or closed)
--   {'duplicate', last, closed, epoch, seq}   this producer's batch was applied before
--   {'missing'}                     no stream
--   {'gone'}                        the stream was deleted (its forks still read)
--   {'closed', last}                the stream is closed (and this is not a duplicate)
--   {'content_type', last}          the body's content type is not the stream's
--   {'stale_epoch', last, epoch}    a newer epoch of this producer wrote since
--   {'epoch_seq', last}             a new epoch must start at seq 0
--   {'gap', last, expected}         seq skips ahead of what this producer sent
--   {'stream_seq', last}            Stream-Seq does not increase
--   {'full', last}                  the stream reached its length cap
-- include: durable.lua
local f = redis.call('HMGET', KEYS[1], 'status', 'content_type', 'closed', 'last_offset',
  'event_count', 'stream_seq', 'closed_by', 'deleted')
if not f[1] then return {'missing'} end
if f[8] then return {'gone'} end
local function renew() durable_renew(KEYS[1], KEYS[2]) end
local last, closed = f[4] or '0-0', f[3] == '1'
local messages = #ARGV - 9
local pid, epoch, seq = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local tuple = pid .. ' ' .. ARGV[4] .. ' ' .. ARGV[5]
if closed then
  if pid ~= '' and f[7] == tuple then
    renew()
    return {'duplicate', last, '1', ARGV[4], ARGV[5]}
  end
  if messages == 0 and ARGV[2] == '1' and pid == '' then
    renew()
    return {'ok', last, '1'}
  end
  return {'closed', last}
end
if messages > 0 and ARGV[1] ~= f[2] then return {'content_type', last} end
local producer_key = 'producer:' .. pid
if pid ~= '' then
  local state = redis.call('HGET', KEYS[1], producer_key)
  if state then
    local known_epoch, known_seq = string.match(state, '(%d+) (%d+)')
    known_epoch, known_seq = tonumber(known_epoch), tonumber(known_seq)
    if epoch < known_epoch then return {'stale_epoch', last, string.format('%d', known_epoch)} end
    if epoch == known_epoch then
      if seq <= known_seq then
        renew()
        return {'duplicate', last, '', ARGV[4], string.format('%d', known_seq)}
      end
      if seq > known_seq + 1 then return {'gap', last, string.format('%d', known_seq + 1)} end
    elseif seq ~= 0 then
      return {'epoch_seq', last}
    end
  elseif seq ~= 0 then
    return {'gap', last, '0'}
  end
end
if ARGV[6] ~= '' and f[6] and ARGV[6] <= f[6] then return {'stream_seq', last} end
local count = tonumber(f[5] or '0')
if count + messages > tonumber(ARGV[8]) then return {'full', last} end
local batch = {}
for i = 10, #ARGV do batch[#batch + 1] = ARGV[i] end
if pid ~= '' then redis.call('HSET', KEYS[1], producer_key, ARGV[4] .. ' ' .. ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'stream_seq', ARGV[6]) end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'closed', '1', 'status', 'completed', 'finished_at', ARGV[7])
  if pid ~= '' then redis.call('HSET', KEYS[1], 'closed_by', tuple) end
end
if messages > 0 then
  last = durable_add(KEYS[1], KEYS[2], ARGV[9], batch)
else
  renew()
  redis.call('PUBLISH', ARGV[9], last)  -- closed: its live readers end
end
local now_closed = ''
if ARGV[2] == '1' then now_closed = '1' end
return {'ok', last, now_closed}
