-- wrk script: GET $WRK_PATH, cycling through the bearer tokens in $TOKENS_FILE (one per
-- line), each thread starting at a different offset.
local tokens = {}
local counter = 0
local path = os.getenv("WRK_PATH") or "/"

function setup(thread)
  counter = counter + 1
  thread:set("offset", counter * 7919)
end

function init(args)
  for line in io.lines(os.getenv("TOKENS_FILE")) do
    tokens[#tokens + 1] = line
  end
  i = offset or 0
end

function request()
  i = i + 1
  local t = tokens[(i % #tokens) + 1]
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. t })
end
