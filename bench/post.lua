-- bench/post.lua — wrk script for script/bench's events scenario: every
-- request is a POST with a small JSON body (the same for every contender).
--
--   wrk -t1 -c50 -d5s --latency -s bench/post.lua http://HOST:PORT/event/42

wrk.method = "POST"
wrk.body = '{"title":"bench","tags":["a","b"],"n":42}'
wrk.headers["Content-Type"] = "application/json"
