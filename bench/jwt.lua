-- bench/jwt.lua — wrk script for script/bench's JWT scenarios.
--
--   wrk -t1 -c50 -d5s --latency -s bench/jwt.lua http://HOST:PORT/small -- TOKENS_FILE
--
-- TOKENS_FILE holds one token per line. Every request carries
-- `Authorization: Bearer <token>`, the tokens taken in turn (round robin), so
-- with N tokens each one comes back every N requests. Round robin, not random,
-- on purpose: with N larger than a worker's verification cache (an LRU of
-- 10,000 entries in ficus) every request misses the cache; with N smaller,
-- every request after the first pass hits it.
--
-- Without TOKENS_FILE (or with an empty one) it sends the plain GET, through
-- the same request() call, so a plain-proxy round pays wrk the same Lua cost
-- per request as a token round.
--
-- All requests are formatted once, in init(); request() only picks one.

local reqs = {}
local n, i = 0, 0

function init(args)
   local file = args[1]
   if file and file ~= "" then
      for line in io.lines(file) do
         if #line > 0 then
            n = n + 1
            reqs[n] = wrk.format(nil, nil, {
               ["Host"] = wrk.headers["Host"],
               ["Authorization"] = "Bearer " .. line,
            })
         end
      end
   end
   if n == 0 then
      n = 1
      reqs[1] = wrk.format(nil, nil, { ["Host"] = wrk.headers["Host"] })
   end
end

function request()
   i = i + 1
   if i > n then
      i = 1
   end
   return reqs[i]
end
