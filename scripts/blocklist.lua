-- Blocklist: alert when the client or the server is a listed address or is
-- inside a listed IPv4 CIDR (default_value.entries; IPv6 entries match exactly).
local script = {
  hooks = {},
  gui = { i18n_title = "Blocklist", i18n_description = "Alert on flows from or to blocklisted addresses and networks" },
  default_enabled = true,
  -- before ntopng's blacklisted.lua, which asks flow.isBlacklisted()
  prio = 100,
  default_value = { entries = { "198.51.100.66", "203.0.113.0/24" } },
}

local exact, nets = {}, {}

local function v4(ip)
  local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  return ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d)
end

function script.setup(conf)
  for _, e in ipairs((conf and conf.entries) or {}) do
    local ip, len = e:match("^([^/]+)/(%d+)$")
    if ip and v4(ip) then
      local bits = tonumber(len)
      local size = 2 ^ (32 - bits)
      local base = v4(ip) - (v4(ip) % size)
      -- the octets the mask covers whole, as text ("203.0.113." for a /24):
      -- an address that does not start with them is outside, without parsing it
      local octets, prefix = { ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }, ""
      for i = 1, math.min(bits // 8, 3) do prefix = prefix .. tostring(tonumber(octets[i])) .. "." end
      nets[#nets + 1] = { base = base, size = size, text = e, prefix = prefix }
    else
      exact[e] = true
    end
  end
  return (next(exact) ~= nil) or #nets > 0
end

local function hit(ip)
  if exact[ip] then return ip end
  local n
  -- a numeric loop: `ipairs` costs two calls into C per entry
  for i = 1, #nets do
    local net = nets[i]
    local p = net.prefix
    if p == "" or ip:sub(1, #p) == p then
      n = n or v4(ip)
      if n and n >= net.base and n < net.base + net.size then return net.text end
    end
  end
  return nil
end

function script.hooks.protocolDetected(now, conf)
  local cli, srv = flow.getClientIp(), flow.getServerIp()
  local srv_hit, cli_hit = hit(srv), hit(cli)
  if srv_hit then flow.markBlacklisted("srv") end
  if cli_hit then flow.markBlacklisted("cli") end
  local entry = srv_hit or cli_hit
  if entry then
    flow.triggerStatus("blocklisted_host", 100, "error",
      "flow between " .. cli .. " and " .. srv .. " matches blocklist entry " .. entry, { entry = entry })
  end
end

return script
