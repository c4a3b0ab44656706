-- Record that a reader is connected (only kept for streams with cancel_on_disconnect).
-- KEYS: meta
-- ARGV: now_ms
if redis.call('HEXISTS', KEYS[1], 'cancel_on_disconnect_ms') == 1 then
  redis.call('HSET', KEYS[1], 'reader_seen_ms', ARGV[1])
  return 1
end
return 0
