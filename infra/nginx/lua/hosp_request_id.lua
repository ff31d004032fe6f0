-- The request id of a request the proxy answers (screen-policy.conf): 32
-- lowercase hex digits, as NGINX's own $request_id, made without a system
-- call or a cryptographic generator.
--
-- The first 16 digits are the worker's: 8 bytes of /dev/urandom, read at its
-- first request. The last 16 are the worker's count of requests, from a
-- random start, passed through a random bijection of 64-bit numbers (two
-- odd multipliers and two xor-shifts, all drawn from /dev/urandom with the
-- prefix). So:
-- - two ids of one worker never meet (a bijection of a count that does not
--   wrap in 2^64 requests);
-- - two workers, or a worker and its successor after a restart or a reload,
--   share a prefix by a 1 in 2^64 chance;
-- - an id does not show how many requests came before it or between two
--   of them. It is not a secret either: clients see theirs in X-Request-Id.
--
-- The module is loaded in init_by_lua (retry-policy.conf), by the master,
-- but drawn lazily: the workers fork after init_by_lua, and a draw made
-- there would be the same in all of them.

local bit = require("bit")

local bxor, rshift, tohex = bit.bxor, bit.rshift, bit.tohex

local M = {}

local prefix, count, first_multiplier, second_multiplier = nil, nil, nil, nil

-- 8 bytes of `bytes` from `at`, as an unsigned 64-bit number.
local function u64(bytes, at)
    local value = 0ULL
    for i = at, at + 7 do
        value = value * 256 + bytes:byte(i)
    end
    return value
end

local function start()
    local source = assert(io.open("/dev/urandom", "rb"))
    local bytes = source:read(32)
    source:close()
    assert(bytes ~= nil and #bytes == 32, "short read from /dev/urandom")
    prefix = tohex(u64(bytes, 1), 16)
    count = u64(bytes, 9)
    first_multiplier = bit.bor(u64(bytes, 17), 1ULL)
    second_multiplier = bit.bor(u64(bytes, 25), 1ULL)
end

-- set_by_lua, for every request (server-common.conf).
function M.next()
    if prefix == nil then
        start()
    end
    count = count + 1
    local x = count * first_multiplier
    x = bxor(x, rshift(x, 29))
    x = x * second_multiplier
    x = bxor(x, rshift(x, 32))
    return prefix .. tohex(x, 16)
end

return M
