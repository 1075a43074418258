-- wrk script: POST /v1/keys/verify as the service key $SERVICE_KEY, verifying the tokens
-- in $TOKENS_FILE in turn.
local tokens = {}
local counter = 0
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
  local body = '{"token":"' .. t .. '","scopes":["work-orders:read"],"route":"GET /invoices/{id}"}'
  return wrk.format("POST", "/v1/keys/verify", {
    ["Authorization"] = "Bearer " .. service,
    ["Content-Type"] = "application/json",
  }, body)
end
