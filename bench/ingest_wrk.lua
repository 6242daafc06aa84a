-- wrk script of bench/ingest.py: every request is a distinct multipart minidump upload.
-- args: <pieces dir> <run tag>. The body is A .. guid .. B .. timestamp .. C, where
-- bench/ingest.py wrote A, B and C (A ends in the guid field's header, B holds the prod and
-- ver fields and the dump up to its header timestamp); the content type is in the file ctype.
-- Each wrk thread counts its own requests, so (tag, thread, counter) is unique in a run.
local A, B, C, ctype
local counter = 0
local threads = {}

local function slurp(path)
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  return data
end

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local dir = args[1]
  A, B, C = slurp(dir .. "/a"), slurp(dir .. "/b"), slurp(dir .. "/c")
  ctype = slurp(dir .. "/ctype")
  tag = tonumber(args[2])
  wrk.headers["Content-Type"] = ctype
end

function request()
  counter = counter + 1
  local guid = string.format("%08x-%04x-4000-8000-%012x", tag, id, counter)
  local stamp = tag * 4096 + id * 1000000 + counter
  local ts = string.char(stamp % 256, math.floor(stamp / 256) % 256,
                         math.floor(stamp / 65536) % 256, math.floor(stamp / 16777216) % 256)
  return wrk.format("POST", nil, nil, A .. guid .. B .. ts .. C)
end

function done(summary, latency, requests)
  local statuses = summary.errors.status
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "non_2xx": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout, statuses,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
