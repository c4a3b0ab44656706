-- Read a durable stream: its configuration and tail, and the messages after an entry id,
-- in one atomic look (the tail and the messages agree). A read renews a sliding TTL.
-- KEYS: meta, events
-- ARGV: after (an entry id, or '' for none: only the configuration), count, max_bytes,
--       touch ('1': this is a read, which renews a sliding TTL; a HEAD is not)
-- Returns {} if there is no stream, else {content_type, last entry id, closed, ttl_s,
-- expires_at, pttl, deleted, id1, message1, id2, message2, ...}: at most count messages,
-- and no more than fit in max_bytes (at least one).
local f = redis.call('HMGET', KEYS[1], 'status', 'content_type', 'last_offset', 'closed',
  'ttl_s', 'expires_at', 'deleted', 'expire_at_ms')
if not f[1] then return {} end
if ARGV[4] == '1' and f[5] and f[5] ~= '' and (not f[8] or f[8] == '') and not f[7] then
  for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, tonumber(f[5]) * 1000) end
end
local reply = {f[2] or '', f[3] or '0-0', f[4] or '', f[5] or '', f[6] or '',
  redis.call('PTTL', KEYS[1]), f[7] or ''}
if ARGV[1] == '' or f[7] then return reply end
local entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
local budget = tonumber(ARGV[3])
for i, entry in ipairs(entries) do
  -- fields: type, 'message', data, <bytes>
  local data = entry[2][4]
  if i > 1 and #data > budget then break end
  budget = budget - #data
  reply[#reply + 1] = entry[1]
  reply[#reply + 1] = data
end
return reply
