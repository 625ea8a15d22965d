#!lua name=@FN@lib
--
-- pushgate's Redis function library (SPEC §3, §7). This file is a TEMPLATE:
-- the gateway replaces @PREFIX@, @FN@, @HISTORY_SIZE@, @HISTORY_TTL@,
-- @MAX_BYTES@ and @REVOKE_TTL@ by plain text substitution and loads the result
-- with FUNCTION LOAD REPLACE at start and after every reconnect, so a Redis
-- restart without persistence cannot lose it. @PREFIX@ only ever holds
-- [A-Za-z0-9_.:-], so it is safe inside a single-quoted Lua string.
--
--   FCALL    @FN@publish     0 <channel> <payload>        -> new id (bulk string)
--   FCALL_RO @FN@history     0 <channel> <since>          -> {complete, id, env, ...}
--   FCALL    @FN@disconnect  0 <user> [<json options>]    -> nodes reached (integer)
--   FCALL    @FN@subscribe   0 <user> <channel> [<since>] -> nodes reached
--   FCALL    @FN@unsubscribe 0 <user> <channel>           -> nodes reached
--
-- Every function also takes a one-key form (SPEC §10) whose key only
-- routes the call in Redis Cluster: <prefix>{<channel>}:history for publish
-- and history, <prefix>{_control}:revoked for the control orders. The same
-- one-key call works on one Redis; in cluster mode it is the only form.
--
-- Ids are decimal integers max(last + 1, now_ms * 1000), last kept in
-- <prefix>seq on one Redis and per channel in cluster mode (see KEY below).
-- Lua numbers are doubles: ids stay below 2^53, and they are always written
-- with string.format('%.0f') because tostring() would give 1.8e+15.

local PREFIX = '@PREFIX@'
local HISTORY_SIZE = @HISTORY_SIZE@
local HISTORY_TTL = @HISTORY_TTL@
local MAX_BYTES = @MAX_BYTES@
local REVOKE_TTL = @REVOKE_TTL@

-- The topology (SPEC §10), baked in when the gateway renders the template:
-- 'cluster' for a redis+cluster:// URL, anything else for one Redis or
-- Sentinel. Asking at call time was turned down: a CLUSTER INFO (or a pcall
-- of one, which fails on a Redis without cluster support) would cost every
-- publish a command, and the caller's key cannot tell, since the one-key form
-- must do the same on one Redis as in a cluster. A renderer that does not
-- know @TOPOLOGY@ leaves it as it is, which reads as one Redis, so the
-- template stays loadable by a gateway that has no cluster mode.
local CLUSTER = ('@TOPOLOGY@' == 'cluster')

-- Every Redis name the library uses, one helper per kind (the SPEC §10
-- table); no function builds a name of its own. In cluster mode a channel's
-- names all carry the hash tag {C}, so they share C's slot and one shard
-- holds C's pub/sub, history, id and presence; the one-key forms route by
-- the tagged names in both modes.
local KEY = {}
-- pub/sub channel of C: PUBLISH, or SPUBLISH on the shard that owns C
function KEY.channel(ch)
    if CLUSTER then return PREFIX .. '{' .. ch .. '}' end
    return PREFIX .. ch
end
-- C's history stream; in cluster mode its last-generated-id is C's last id
function KEY.history(ch)
    if CLUSTER then return PREFIX .. '{' .. ch .. '}:history' end
    return PREFIX .. 'history:' .. ch
end
-- C's presence hash (SPEC §8)
function KEY.presence(ch)
    if CLUSTER then return PREFIX .. '{' .. ch .. '}:presence' end
    return PREFIX .. 'presence:' .. ch
end
-- the routing keys of the one-key forms, the same in both modes
function KEY.history_route(ch) return PREFIX .. '{' .. ch .. '}:history' end
function KEY.presence_route(ch) return PREFIX .. '{' .. ch .. '}:presence' end
KEY.CONTROL_ROUTE = PREFIX .. '{_control}:revoked'
-- Orders reach every node on this pub/sub channel (SPEC §7). On one Redis
-- nodes listen with PSUBSCRIBE of the exact name, which PUBLISH counts like
-- SUBSCRIBE; in a cluster they SSUBSCRIBE it at the one shard owning
-- {_control}, so SPUBLISH's count is still every node.
KEY.CONTROL = CLUSTER and (PREFIX .. '{_control}') or (PREFIX .. '_control')
-- field <user> -> unix second of the revocation; beside CONTROL's slot
KEY.REVOKED = CLUSTER and (PREFIX .. '{_control}:revoked') or (PREFIX .. 'revoked')
-- the events stream of SPEC §9 (written by the gateways, named here too)
KEY.EVENTS = CLUSTER and (PREFIX .. '{_events}') or (PREFIX .. 'events')
-- the last id of every channel; one Redis only (a cluster keeps one per
-- channel, since one key for all would make every publish cross slots)
KEY.SEQ = PREFIX .. 'seq'

local SEQ_KEY = KEY.SEQ
local CONTROL_CHANNEL = KEY.CONTROL
local REVOKED_KEY = KEY.REVOKED
local CONTROL_ROUTING_KEY = KEY.CONTROL_ROUTE
-- A WebSocket close frame carries at most 123 bytes of reason; 100 leaves
-- room and is what SPEC §7 promises.
local MAX_REASON = 100

-- The gateway parses a delivered envelope with a nesting limit of 64 levels
-- (json-c tokener depth; every container counts, empty ones too). A payload
-- whose envelope would be deeper (an envelope payload deeper than 64, other
-- JSON deeper than 63 since wrapping adds a level) is treated as text,
-- exactly as the gateway treats it on a raw PUBLISH, rather than copied
-- verbatim into an envelope the gateway could not parse.
local MAX_DEPTH = 64

local function fmt_id(n)
    return string.format('%.0f', n)
end

-- 1..128 bytes of [A-Za-z0-9_.:@-] (SPEC §2).
local function valid_channel(ch)
    return type(ch) == 'string' and #ch >= 1 and #ch <= 128
        and string.find(ch, '^[A-Za-z0-9_%.:@%-]+$') ~= nil
end

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Strict JSON check (RFC 8259 grammar, no UTF-8 validation). cjson.decode
-- alone is not enough to decide whether a payload may be copied verbatim into
-- the envelope: it also accepts 0x10, NaN, Infinity and 01, none of which is
-- JSON. Iterative, so deep nesting cannot overflow the C stack. Returns true
-- and its nesting depth when the whole text is exactly one JSON value
-- (surrounding blanks allowed) no deeper than MAX_DEPTH, else false.
local function json_valid(s)
    local find, sub, byte = string.find, string.sub, string.byte
    local n = #s
    local i = 1
    local stack, top = {}, 0
    local deepest = 0   -- nesting levels, every container counted

    local function skip_ws()
        i = find(s, '[^ \t\r\n]', i) or (n + 1)
    end

    -- s[i] must be '"'; moves i past the closing quote.
    local function scan_string()
        if byte(s, i) ~= 34 then return false end
        local j = i + 1
        while true do
            local k = find(s, '[%z\1-\31"\\]', j)
            if not k then return false end
            local c = byte(s, k)
            if c == 34 then
                i = k + 1
                return true
            elseif c == 92 then
                local e = sub(s, k + 1, k + 1)
                if e ~= '' and find('"\\/bfnrt', e, 1, true) then
                    j = k + 2
                elseif e == 'u' and find(s, '^%x%x%x%x', k + 2) then
                    j = k + 6
                else
                    return false
                end
            else
                return false -- raw control character
            end
        end
    end

    local function scan_number()
        local a, b = find(s, '^-?%d+', i)
        if not a then return false end
        if find(s, '^-?0%d', i) then return false end -- leading zero
        i = b + 1
        a, b = find(s, '^%.%d+', i)
        if a then i = b + 1 end
        a, b = find(s, '^[eE][-+]?%d+', i)
        if a then i = b + 1 end
        return true
    end

    local want_value = true
    while true do
        skip_ws()
        if want_value then
            local c = byte(s, i)
            if c == 123 then -- {
                i = i + 1
                skip_ws()
                if byte(s, i) == 125 then
                    i = i + 1
                    want_value = false
                    if top + 1 > deepest then deepest = top + 1 end
                else
                    if not scan_string() then return false end
                    skip_ws()
                    if byte(s, i) ~= 58 then return false end
                    i = i + 1
                    top = top + 1
                    if top > MAX_DEPTH then return false end
                    if top > deepest then deepest = top end
                    stack[top] = 'o'
                end
            elseif c == 91 then -- [
                i = i + 1
                skip_ws()
                if byte(s, i) == 93 then
                    i = i + 1
                    want_value = false
                    if top + 1 > deepest then deepest = top + 1 end
                else
                    top = top + 1
                    if top > MAX_DEPTH then return false end
                    if top > deepest then deepest = top end
                    stack[top] = 'a'
                end
            elseif c == 34 then
                if not scan_string() then return false end
                want_value = false
            elseif c == 116 and sub(s, i, i + 3) == 'true' then
                i = i + 4
                want_value = false
            elseif c == 102 and sub(s, i, i + 4) == 'false' then
                i = i + 5
                want_value = false
            elseif c == 110 and sub(s, i, i + 3) == 'null' then
                i = i + 4
                want_value = false
            elseif c == 45 or (c and c >= 48 and c <= 57) then
                if not scan_number() then return false end
                want_value = false
            else
                return false
            end
        else
            -- A value just ended: close containers or go to the next member.
            if top == 0 then return i > n, deepest end
            local c = byte(s, i)
            if stack[top] == 'o' then
                if c == 44 then -- ,
                    i = i + 1
                    skip_ws()
                    if not scan_string() then return false end
                    skip_ws()
                    if byte(s, i) ~= 58 then return false end
                    i = i + 1
                    want_value = true
                elseif c == 125 then
                    i = i + 1
                    top = top - 1
                else
                    return false
                end
            else
                if c == 44 then
                    i = i + 1
                    want_value = true
                elseif c == 93 then
                    i = i + 1
                    top = top - 1
                else
                    return false
                end
            end
        end
    end
end

-- Returns s and true when s is valid UTF-8, else a copy with every byte that
-- does not start a valid sequence replaced by U+FFFD, and false. The gateway
-- parses envelopes with UTF-8 validation on and browsers close a WebSocket
-- on invalid text, so bad bytes must not reach the envelope verbatim.
-- Overlong forms, surrogates and code points past U+10FFFF are invalid.
local function utf8_fix(s)
    local find, byte, sub = string.find, string.byte, string.sub
    if not find(s, '[\128-\255]') then return s, true end
    local out, start, i = {}, 1, 1
    while true do
        local k = find(s, '[\128-\255]', i)
        if not k then break end
        local c = byte(s, k)
        local len = 0
        if c >= 0xC2 and c <= 0xDF then len = 2
        elseif c >= 0xE0 and c <= 0xEF then len = 3
        elseif c >= 0xF0 and c <= 0xF4 then len = 4 end
        local ok = len > 0
        for j = 1, len - 1 do
            local cc = byte(s, k + j)
            if not cc or cc < 0x80 or cc > 0xBF then ok = false break end
        end
        if ok then
            local c2 = byte(s, k + 1)
            if (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F)
                or (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 > 0x8F) then
                ok = false
            end
        end
        if ok then
            i = k + len
        else
            out[#out + 1] = sub(s, start, k - 1)
            out[#out + 1] = '\239\191\189'
            i = k + 1
            start = i
        end
    end
    if start == 1 then return s, true end
    out[#out + 1] = sub(s, start)
    return table.concat(out), false
end

-- The stored and published envelope. The caller's text is never re-encoded
-- (cjson would turn [] into {} and rewrite numbers): an envelope object gets
-- its id spliced in before its final '}', anything else is wrapped.
local function envelope(payload, id)
    local idpart = '"id":"' .. id .. '"'
    local text, utf8_ok = utf8_fix(payload)
    local valid, depth = false, 0
    if utf8_ok then valid, depth = json_valid(payload) end
    if valid then
        if string.find(payload, '^[ \t\r\n]*{') then
            local ok, v = pcall(cjson.decode, payload)
            if ok and type(v) == 'table' and v.data ~= nil then
                -- Greedy .* finds the last '}', the object's own.
                local body = string.match(payload, '^(.*)}[ \t\r\n]*$')
                return body .. ',' .. idpart .. '}'
            end
        end
        if depth < MAX_DEPTH then
            return '{"data":' .. payload .. ',' .. idpart .. '}'
        end
    end
    return '{"data":' .. cjson.encode(text) .. ',' .. idpart .. '}'
end

-- The numeric part of a stream id "<ms>-<seq>".
local function stream_ms(sid)
    if type(sid) ~= 'string' then return nil end
    return tonumber(string.match(sid, '^(%d+)-'))
end

-- History must say when it no longer reaches back (SPEC §4 Recovery), and
-- the history function learns that from XINFO's max-deleted-entry-id. But
-- Redis 7.0 only raises that field on XDEL, not when XADD MAXLEN trims, so
-- we note the newest entry the trim will drop and record it with XSETID
-- MAXDELETEDID after the XADD. XDEL-ing the oldest entries instead was
-- turned down: it is the same work and reads less plainly. Returns the
-- stream id to record, or nil when nothing is trimmed or a larger one is
-- already recorded (XSETID would lower it).
local function trimmed_by_next_add(hkey, new_sid)
    local len = redis.call('XLEN', hkey)
    local drop = len + 1 - HISTORY_SIZE
    if drop <= 0 then return nil end
    local newest
    if drop > len then
        newest = new_sid -- history size 0: the new entry goes at once
    else
        local old = redis.call('XRANGE', hkey, '-', '+', 'COUNT', drop)
        if #old == 0 then return nil end
        newest = old[#old][1]
    end
    if len > 0 then
        local info = redis.call('XINFO', 'STREAM', hkey)
        for k = 1, #info - 1, 2 do
            if info[k] == 'max-deleted-entry-id' then
                local cur = stream_ms(info[k + 1])
                if cur and cur >= stream_ms(newest) then return nil end
            end
        end
    end
    return newest
end

-- How a function is called: min..max arguments after its keys, and either
-- no key or, when key_of is set, exactly the one key key_of(args) names.
-- The key is only compared, never used, so on one Redis both forms do the
-- same; comparing it keeps a client from routing a call by the key of some
-- other channel. Checked first by every function, so a call of the wrong
-- shape touches nothing.
local function call_shape(fn, tail, min, max, key_text, key_of)
    local usage = fn .. ' 0 ' .. tail
    if key_of then
        usage = usage .. ', or ' .. fn .. ' 1 ' .. key_text .. ' ' .. tail
    end
    return { usage = usage, min = min, max = max, key_text = key_text, key_of = key_of }
end

-- The error reply for a call that does not fit its shape, or nil. The
-- expected key is shown as written in the usage, never built from the
-- arguments, which are not checked yet and must not reach the reply.
local function bad_call(keys, args, shape)
    if #args < shape.min or #args > shape.max or #keys > 1
        or (#keys == 1 and not shape.key_of) then
        return redis.error_reply('ERR wrong number of arguments: ' .. shape.usage)
    end
    -- A cluster runs a zero-key call on whichever node got it, which need
    -- not own the channel's slot: refused rather than done on the wrong shard.
    if CLUSTER and #keys == 0 then
        return redis.error_reply('ERR Redis Cluster takes only the one-key form: ' ..
            shape.usage)
    end
    if #keys == 1 and keys[1] ~= shape.key_of(args) then
        return redis.error_reply('ERR wrong key for these arguments: need ' ..
            shape.key_text)
    end
    return nil
end

-- The error reply for a channel name that is invalid or, unless reserved_ok,
-- reserved for the gateways' own use (leading _), or nil.
local function bad_channel(ch, reserved_ok)
    if not valid_channel(ch) then
        return redis.error_reply('ERR invalid channel name: ' ..
            'need 1..128 bytes of A-Z a-z 0-9 _ - . : @')
    end
    if not reserved_ok and string.sub(ch, 1, 1) == '_' then
        return redis.error_reply('ERR channel names starting with _ are reserved')
    end
    return nil
end

-- The error reply for a user id whose user channel is invalid, or nil. An
-- empty id names nobody: the gateways refuse the channel "user:" too.
local function bad_user(user)
    if user == '' or not valid_channel('user:' .. user) then
        return redis.error_reply('ERR invalid user: need 1..123 bytes of ' ..
            'A-Z a-z 0-9 _ - . : @ (user:<user> is a channel name)')
    end
    return nil
end

-- At most 19 digits, so that an id always fits the unsigned 64-bit integer
-- the gateway parses it into.
local function bad_since(since)
    if not string.find(since, '^%d+$') or #since > 19 then
        return redis.error_reply('ERR since must be a decimal id of 1..19 digits')
    end
    return nil
end

local function history_route(args) return KEY.history_route(args[1]) end
local PUBLISH = call_shape('FCALL @FN@publish', '<channel> <payload>', 2, 2,
    PREFIX .. '{<channel>}:history', history_route)
-- history is the gateway's own call: zero keys on one Redis, the one-key
-- form in a cluster, where the stream lives on the channel's shard.
local HISTORY = call_shape('FCALL_RO @FN@history', '<channel> <since>', 2, 2,
    PREFIX .. '{<channel>}:history', history_route)

-- The last id issued on channel: the one counter of all channels on one
-- Redis; in a cluster the channel's own, its stream's last-generated-id,
-- which XADD keeps even when MAXLEN trims every entry. A stream that has
-- expired forgets it, but only --history-ttl after its last message, by
-- when now_ms * 1000 has long passed it.
local function last_id(hkey)
    if not CLUSTER then
        return tonumber(redis.call('GET', SEQ_KEY) or '')
    end
    if redis.call('EXISTS', hkey) == 0 then return nil end
    local info = redis.call('XINFO', 'STREAM', hkey)
    for k = 1, #info - 1, 2 do
        if info[k] == 'last-generated-id' then return stream_ms(info[k + 1]) end
    end
    return nil
end

local function publish(keys, args)
    local bad = bad_call(keys, args, PUBLISH) or bad_channel(args[1], false)
    if bad then return bad end
    local channel, payload = args[1], args[2]
    if #payload > MAX_BYTES then
        return redis.error_reply('ERR payload too large: ' .. #payload ..
            ' bytes, limit ' .. MAX_BYTES)
    end

    local hkey = KEY.history(channel)
    local id = now_ms() * 1000
    local last = last_id(hkey)
    if last and last + 1 > id then
        id = last + 1
    end
    id = fmt_id(id)
    if not CLUSTER then redis.call('SET', SEQ_KEY, id) end

    local env = envelope(payload, id)
    local sid = id .. '-0'
    local trimmed = trimmed_by_next_add(hkey, sid)
    redis.call('XADD', hkey, 'MAXLEN', HISTORY_SIZE, sid, 'p', env)
    if trimmed then
        redis.call('XSETID', hkey, sid, 'MAXDELETEDID', trimmed)
    end
    redis.call('EXPIRE', hkey, HISTORY_TTL)
    redis.call(CLUSTER and 'SPUBLISH' or 'PUBLISH', KEY.channel(channel), env)
    return id
end

local function history(keys, args)
    -- history has always read any valid name, reserved ones included
    local bad = bad_call(keys, args, HISTORY) or bad_channel(args[1], true)
        or bad_since(args[2])
    if bad then return bad end
    local channel, since = args[1], args[2]
    local since_n = tonumber(since)
    local hkey = KEY.history(channel)

    local complete = 1
    local reaches_back = false
    if redis.call('EXISTS', hkey) == 1 then
        local info = redis.call('XINFO', 'STREAM', hkey)
        for k = 1, #info - 1, 2 do
            local name, val = info[k], info[k + 1]
            if name == 'max-deleted-entry-id' then
                local del = stream_ms(val)
                if del and del > since_n then
                    complete = 0 -- an entry after since was trimmed
                end
            elseif name == 'first-entry' and type(val) == 'table' then
                local first = stream_ms(val[1])
                if first and first <= since_n then
                    reaches_back = true
                end
            end
        end
    end
    -- Nothing at or before since: if since is older than the TTL, the stream
    -- may have expired in between and messages after since are gone.
    if not reaches_back and
        now_ms() - math.floor(since_n / 1000) > HISTORY_TTL * 1000 then
        complete = 0
    end

    local out = { complete }
    local entries = redis.call('XRANGE', hkey, '(' .. since .. '-0', '+')
    for _, e in ipairs(entries) do
        local fields = e[2]
        local env
        for k = 1, #fields - 1, 2 do
            if fields[k] == 'p' then env = fields[k + 1] end
        end
        if env then
            out[#out + 1] = string.match(e[1], '^(%d+)-')
            out[#out + 1] = env
        end
    end
    return out
end

-- Control orders (SPEC §7) -------------------------------------------------

local function control_key() return CONTROL_ROUTING_KEY end

local DISCONNECT = call_shape('FCALL @FN@disconnect', '<user> [<json options>]',
    1, 2, CONTROL_ROUTING_KEY, control_key)
local SUBSCRIBE = call_shape('FCALL @FN@subscribe', '<user> <channel> [<since>]',
    2, 3, CONTROL_ROUTING_KEY, control_key)
local UNSUBSCRIBE = call_shape('FCALL @FN@unsubscribe', '<user> <channel>',
    2, 2, CONTROL_ROUTING_KEY, control_key)

-- Each order is one compact JSON object, written by hand so that member
-- order is fixed and numbers stay integers (cjson writes 1764277200 as
-- 1.7642772e+09). Strings go through cjson.encode, which escapes what JSON
-- needs; it also writes / as \/, which every JSON parser reads as /. The
-- reason is cut before it is encoded, so escapes never count against its
-- 100 bytes and a cut can never split one.
local function send_order(order)
    return redis.call(CLUSTER and 'SPUBLISH' or 'PUBLISH', CONTROL_CHANNEL, order)
end

-- The longest prefix of the valid UTF-8 text s that has at most max bytes
-- and ends on a character boundary.
local function utf8_cut(s, max)
    if #s <= max then return s end
    local n = max
    while n > 0 do
        local c = string.byte(s, n + 1)
        if c < 0x80 or c >= 0xC0 then break end -- not 10xxxxxx: a boundary
        n = n - 1
    end
    return string.sub(s, 1, n)
end

local OPTION_TYPES = { reason = 'string', reconnect = 'boolean', revoke = 'boolean' }

-- Disconnect options: a table {reason, reconnect, revoke} with the defaults
-- filled in, or nil and the error reply. json_valid decides what is JSON,
-- because cjson.decode also takes NaN, 0x10 and 01; the text decides what is
-- an object, because cjson decodes [] and {} alike. JSON null decodes to
-- cjson.null, a userdata, so a null member fails its type check instead of
-- passing for absent or false.
local function parse_options(text)
    local opts = { reason = '', reconnect = true, revoke = false }
    if text == nil then return opts end
    if not json_valid(text) then
        return nil, redis.error_reply('ERR disconnect options are not JSON')
    end
    if not string.find(text, '^[ \t\r\n]*{') then
        return nil, redis.error_reply('ERR disconnect options must be a JSON object')
    end
    -- json_valid passes lone UTF-16 surrogates (\ud800), cjson does not
    local ok, v = pcall(cjson.decode, text)
    if not ok or type(v) ~= 'table' then
        return nil, redis.error_reply('ERR disconnect options are not valid Unicode')
    end
    for name, val in pairs(v) do
        local want = OPTION_TYPES[name]
        if not want then
            -- the name is not echoed: it may hold any bytes
            return nil, redis.error_reply('ERR unknown disconnect option: ' ..
                'allowed are reason, reconnect, revoke')
        end
        if type(val) ~= want then
            return nil, redis.error_reply('ERR disconnect option ' .. name ..
                ' must be a ' .. want)
        end
        opts[name] = val
    end
    -- json_valid does not look at bytes >= 0x80, and the reason ends up in
    -- a close frame, which browsers refuse unless it is UTF-8.
    if not select(2, utf8_fix(opts.reason)) then
        return nil, redis.error_reply('ERR disconnect option reason is not valid UTF-8')
    end
    opts.reason = utf8_cut(opts.reason, MAX_REASON)
    return opts
end

-- A lapsed revocation refuses nothing any more, but the hash only expires
-- as a whole, REVOKE_TTL after its newest field: with revocations coming
-- steadily the old ones would stay forever and every node would load them
-- at each reconnect. So every disconnect sweeps them, O(fields), which is
-- at most the revocations of one REVOKE_TTL. A value that is not a unix
-- second was not written by this function and is left alone.
local function drop_lapsed(now)
    local all = redis.call('HGETALL', REVOKED_KEY)
    for k = 1, #all - 1, 2 do
        local at = all[k + 1]
        if string.find(at, '^%d+$') and tonumber(at) + REVOKE_TTL <= now then
            redis.call('HDEL', REVOKED_KEY, all[k])
        end
    end
end

local function disconnect(keys, args)
    local bad = bad_call(keys, args, DISCONNECT) or bad_user(args[1])
    if bad then return bad end
    local opts, err = parse_options(args[2])
    if not opts then return err end
    local user = args[1]

    -- TIME's seconds are a string of digits: written and published as they
    -- are, they can never turn into a float.
    local sec = redis.call('TIME')[1]
    drop_lapsed(tonumber(sec))
    local code = (opts.revoke or not opts.reconnect) and 4003 or 4000
    local order = '{"type":"disconnect","user":' .. cjson.encode(user) ..
        ',"code":' .. code .. ',"reason":' .. cjson.encode(opts.reason)
    if opts.revoke then
        redis.call('HSET', REVOKED_KEY, user, sec)
        redis.call('EXPIRE', REVOKED_KEY, REVOKE_TTL)
        order = order .. ',"revoked_at":' .. sec
    end
    return send_order(order .. '}')
end

local function subscribe(keys, args)
    local bad = bad_call(keys, args, SUBSCRIBE) or bad_user(args[1])
        or bad_channel(args[2], false) or (args[3] and bad_since(args[3]))
    if bad then return bad end
    local order = '{"type":"subscribe","user":' .. cjson.encode(args[1]) ..
        ',"channel":' .. cjson.encode(args[2])
    -- a string like every id: 19 digits do not fit a double
    if args[3] then order = order .. ',"since":' .. cjson.encode(args[3]) end
    return send_order(order .. '}')
end

local function unsubscribe(keys, args)
    local bad = bad_call(keys, args, UNSUBSCRIBE) or bad_user(args[1])
        or bad_channel(args[2], false)
    if bad then return bad end
    return send_order('{"type":"unsubscribe","user":' .. cjson.encode(args[1]) ..
        ',"channel":' .. cjson.encode(args[2]) .. '}')
end

redis.register_function('@FN@publish', publish)
redis.register_function{
    function_name = '@FN@history',
    callback = history,
    flags = { 'no-writes' },
}

redis.register_function('@FN@disconnect', disconnect)
redis.register_function('@FN@subscribe', subscribe)
redis.register_function('@FN@unsubscribe', unsubscribe)

-- Presence (SPEC §8) ---------------------------------------------------------
--
-- Per channel C a hash (field <node-id>/<conn-id>, value the entry's JSON);
-- beside all of them one sorted set of nodes scored with the unix ms at which
-- each node's entries stop counting, which every node pushes forward with
-- presence_beat every --presence-ttl / 3. A dead node's entries are skipped by
-- every read at once and deleted by the next beat of any live node, through
-- the node's index (a set of the channels it has entries in). One heartbeat
-- per node costs Redis the same at ten connections as at a million; a score
-- per entry would cost one sorted-set write per connection per interval.
--
-- Three counters per channel keep the stats exact and O(nodes) instead of
-- O(entries), also while a node with entries in C is dead and not yet swept
-- (a channel of 10 000 members took 14-28 ms by scanning, see README):
--   presence-count: entries per node; clients is the live nodes' sum.
--   presence-users: per user, its entries per node ("n1 2 n2 1"); its
--     length is the number of users.
--   in presence-count too, per set of nodes (field " n1 n2": a node id
--     holds no space), how many users have entries on exactly those nodes.
--     With dead nodes, users is the length minus the users of the sets
--     made of dead nodes only.
-- They change only with the entries, in the same function call. The node
-- sets are few (one per node, plus the combinations users with several
-- connections actually span; at worst one per user), so the stats read
-- O(nodes + sets), not one field per user (scripts/presence-stats-time.py:
-- 10 000 members, half on a dead node: 0.025 ms median, 0.6 ms at worst;
-- the scan it replaces took 14-28 ms). Two ways were
-- measured and turned down: a per-(channel, node) count of users, so that a
-- dead node's users could be subtracted, reads O(dead node's users), 5 to 22
-- ms there and 53 bytes more per member; sweeping the dead node's entries in
-- the read would make presence_stats write, and it is no-writes so that
-- FCALL_RO and replicas can answer (and finding a node's entries in C still
-- scans the hash). The node sets cost a few bytes per member (the node's
-- name in the user's field, 0 to 24 bytes by its length) and nothing in a
-- user channel, whose users is 0 or 1; they share presence-count's key
-- because a key of their own cost 136 bytes per room of one member.
--
-- The gateway sends only channel names and its node id: every presence key
-- is named by the KEY helpers here. The heartbeats and the node's index are
-- one Redis's (and Sentinel's) layout. In a cluster a function may touch
-- only its channel's slot, so there is no node-wide heartbeat and no index:
-- the node's liveness in C is its score in {C}:presence-nodes, set by every
-- one-key presence_update of C and pushed forward by a one-key presence_beat
-- of C every ttl / 3 for each channel the node has entries in (it knows
-- them; the cluster keeps no list). Both carry the number of entries the
-- node holds in C, and answer 0 when Redis has another number (entries lost
-- with a failover, swept while the node stalled, or left by an earlier run
-- under the same node id): the gateway then resets C and writes it again.
-- A beat of C also drops the entries of C's dead nodes, and every write
-- PEXPIREs C's presence keys to KEEP_TTLS ttl, so that a channel whose
-- every node died disappears by itself.
function KEY.presence_nodes(ch)
    if CLUSTER then return PREFIX .. '{' .. ch .. '}:presence-nodes' end
    return PREFIX .. 'presence-nodes'
end
-- field <node> -> its entries in C; field " <node> <node>..." -> the users
-- with entries on exactly those nodes (not in a user channel)
function KEY.presence_count(ch)
    if CLUSTER then return PREFIX .. '{' .. ch .. '}:presence-count' end
    return PREFIX .. 'presence-count:' .. ch
end
-- field <user> -> its entries in C per node, "<node> <n> <node> <n>..." in
-- node order (node ids hold no space; anonymous entries are not counted).
-- A user channel holds only its own user's entries (the gateway never
-- records a connection in another user's channel), so it has none: one key
-- less per connected user.
function KEY.presence_users(ch)
    if CLUSTER then return PREFIX .. '{' .. ch .. '}:presence-users' end
    return PREFIX .. 'presence-users:' .. ch
end
-- the set of channels a node has entries in (one Redis)
function KEY.presence_index(node) return PREFIX .. 'presence-node:' .. node end

local PRESENCE = call_shape('FCALL @FN@presence', '<channel>', 1, 1,
    PREFIX .. '{<channel>}:presence',
    function(args) return KEY.presence_route(args[1]) end)
local PRESENCE_STATS = call_shape('FCALL @FN@presence_stats', '<channel>', 1, 1,
    PREFIX .. '{<channel>}:presence',
    function(args) return KEY.presence_route(args[1]) end)
-- The gateway's own calls: the zero-key form on one Redis (node-wide, any
-- channels); in a cluster the one-key form, one channel C per call, keyed
-- <prefix>{C}:presence. Indexed by the number of keys.
local function own_shape(fn, tail0, min0, max0, tail1, min1, max1, key_of)
    local key_text = PREFIX .. '{<channel>}:presence'
    local usage = fn .. ' 0 ' .. tail0 .. ', or ' .. fn .. ' 1 ' .. key_text .. ' ' .. tail1
    return {
        [0] = { usage = usage, min = min0, max = max0 },
        [1] = { usage = usage, min = min1, max = max1, key_text = key_text, key_of = key_of },
    }
end
local OPS_TEXT = '(+ <channel> <conn> <value> | - <channel> <conn> | ! <channel> <conn>)...'
local PRESENCE_UPDATE = own_shape('FCALL @FN@presence_update',
    '<node> ' .. OPS_TEXT, 1, 1000000,
    '<node> <ttl ms> <entries after> ' .. OPS_TEXT, 6, 1000000,
    function(args) return KEY.presence_route(args[5] or '') end)
local PRESENCE_BEAT = own_shape('FCALL @FN@presence_beat', '<node> <ttl ms>', 2, 2,
    '<node> <ttl ms> <channel> <entries>', 4, 4,
    function(args) return KEY.presence_route(args[3]) end)
local PRESENCE_RESET = own_shape('FCALL @FN@presence_reset', '<node>', 1, 1,
    '<node> <channel>', 2, 2,
    function(args) return KEY.presence_route(args[2]) end)
-- In a cluster a channel's presence keys live this many ttl after the last
-- write or beat of any node in it.
local KEEP_TTLS = 3

-- The node of a field "<node>/<conn>": node ids may hold '/', conn ids not.
local function field_node(f)
    return string.match(f, '^(.*)/[^/]*$')
end

-- The user of an entry: the gateway writes "user" first, and user ids need
-- no JSON escapes (their alphabet is a channel name's). nil: anonymous.
local function entry_user(v)
    return string.match(v, '^{"user":"([^"]*)"')
end

local function node_alive(channel, node, now)
    local score = tonumber(redis.call('ZSCORE', KEY.presence_nodes(channel), node) or '')
    return score ~= nil and score > now
end

local function count_down(key, field)
    if redis.call('HINCRBY', key, field, -1) <= 0 then
        redis.call('HDEL', key, field)
    end
end

local function is_user_channel(ch)
    return string.sub(ch, 1, 5) == 'user:'
end

-- A user's entries per node, from its presence-users field, in node order.
local function user_nodes(v)
    local t = {}
    for n, c in string.gmatch(v or '', '(%S+) (%d+)') do t[#t + 1] = { n, tonumber(c) } end
    return t
end

-- Moves user u's count of entries on node in C by d (1 or -1), and the
-- user from its old node set to its new one when that changed.
local function user_count(channel, u, node, d)
    local key = KEY.presence_users(channel)
    local v = redis.call('HGET', key, u)
    if v and not string.find(v, ' ', 1, true) then
        -- a bare count, written before the node sets: kept a count until
        -- it goes, so an upgraded Redis's users still come and go exactly
        -- (only the dead-node window may count them until then)
        if d > 0 then redis.call('HINCRBY', key, u, d) else count_down(key, u) end
        return
    end
    local t = user_nodes(v)
    local i = 1
    while t[i] and t[i][1] < node do i = i + 1 end
    local old, names, moved = {}, {}, true
    for _, e in ipairs(t) do old[#old + 1] = e[1] end
    if t[i] and t[i][1] == node then
        t[i][2] = t[i][2] + d
        if t[i][2] > 0 then moved = false else table.remove(t, i) end
    elseif d > 0 then
        table.insert(t, i, { node, d })
    else
        return
    end
    local val = {}
    for _, e in ipairs(t) do
        names[#names + 1] = e[1]
        val[#val + 1] = e[1] .. ' ' .. e[2]
    end
    if #t == 0 then
        redis.call('HDEL', key, u)
    else
        redis.call('HSET', key, u, table.concat(val, ' '))
    end
    if moved then   -- the node set changed
        local sets = KEY.presence_count(channel)
        if #old > 0 then count_down(sets, ' ' .. table.concat(old, ' ')) end
        if #names > 0 then redis.call('HINCRBY', sets, ' ' .. table.concat(names, ' '), 1) end
    end
end

local function presence_add(channel, node, field, value)
    if redis.call('HSET', KEY.presence(channel), field, value) == 1 then
        redis.call('HINCRBY', KEY.presence_count(channel), node, 1)
        local u = entry_user(value)
        if u and not is_user_channel(channel) then user_count(channel, u, node, 1) end
    end
end

local function presence_del(channel, node, field)
    local key = KEY.presence(channel)
    local v = redis.call('HGET', key, field)
    if not v then return end
    redis.call('HDEL', key, field)
    count_down(KEY.presence_count(channel), node)
    local u = entry_user(v)
    if u and not is_user_channel(channel) then user_count(channel, u, node, -1) end
end

-- The number of live entries in C from the counters, the list of the dead
-- nodes that still have entries there, and the node sets' fields (name,
-- count, name, count...).
local function live_count(channel)
    local counts = redis.call('HGETALL', KEY.presence_count(channel))
    local now = now_ms()
    local n, dead, sets = 0, {}, {}
    for k = 1, #counts - 1, 2 do
        local f = counts[k]
        if string.byte(f, 1) == 32 then
            sets[#sets + 1] = f
            sets[#sets + 1] = counts[k + 1]
        elseif node_alive(channel, f, now) then
            n = n + tonumber(counts[k + 1])
        else
            dead[#dead + 1] = f
        end
    end
    return n, dead, sets
end

-- How many users of C have entries on the dead nodes only: the users of
-- the node sets made of dead nodes alone.
local function users_only_on(dead, sets)
    local is_dead = {}
    for _, node in ipairs(dead) do is_dead[node] = true end
    local gone = 0
    for k = 1, #sets - 1, 2 do
        local all = true
        for node in string.gmatch(sets[k], '%S+') do
            if not is_dead[node] then
                all = false
                break
            end
        end
        if all then gone = gone + tonumber(sets[k + 1]) end
    end
    return gone
end

-- The scan: the live entries of channel as a list of values, and how many
-- users they hold. Each node's heartbeat is looked up once.
local function presence_scan(channel)
    local all = redis.call('HGETALL', KEY.presence(channel))
    local now = now_ms()
    local alive, vals, users, nusers = {}, {}, {}, 0
    for k = 1, #all - 1, 2 do
        local node = field_node(all[k]) or ''
        local a = alive[node]
        if a == nil then
            a = node_alive(channel, node, now)
            alive[node] = a
        end
        if a then
            local v = all[k + 1]
            vals[#vals + 1] = v
            local u = entry_user(v)
            if u and not users[u] then
                users[u] = true
                nusers = nusers + 1
            end
        end
    end
    return vals, nusers
end

local function presence(keys, args)
    local bad = bad_call(keys, args, PRESENCE) or bad_channel(args[1], false)
    if bad then return bad end
    local vals
    local _, dead = live_count(args[1])
    if #dead == 0 then
        vals = redis.call('HVALS', KEY.presence(args[1]))
    else
        vals = presence_scan(args[1])
    end
    return '[' .. table.concat(vals, ',') .. ']'
end

local function presence_stats(keys, args)
    local bad = bad_call(keys, args, PRESENCE_STATS) or bad_channel(args[1], false)
    if bad then return bad end
    local clients, dead, sets = live_count(args[1])
    local users
    if is_user_channel(args[1]) then
        users = clients > 0 and 1 or 0
    else
        users = redis.call('HLEN', KEY.presence_users(args[1]))
        if #dead > 0 then users = users - users_only_on(dead, sets) end
    end
    return '{"clients":' .. clients .. ',"users":' .. users .. '}'
end

-- The node's entries in C, as C's counters have them.
local function node_entries(channel, node)
    return tonumber(redis.call('HGET', KEY.presence_count(channel), node) or '0')
end

-- C's presence keys live at least KEEP_TTLS ttl more (cluster only: on one
-- Redis the node index and the sweep remove what a dead node left). Never
-- shortened: a node with a shorter --presence-ttl (a rolling change, a
-- mistake) must not expire the entries of nodes with a longer one.
local function presence_keep(channel, ttl)
    if not CLUSTER then return end
    local ms = KEEP_TTLS * ttl
    for _, k in ipairs({ KEY.presence(channel), KEY.presence_count(channel),
                         KEY.presence_users(channel), KEY.presence_nodes(channel) }) do
        local left = redis.call('PTTL', k)
        if left == -1 or (left >= 0 and left < ms) then
            redis.call('PEXPIRE', k, ms)
        end
    end
end

local function bad_ttl(ttl)
    if not ttl or ttl < 1 then
        return redis.error_reply('ERR ttl must be a positive number of ms')
    end
    return nil
end

-- Adds and removes one node's entries, in order. "!" is a removal of the
-- node's last entry in that channel, which also takes the channel out of the
-- node's index. The one-key form (one channel, the key's) also scores the
-- node in C's presence-nodes while it has entries there and answers 1 when
-- C then holds the number of the node's entries the gateway gave, 0 when
-- not (the gateway writes C again); the zero-key form answers the number
-- of changes.
local function presence_update(keys, args)
    local bad = bad_call(keys, args, PRESENCE_UPDATE[#keys] or PRESENCE_UPDATE[0])
    if bad then return bad end
    local node = args[1]
    local index = KEY.presence_index(node)
    local i, n = 2, 0
    local only, ttl, want
    if #keys == 1 then
        ttl, want = tonumber(args[2]), tonumber(args[3])
        bad = bad_ttl(ttl)
        if bad then return bad end
        if not want then return redis.error_reply('ERR entries must be a number') end
        only, i = args[5], 4
        if CLUSTER then index = nil end
        -- checked before anything is written: a function's writes stay
        -- when it answers an error
        local j = i
        while j <= #args do
            if args[j + 1] ~= only then
                return redis.error_reply('ERR the one-key presence update takes the key\'s channel only')
            end
            j = j + (args[j] == '+' and 4 or 3)
        end
    end
    while i <= #args do
        local op, channel, conn = args[i], args[i + 1], args[i + 2]
        if not conn or not valid_channel(channel) then
            return redis.error_reply('ERR bad presence update at argument ' .. i)
        end
        local field = node .. '/' .. conn
        if op == '+' then
            if not args[i + 3] then
                return redis.error_reply('ERR presence update: value missing')
            end
            presence_add(channel, node, field, args[i + 3])
            if index then redis.call('SADD', index, channel) end
            i = i + 4
        elseif op == '-' or op == '!' then
            presence_del(channel, node, field)
            if op == '!' and index then redis.call('SREM', index, channel) end
            i = i + 3
        else
            return redis.error_reply('ERR bad presence update op at argument ' .. i)
        end
        n = n + 1
    end
    if not only then return n end
    local have = node_entries(only, node)
    if have > 0 then
        redis.call('ZADD', KEY.presence_nodes(only), now_ms() + ttl, node)
    elseif CLUSTER then
        -- (on one Redis presence-nodes is the node-wide heartbeat)
        redis.call('ZREM', KEY.presence_nodes(only), node)
    end
    presence_keep(only, ttl)
    if have == want then return 1 end
    return 0
end

-- Deletes every entry of node in channel.
local function presence_drop_in(channel, node)
    local prefix = node .. '/'
    local fields = redis.call('HKEYS', KEY.presence(channel))
    for _, f in ipairs(fields) do
        if string.sub(f, 1, #prefix) == prefix and field_node(f) == node then
            presence_del(channel, node, f)
        end
    end
end

-- Deletes up to budget channels' worth of a node's entries; true when none
-- are left (the node and its index are then gone too).
local function presence_drop_node(node, budget)
    local index = KEY.presence_index(node)
    local chans = redis.call('SPOP', index, budget)
    for _, channel in ipairs(chans) do
        presence_drop_in(channel, node)
    end
    if redis.call('SCARD', index) == 0 then
        redis.call('ZREM', KEY.presence_nodes(''), node)
        return true
    end
    return false
end

-- A node's heartbeat: its entries count for ttl ms more (Redis's clock, so
-- nodes' clocks need not agree). Also sweeps a few dead nodes' entries.
-- Returns 1 when the node was still alive, 0 when its entries may have been
-- swept already (it must then reset and write them again).
--
-- The one-key form is one channel's beat (a cluster's): the node's score in
-- C moves on, C's dead nodes' entries go, C's keys live on; 1 when C holds
-- the number of the node's entries given, else 0 (write C again).
local function presence_beat_in(node, ttl, channel, want)
    local nodes = KEY.presence_nodes(channel)
    local now = now_ms()
    redis.call('ZADD', nodes, now + ttl, node)
    -- the dead: nodes with entries here and no live score (also none at
    -- all, which only a lost write leaves), and expired scores
    local gone = {}
    local counts = redis.call('HGETALL', KEY.presence_count(channel))
    for k = 1, #counts - 1, 2 do
        local f = counts[k]
        if #gone < 16 and string.byte(f, 1) ~= 32 and not node_alive(channel, f, now) then
            gone[#gone + 1] = f
        end
    end
    for _, d in ipairs(redis.call('ZRANGEBYSCORE', nodes, '-inf', now, 'LIMIT', 0, 16)) do
        gone[#gone + 1] = d
    end
    for _, d in ipairs(gone) do
        presence_drop_in(channel, d)
        redis.call('ZREM', nodes, d)
    end
    presence_keep(channel, ttl)
    if node_entries(channel, node) == want then return 1 end
    return 0
end

local function presence_beat(keys, args)
    local bad = bad_call(keys, args, PRESENCE_BEAT[#keys] or PRESENCE_BEAT[0])
    if bad then return bad end
    local node, ttl = args[1], tonumber(args[2])
    bad = bad_ttl(ttl)
    if bad then return bad end
    if #keys == 1 then
        local want = tonumber(args[4])
        bad = bad_channel(args[3], false)
        if bad then return bad end
        if not want then return redis.error_reply('ERR entries must be a number') end
        return presence_beat_in(node, ttl, args[3], want)
    end
    local nodes = KEY.presence_nodes('')
    local now = now_ms()
    local old = tonumber(redis.call('ZSCORE', nodes, node) or '')
    redis.call('ZADD', nodes, now + ttl, node)
    local dead = redis.call('ZRANGEBYSCORE', nodes, '-inf', now, 'LIMIT', 0, 4)
    for _, d in ipairs(dead) do
        presence_drop_node(d, 1000)
    end
    if old and old > now then return 1 end
    return 0
end

-- Every entry of the node goes: a node that stops, or that writes all its
-- entries again after a reconnect.
-- The one-key form drops the node's entries in one channel only.
local function presence_reset(keys, args)
    local bad = bad_call(keys, args, PRESENCE_RESET[#keys] or PRESENCE_RESET[0])
    if bad then return bad end
    if #keys == 1 then
        bad = bad_channel(args[2], false)
        if bad then return bad end
        presence_drop_in(args[2], args[1])
        if CLUSTER then
            redis.call('ZREM', KEY.presence_nodes(args[2]), args[1])
        else
            redis.call('SREM', KEY.presence_index(args[1]), args[2])
        end
        return 1
    end
    while not presence_drop_node(args[1], 10000) do end
    return 1
end

redis.register_function{
    function_name = '@FN@presence',
    callback = presence,
    flags = { 'no-writes' },
}
redis.register_function{
    function_name = '@FN@presence_stats',
    callback = presence_stats,
    flags = { 'no-writes' },
}
redis.register_function('@FN@presence_update', presence_update)
redis.register_function('@FN@presence_beat', presence_beat)
redis.register_function('@FN@presence_reset', presence_reset)
