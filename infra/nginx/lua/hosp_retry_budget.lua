-- ----------------------------------------------------------------------
-- | The retry budget: a share of the traffic, split fairly by user     |
-- ----------------------------------------------------------------------
--
-- Every first attempt of a retryable request deposits, every retry attempt
-- withdraws. Over the last `window` seconds, for this NGINX instance:
--
--   retry attempts  <=  ratio x first attempts  +  floor x window
--
-- and for each user:
--
--   its retry attempts  <=  ratio x its first attempts  +  floor x window / (N + 1)
--
-- where N is the number of users who sent a first attempt in the window
-- (each user is counted in the slot it was last seen in).
-- The ratio follows each user's own traffic, and the floor is split equally,
-- with one share always kept for a user who has not asked yet: a user who
-- floods failing requests spends its own share, never another's, and a
-- quiet user, or one who arrives during a flood, finds its share free.
--
-- A user is a Basic user name whose credentials HOSP knows: the very
-- credentials (name and password) it answered with a success (2xx) on a
-- path of its API, which it answers only to credentials it accepts, in
-- about the last `known_for` seconds, spelled as clients spell them, and
-- not answered 401 since. Any other request, with a name or a
-- password HOSP has not accepted or with other credentials, counts as its
-- client's address: CloudFront's viewer address (where the origin header
-- proves CloudFront is in front), else the connection's,
-- without the port, and for IPv6 its /64, which one host can send from
-- whole. So names made up by the thousand are one user, their address, and
-- cannot split the floor into shares too small for anyone (a name HOSP
-- refuses never becomes a user of its own), and a colleague's name sent
-- with a wrong password spends the sender's address's share, not the
-- colleague's.
--
-- The counters live in a lua_shared_dict, one for all the workers of the
-- instance, in time slots of window / SLOTS seconds that expire on their
-- own. Each worker adds its deposits to it in batches, every FLUSH_SECONDS
-- and before each retry decision it makes, so that a request of a known
-- user takes no lock on the dictionary (one of unknown credentials reads the
-- dictionary of known credentials once); another worker's deposits are seen at
-- most FLUSH_SECONDS late, which only ever refuses a retry, never allows
-- one. A retry is let through by reserving its `tries - 1` attempts (an
-- atomic increment, taken back if it went over); the request gives back the
-- attempts it did not make when it ends. So at any moment the retries under
-- way are counted, and the instance's bound is exceeded by at most
-- tries - 2 attempts. docs/proxy.md, "The retry budget".

local M = {}

local SLOTS = 10
-- Longer user names are kept by their MD5, and so is a long address header,
-- so that a key stays short.
local LONGEST_NAME = 64
-- A worker's deposits reach the dictionary at least this often, and when it
-- holds this many.
local FLUSH_SECONDS = 0.1
local FLUSH_COUNT = 1000
-- A worker trusts credentials it found known for this long (at most a
-- quarter of known_for) before it reads the dictionary again, and remembers
-- at most this many.
local KNOWN_RECHECK = 60
local KNOWN_MEMORY = 10000
-- Longer credentials are kept by their MD5, so that the worker's memory of
-- them stays under KNOWN_MEMORY x this many bytes.
local LONGEST_CREDENTIAL = 512

local clear = require("table.clear")

local settings = nil

-- The key of the known credentials' HMACs: 32 random bytes the master
-- draws when NGINX starts, kept in their dictionary through reloads (where
-- init_by_lua runs again and finds them).
local function shared_secret(name)
    local secrets = ngx.shared[name]
    local secret = secrets:get("key")
    if secret == nil then
        local random = assert(io.open("/dev/urandom", "rb"))
        local drawn = random:read(32)
        random:close()
        assert(drawn ~= nil and #drawn == 32, "could not read 32 bytes from /dev/urandom")
        secrets:add("key", drawn)
        secret = secrets:get("key")
    end
    return secret
end

-- Called once from init_by_lua with the rendered settings.
function M.configure(options)
    settings = {
        ratio = options.ratio,
        floor = options.floor,
        window = options.window,
        reserve = options.reserve,
        known = ngx.shared[options.known_dict],
        secret = shared_secret(options.secret_dict),
        viewer_header = options.viewer_header,
        known_for = options.known_for,
        recheck = math.min(KNOWN_RECHECK, options.known_for / 4),
        slot_seconds = options.window / SLOTS,
        ttl = options.window + options.window / SLOTS,
        dict = ngx.shared[options.dict],
    }
end

local function current_slot()
    return math.floor(ngx.now() / settings.slot_seconds)
end

-- `text` whole, or `prefix` and its MD5 when longer than `longest` bytes.
local function kept(text, longest, prefix)
    if #text > longest then
        return prefix .. ngx.md5(text)
    end
    return text
end

-- A user's key: its name; ":n" and the MD5 of a longer name; ":a" and an
-- address; ":A" and the MD5 of a longer address. A user name never holds ":"
-- (Basic credentials end it there), so no two kinds of key meet.
local function name_key(name)
    return kept(name, LONGEST_NAME, ":n")
end

-- Credentials (an Authorization header) as a worker keeps them: whole, or
-- NUL and the MD5 of a longer header (no header holds a NUL byte: NGINX
-- refuses one, so no header is another's key).
local function credential_key(header)
    return kept(header, LONGEST_CREDENTIAL, "\0")
end

-- The same as the dictionary of known credentials keeps them: an HMAC
-- under a random key of the instance's, so that the entries, which outlive
-- their requests by hours, are no digest of a password that a table
-- computed without the key could reverse.
local function digest(key)
    return ngx.hmac_sha1(settings.secret, key)
end

-- True for the one spelling of Basic credentials that clients send:
-- "Basic " and the padded base64 of name:password. NGINX and HOSP accept
-- others too (any case, more spaces, bytes after the padding); were they
-- known, one account could add entries without end to the dictionary and
-- push out everyone else's.
local function canonical(header)
    if header:sub(1, 6) ~= "Basic " then
        return false
    end
    local token = header:sub(7)
    local decoded = ngx.decode_base64(token)
    return decoded ~= nil and ngx.encode_base64(decoded) == token
end

-- The first 64 bits of an IPv6 address written in hex groups (no dotted
-- IPv4 ending), as "2001:db8:0:1::/64"; nil if the text is not one.
local function ipv6_prefix(address)
    local head, tail = address:match("^(.-)::(.*)$")
    local groups = {}
    for group in (head or address):gmatch("[^:]+") do
        groups[#groups + 1] = group
    end
    if head ~= nil and #groups < 4 then
        -- "::" stands for the zero groups that make eight with the tail's.
        local tail_groups = {}
        for group in tail:gmatch("[^:]+") do
            tail_groups[#tail_groups + 1] = group
        end
        for _ = 1, 8 - #groups - #tail_groups do
            groups[#groups + 1] = "0"
        end
        for _, group in ipairs(tail_groups) do
            groups[#groups + 1] = group
        end
    end
    if #groups < 4 then
        return nil
    end
    local prefix = {}
    for i = 1, 4 do
        local value = groups[i]:match("^%x%x?%x?%x?$") and tonumber(groups[i], 16)
        if not value then
            return nil
        end
        prefix[i] = string.format("%x", value)
    end
    return table.concat(prefix, ":") .. "::/64"
end

-- The client's address: the viewer's as CloudFront sent it ("address:port",
-- IPv6 unbracketed) on the public listener where CloudFront is in front
-- (the origin header checked), or the connection's; an IPv6 address's /64.
local function address_key()
    local address = nil
    if settings.viewer_header and ngx.var.hosp_listener == "public" then
        address = ngx.var.http_cloudfront_viewer_address
    end
    if address ~= nil then
        address = address:match("^%[(.*)%]:%d+$") or address:match("^(.*):%d+$") or address
    else
        address = ngx.var.remote_addr
    end
    -- (An IPv4 address written in IPv6, "::ffff:192.0.2.1", is kept whole.)
    if address:find(":", 1, true) and not address:find(".", 1, true) then
        address = ipv6_prefix(address) or address
    end
    if #address > LONGEST_NAME then
        return ":A" .. ngx.md5(address)
    end
    return ":a" .. address
end

-- The credentials this worker has found known (as credential_key() keeps
-- them), until when it trusts that without reading the dictionary of known
-- credentials again, and their user's key. Only credentials HOSP accepted
-- get here: made-up ones never fill it. The dictionary holds their digest
-- only. A request whose credentials are trusted costs a table lookup; the
-- tables hold each until about two rechecks after the worker last read it
-- in the dictionary: forget() drops the ones past their time.
local known_until, known_user, known_count = {}, {}, 0

-- The user's key of trusted credentials, else nil.
local function trusted(key, now)
    local until_ = known_until[key]
    if until_ ~= nil and until_ > now then
        return known_user[key]
    end
    return nil
end

local function remember(key, user, now)
    if known_until[key] == nil then
        if known_count >= KNOWN_MEMORY then
            clear(known_until)
            clear(known_user)
            known_count = 0
        end
        known_count = known_count + 1
    end
    known_until[key] = now + settings.recheck
    known_user[key] = user
end

local function drop(key)
    if known_until[key] ~= nil then
        known_until[key] = nil
        known_user[key] = nil
        known_count = known_count - 1
    end
end

-- A timer's: drops the credentials past their time from this worker's memory.
local function forget()
    local now = ngx.now()
    for key, until_ in pairs(known_until) do
        if until_ <= now then
            drop(key)
        end
    end
end

-- The budget's user of a request whose credentials (Authorization header)
-- this worker does not trust: its name if they are in the dictionary of
-- known credentials, else its address. A 401 from HOSP to them takes them
-- out: the password was changed, or was never the name's.
local function looked_up(key, now, refused)
    local name = ngx.var.remote_user
    if name == nil then
        return address_key()
    end
    local known, hashed = settings.known, digest(key)
    if known:get(hashed) then
        if refused then
            known:delete(hashed)
            return address_key()
        end
        local user = name_key(name)
        remember(key, user, now)
        return user
    end
    return address_key()
end

-- The budget's user of a request about to be retried.
local function user_key(header, now)
    if header == nil or header == "" then
        return address_key()
    end
    local key = credential_key(header)
    return trusted(key, now) or looked_up(key, now, false)
end

-- The user a request that has ended deposits as. A success from HOSP on a
-- path of its API ($hosp_api_path, retry-policy.conf) to Basic credentials
-- spelled as clients spell them makes them known for known_for seconds
-- more: each worker writes that at most once per recheck for the same
-- credentials. A 401 from HOSP makes them unknown, in this worker at once
-- and in the others within a recheck.
local function depositor(header, now)
    if header == "" then
        return address_key()
    end
    local key = credential_key(header)
    local status = ngx.status
    local user = trusted(key, now)
    if user ~= nil then
        if status ~= 401 then
            return user
        end
        drop(key)
        return looked_up(key, now, true)
    end
    if status >= 200 and status < 300 and ngx.var.hosp_api_path == "1" and canonical(header) then
        local name = ngx.var.remote_user
        if name ~= nil then
            settings.known:set(digest(key), true, settings.known_for)
            user = name_key(name)
            remember(key, user, now)
            return user
        end
    end
    return looked_up(key, now, status == 401)
end

-- Sums over the window of the instance's and one user's deposits, of their
-- withdrawals in the window's earlier slots (the current slot's are checked
-- as they are taken), and the number of users asking: "l<slot>" counts the
-- users last seen in that slot.
local function window_totals(dict, slot, user)
    local deposits, user_deposits, withdrawals, user_withdrawals, users = 0, 0, 0, 0, 0
    for s = slot - SLOTS + 1, slot do
        deposits = deposits + (dict:get("d" .. s) or 0)
        user_deposits = user_deposits + (dict:get("d" .. s .. ":" .. user) or 0)
        users = users + (dict:get("l" .. s) or 0)
        if s < slot then
            withdrawals = withdrawals + (dict:get("w" .. s) or 0)
            user_withdrawals = user_withdrawals + (dict:get("w" .. s .. ":" .. user) or 0)
        end
    end
    return deposits, user_deposits, withdrawals, user_withdrawals, users
end

-- This worker's first attempts not yet in the dictionary, by user.
local pending, pending_count = {}, 0

-- Adds this worker's pending deposits to the dictionary, in the current
-- slot, and moves their users to it in the users' count.
local function flush()
    if pending_count == 0 then
        return
    end
    local s = settings
    local dict, slot = s.dict, current_slot()
    dict:incr("d" .. slot, pending_count, 0, s.ttl)
    for user, count in pairs(pending) do
        dict:incr("d" .. slot .. ":" .. user, count, 0, s.ttl)
        local last = dict:get("u" .. user)
        if last ~= slot then
            dict:set("u" .. user, slot, s.ttl)
            dict:incr("l" .. slot, 1, 0, s.ttl)
            if last ~= nil then
                dict:incr("l" .. last, -1)
            end
        end
    end
    clear(pending)
    pending_count = 0
end

-- Takes `amount` from a counter unless that would go over `allowed`;
-- atomic, whatever the other workers do at the same moment.
local function take(dict, key, amount, allowed, ttl)
    local after = dict:incr(key, amount, 0, ttl)
    if after == nil or after - amount + 1 > allowed then
        if after ~= nil then
            dict:incr(key, -amount)
        end
        return false
    end
    return true
end

-- access_by_lua of @hosp_retry: let the retry through, or answer 429,
-- which the location's error page turns into the budget's 503.
function M.admit()
    flush()
    local s = settings
    local dict, slot, user = s.dict, current_slot(), user_key(ngx.var.http_authorization, ngx.now())
    local deposits, user_deposits, withdrawals, user_withdrawals, users = window_totals(dict, slot, user)
    -- This request's own first attempt is deposited when it ends: count it now.
    if user_deposits == 0 then
        users = users + 1
    end
    deposits, user_deposits = deposits + 1, user_deposits + 1
    -- What the current slot may still take, for the user and for the instance.
    local user_left = s.ratio * user_deposits + s.floor * s.window / (users + 1) - user_withdrawals
    local left = s.ratio * deposits + s.floor * s.window - withdrawals
    local user_withdrawn, withdrawn = "w" .. slot .. ":" .. user, "w" .. slot
    if take(dict, user_withdrawn, s.reserve, user_left, s.ttl) then
        if take(dict, withdrawn, s.reserve, left, s.ttl) then
            ngx.var.hosp_retry_budget = "PASSED"
            ngx.var.hosp_retry_budget_slot = slot
            ngx.var.hosp_retry_budget_user = user
            return
        end
        dict:incr(user_withdrawn, -s.reserve)
    end
    ngx.var.hosp_retry_budget = "REJECTED"
    return ngx.exit(429)
end

-- The attempts @hosp_retry made: $upstream_status lists each attempt, and
-- " : " separates the first attempt's location from @hosp_retry's.
local function retry_attempts(statuses)
    local retries = statuses:match(" : ([^:]*)$")
    if retries == nil then
        return 0
    end
    local _, commas = retries:gsub(",", "")
    return commas + 1
end

-- init_worker_by_lua: the worker's flushes, and its forgetting.
function M.start_worker()
    ngx.timer.every(FLUSH_SECONDS, flush)
    ngx.timer.every(settings.recheck, forget)
end

-- log_by_lua, for every request: the deposit of a retryable request's first
-- attempt, and the unused part of a retry's reservation given back; a
-- success from HOSP makes the request's credentials known.
-- $hosp_retry_budget_log (retry-policy.conf) says which: "" neither, "d" the
-- deposit, "r" both, followed by the request's Authorization header: one
-- variable read for both.
local R = string.byte("r")

function M.log()
    -- First: a subrequest shares its request's variables, and would read the
    -- map before the request itself, with its own upstream.
    if ngx.is_subrequest then
        return
    end
    local what = ngx.var.hosp_retry_budget_log
    if what == "" then
        return
    end
    local user = depositor(what:sub(2), ngx.now())
    pending[user] = (pending[user] or 0) + 1
    pending_count = pending_count + 1
    if pending_count >= FLUSH_COUNT then
        flush()
    end
    if what:byte(1) == R then
        local s = settings
        -- The slot and the user the reservation was taken in: the user may
        -- have become known since.
        local held, held_by = ngx.var.hosp_retry_budget_slot, ngx.var.hosp_retry_budget_user
        local unused = s.reserve - retry_attempts(ngx.var.upstream_status or "")
        if unused > 0 then
            -- Gone when its slot has expired: the window has passed it anyway.
            s.dict:incr("w" .. held, -unused)
            s.dict:incr("w" .. held .. ":" .. held_by, -unused)
        end
    end
end

return M
