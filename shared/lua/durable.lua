-- Writing into a durable stream: shared by ds_append.lua and by the scripts through which
-- a generation also writes into one (append.lua, finish.lua), with `-- include: durable.lua`.
-- A durable stream's meta fields are set by ds_create.lua.

-- Renew the stream's expiry after a use, unless it expires at a set time (Expires-At): its
-- sliding TTL if it has one, else its idle retention.
local function durable_renew(meta, events)
  local f = redis.call('HMGET', meta, 'expire_at_ms', 'ttl_s', 'idle_ms')
  if f[1] and f[1] ~= '' then return end
  local ms = f[3]
  if f[2] and f[2] ~= '' then ms = tonumber(f[2]) * 1000 end
  if not ms then return end
  redis.call('PEXPIRE', meta, ms)
  redis.call('PEXPIRE', events, ms)
end

-- Append messages (one entry each) and wake the stream's live readers: its notify channel
-- carries the new tail alone. Returns the last entry id.
local function durable_add(meta, events, channel, messages)
  local last
  for _, message in ipairs(messages) do
    last = redis.call('XADD', events, '*', 'type', 'message', 'data', message)
  end
  redis.call('HSET', meta, 'last_offset', last)
  redis.call('HINCRBY', meta, 'event_count', #messages)
  durable_renew(meta, events)
  redis.call('PUBLISH', channel, last)
  return last
end

-- Whether a generation may add `count` messages: the stream exists, is open, holds JSON and
-- has room below `max_events`.
local function durable_takes(meta, count, max_events)
  local f = redis.call('HMGET', meta, 'status', 'content_type', 'event_count', 'deleted')
  if f[1] ~= 'open' or f[4] then return false end
  local json = f[2] == 'application/json' or string.sub(f[2] or '', -5) == '+json'
  return json and tonumber(f[3] or '0') + count <= max_events
end

-- A generation's event as a durable stream's message: its data object, with its type and
-- the generation's id first: {"type":"token","generation":"<id>","text":"Hi"}.
local function durable_event(generation, event_type, data)
  local rest = string.sub(data, 2)
  if rest ~= '}' then rest = ',' .. rest end
  return '{"type":"' .. event_type .. '","generation":"' .. generation .. '"' .. rest
end
