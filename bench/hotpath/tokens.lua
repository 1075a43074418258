-- wrk script: cycles through the bearer tokens in $TOKENS_FILE (one per line), each thread
-- starting at a different offset.
--   default          GET $WRK_PATH (default /whoami) with each token as the bearer
--   $SERVICE_KEY set POST /v1/keys/verify as that key, verifying each token in turn
local tokens = {}
local counter = 0
local path = os.getenv("WRK_PATH") or "/whoami"
local service = os.getenv("SERVICE_KEY")

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
  if service then
    local body = '{"token":"' .. t .. '","scopes":["work-orders:read"],"route":"GET /invoices/{id}"}'
    return wrk.format("POST", "/v1/keys/verify", {
      ["Authorization"] = "Bearer " .. service,
      ["Content-Type"] = "application/json",
    }, body)
  end
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. t })
end
