-- Blocklist: alert when the client or the server is a listed address or is
-- inside a listed network (default_value.entries: IPv4 and IPv6 addresses
-- and CIDR networks; the most specific entry is the one reported).
local script = {
  hooks = {},
  gui = { i18n_title = "Blocklist", i18n_description = "Alert on flows from or to blocklisted addresses and networks" },
  default_enabled = true,
  -- before ntopng's blacklisted.lua, which asks flow.isBlacklisted()
  prio = 100,
  default_value = { entries = { "198.51.100.66", "203.0.113.0/24" } },
}

local listed

function script.setup(conf)
  local entries = (conf and conf.entries) or {}
  -- a bad entry fails the setup with its text (the script stays off)
  listed = networks(entries)
  return #listed > 0
end

function script.hooks.protocolDetected(now, conf)
  -- both addresses matched in one call, no text made for them
  local cli_hit, srv_hit = flow.matchNetworks(listed)
  if not (cli_hit or srv_hit) then return end
  if srv_hit then flow.markBlacklisted("srv") end
  if cli_hit then flow.markBlacklisted("cli") end
  local entry = srv_hit or cli_hit
  local cli, srv = flow.getClientIp(), flow.getServerIp()
  flow.triggerStatus("blocklisted_host", 100, "error",
    "flow between " .. cli .. " and " .. srv .. " matches blocklist entry " .. entry, { entry = entry })
end

return script
