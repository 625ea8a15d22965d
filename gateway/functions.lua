#!lua name=@FN@lib
--
-- pushgate's Redis function library (SPEC §3). This file is a TEMPLATE: the
-- gateway replaces @PREFIX@, @FN@, @HISTORY_SIZE@, @HISTORY_TTL@ and
-- @MAX_BYTES@ by plain text substitution and loads the result with
-- FUNCTION LOAD REPLACE at start and after every reconnect, so a Redis restart
-- without persistence cannot lose it. @PREFIX@ only ever holds
-- [A-Za-z0-9_.:-], so it is safe inside a single-quoted Lua string.
--
--   FCALL    @FN@publish 0 <channel> <payload>  -> new id (bulk string)
--   FCALL_RO @FN@history 0 <channel> <since>    -> {complete, id, env, ...}
--
-- Ids are decimal integers max(last + 1, now_ms * 1000) kept in <prefix>seq.
-- Lua numbers are doubles: ids stay below 2^53, and they are always written
-- with string.format('%.0f') because tostring() would give 1.8e+15.

local PREFIX = '@PREFIX@'
local HISTORY_SIZE = @HISTORY_SIZE@
local HISTORY_TTL = @HISTORY_TTL@
local MAX_BYTES = @MAX_BYTES@

local SEQ_KEY = PREFIX .. 'seq'

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

-- Both functions take no keys and two arguments, the first a channel name:
-- the error reply for calls that do not, or nil.
local function bad_call(keys, args, usage)
    if #keys ~= 0 or #args ~= 2 then
        return redis.error_reply('ERR wrong number of arguments: ' .. usage)
    end
    if not valid_channel(args[1]) then
        return redis.error_reply('ERR invalid channel name: ' ..
            'need 1..128 bytes of A-Z a-z 0-9 _ - . : @')
    end
    return nil
end

local function publish(keys, args)
    local bad = bad_call(keys, args, 'FCALL @FN@publish 0 <channel> <payload>')
    if bad then return bad end
    local channel, payload = args[1], args[2]
    if string.sub(channel, 1, 1) == '_' then
        return redis.error_reply('ERR channel names starting with _ are reserved')
    end
    if #payload > MAX_BYTES then
        return redis.error_reply('ERR payload too large: ' .. #payload ..
            ' bytes, limit ' .. MAX_BYTES)
    end

    local id = now_ms() * 1000
    local last = tonumber(redis.call('GET', SEQ_KEY) or '')
    if last and last + 1 > id then
        id = last + 1
    end
    id = fmt_id(id)
    redis.call('SET', SEQ_KEY, id)

    local env = envelope(payload, id)
    local hkey = PREFIX .. 'history:' .. channel
    local sid = id .. '-0'
    local trimmed = trimmed_by_next_add(hkey, sid)
    redis.call('XADD', hkey, 'MAXLEN', HISTORY_SIZE, sid, 'p', env)
    if trimmed then
        redis.call('XSETID', hkey, sid, 'MAXDELETEDID', trimmed)
    end
    redis.call('EXPIRE', hkey, HISTORY_TTL)
    redis.call('PUBLISH', PREFIX .. channel, env)
    return id
end

local function history(keys, args)
    local bad = bad_call(keys, args, 'FCALL_RO @FN@history 0 <channel> <since>')
    if bad then return bad end
    local channel, since = args[1], args[2]
    if not string.find(since, '^%d+$') or #since > 19 then
        return redis.error_reply('ERR since must be a decimal id')
    end
    local since_n = tonumber(since)
    local hkey = PREFIX .. 'history:' .. channel

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

redis.register_function('@FN@publish', publish)
redis.register_function{
    function_name = '@FN@history',
    callback = history,
    flags = { 'no-writes' },
}
