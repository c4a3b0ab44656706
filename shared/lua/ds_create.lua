-- Create a durable stream (Durable Streams PUT) unless one exists at its path.
-- KEYS: meta, events
-- ARGV: created_at, content_type, ttl_s, expires_at, closed ('1' or ''), api,
--       expire_at_ms, idle_ms, fork_tail, fork, then the initial messages
-- Expiry: at expire_at_ms (its Expires-At) if given; else ttl_s after its last use if
-- given (a sliding TTL); else idle_ms after its last write. fork_tail: for a fork, the entry
-- id it forks at (its inherited entries were copied into KEYS[2] already); '' otherwise.
-- fork: what it was forked from ('' if nothing), compared by a second PUT.
-- Returns {'created', last entry id} or {'exists', content_type, ttl_s, expires_at,
-- created closed, fork, deleted, last entry id}: the caller compares the configurations.
if redis.call('HGET', KEYS[1], 'status') then
  local f = redis.call('HMGET', KEYS[1], 'content_type', 'ttl_s', 'expires_at',
    'created_closed', 'fork', 'deleted', 'last_offset')
  return {'exists', f[1] or '', f[2] or '', f[3] or '', f[4] or '', f[5] or '', f[6] or '',
    f[7] or '0-0'}
end
local last, count = '0-0', 0
if ARGV[9] ~= '' then
  -- a fork: later entries must sort after the fork point, even within its millisecond
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('XGROUP', 'CREATE', KEYS[2], 'fork', '$', 'MKSTREAM')
    redis.call('XGROUP', 'DESTROY', KEYS[2], 'fork')
  end
  redis.call('XSETID', KEYS[2], ARGV[9])
  last, count = ARGV[9], redis.call('XLEN', KEYS[2])
else
  redis.call('DEL', KEYS[2])  -- what a deleted stream of this path may have left
end
for i = 11, #ARGV do
  last = redis.call('XADD', KEYS[2], '*', 'type', 'message', 'data', ARGV[i])
  count = count + 1
end
local status = 'open'
if ARGV[5] == '1' then status = 'completed' end
redis.call('HSET', KEYS[1], 'status', status, 'model', '', 'created_at', ARGV[1],
  'content_type', ARGV[2], 'ttl_s', ARGV[3], 'expires_at', ARGV[4], 'closed', ARGV[5],
  'created_closed', ARGV[5], 'api', ARGV[6], 'expire_at_ms', ARGV[7], 'idle_ms', ARGV[8],
  'fork', ARGV[10], 'event_count', count, 'last_offset', last, 'metadata', '{}')
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'finished_at', ARGV[1]) end
for _, key in ipairs(KEYS) do
  if ARGV[7] ~= '' then redis.call('PEXPIREAT', key, ARGV[7])
  elseif ARGV[3] ~= '' then redis.call('PEXPIRE', key, tonumber(ARGV[3]) * 1000)
  else redis.call('PEXPIRE', key, ARGV[8]) end
end
return {'created', last}
