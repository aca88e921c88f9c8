-- Elephant flows: alert when a flow moves more than `bytes` in either
-- direction (default 1 GiB), as soon as it is seen (periodicUpdate) or at its end.
local script = {
  hooks = {},
  gui = { i18n_title = "Elephant flows", i18n_description = "Alert on flows that transfer more than a byte threshold" },
  default_enabled = true,
  default_value = { bytes = 1073741824 },
}

local function check(now, conf)
  local sent, rcvd = flow.getBytesSent(), flow.getBytesRcvd()
  if sent >= conf.bytes or rcvd >= conf.bytes then
    flow.triggerStatus("elephant_flow", 30, "notice",
      string.format("%d bytes client->server, %d server->client", sent, rcvd),
      { cli2srv_bytes = sent, srv2cli_bytes = rcvd, threshold = conf.bytes })
  end
end

script.hooks.periodicUpdate = check
script.hooks.flowEnd = check

return script
