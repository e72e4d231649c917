-- Replays prebuilt requests, one picked at random per call: the list (method, path, API key,
-- body) comes from the data file the bench writes, so the Lua side does almost no work.
-- Usage: wrk ... -s bench/lua/requests.lua -- <data file>

local requests = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("seed", counter)
end

function init(args)
   local data = dofile(args[1])
   for i, r in ipairs(data) do
      local headers = { ["Authorization"] = "Bearer " .. r[3] }
      if r[4] then
         headers["Content-Type"] = "application/json"
      end
      requests[i] = wrk.format(r[1], r[2], headers, r[4])
   end
   math.randomseed(os.time() * 100 + (seed or 0))
end

function request()
   return requests[math.random(#requests)]
end

-- One JSON line the bench parses: counts and latency percentiles (microseconds).
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "connect_errors": %d, ' ..
      '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, ' ..
      '"p50_us": %d, "p99_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.mean))
end
