-- Renew the lease and tell the worker whether to stop.
-- KEYS: meta, events, lease
-- ARGV: owner, lease_ms, now_ms, presence_slack_ms (how stale a connected reader's mark may be)
-- Returns 'ok', 'fenced' (the lease is lost), 'cancel' (a client cancelled) or
-- 'abandoned' (cancel_on_disconnect_ms passed without a reader).
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 'fenced' end
redis.call('PEXPIRE', KEYS[3], ARGV[2])
local m = redis.call('HMGET', KEYS[1], 'cancel_requested', 'cancel_on_disconnect_ms',
  'reader_seen_ms', 'created_at')
if m[1] == '1' then return 'cancel' end
if m[2] and m[2] ~= '' then
  local seen = tonumber(m[3]) or math.floor(tonumber(m[4]) * 1000)
  if tonumber(ARGV[3]) - seen > tonumber(m[2]) + tonumber(ARGV[4]) then
    return 'abandoned'
  end
end
return 'ok'
