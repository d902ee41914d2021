-- Replays request templates from a file the harness writes, one per line:
--   METHOD <TAB> PATH <TAB> BEARER TOKEN <TAB> JSON BODY (may be empty)
-- Usage: wrk ... -s requests.lua http://127.0.0.1:PORT -- /path/to/requests.tsv
-- Counts every response that is not 2xx, and in `done` prints one parseable line:
--   BENCH_RESULT {"requests": ..., "p50_us": ..., "non2xx": ..., "statuses": {...}, ...}

local threads = {}
local next_thread_id = 0

function setup(thread)
  next_thread_id = next_thread_id + 1
  thread:set("thread_id", next_thread_id)
  table.insert(threads, thread)
end

local requests = {}
local position = 1
non2xx = 0
statuses = {}

local function split_tabs(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do
    table.insert(fields, field)
  end
  return fields
end

function init(args)
  local path = args[1]
  local file = assert(io.open(path, "r"), "cannot open request file " .. tostring(path))
  for line in file:lines() do
    if line ~= "" then
      local f = split_tabs(line)
      local headers = { ["Authorization"] = "Bearer " .. f[3] }
      local body = nil
      if f[4] ~= nil and f[4] ~= "" then
        body = f[4]
        headers["Content-Type"] = "application/json"
      end
      table.insert(requests, wrk.format(f[1], f[2], headers, body))
    end
  end
  file:close()
  assert(#requests > 0, "no requests in " .. path)
  -- Threads start at different places so they do not send the same request in lockstep.
  position = ((thread_id or 1) - 1) * math.floor(#requests / 2) % #requests + 1
end

function request()
  local r = requests[position]
  position = position % #requests + 1
  return r
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
  end
end

function done(summary, latency, requests_)
  local total_non2xx = 0
  local merged = {}
  for _, thread in ipairs(threads) do
    total_non2xx = total_non2xx + (thread:get("non2xx") or 0)
    local counts = thread:get("statuses") or {}
    for status, count in pairs(counts) do
      merged[status] = (merged[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(merged) do
    table.insert(parts, string.format('"%s": %d', status, count))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, '
      .. '"status_errors": %d, "timeouts": %d, '
      .. '"p50_us": %d, "p75_us": %d, "p90_us": %d, "p99_us": %d, '
      .. '"mean_us": %.1f, "max_us": %d, "non2xx": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max,
    total_non2xx, table.concat(parts, ", ")
  ))
end
