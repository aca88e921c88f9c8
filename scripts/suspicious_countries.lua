-- Suspicious countries: alert when the client or the server is in one of the
-- countries listed in default_value (override with [scripts.conf.suspicious_countries]).
-- Needs a City or Country database (geo.city_db / geo.country_db).
-- The reference ntopng script this is based on (tprint on "CN") also loads unchanged.
local user_scripts = require("user_scripts")

local script = {
  hooks = {},
  gui = {
    i18n_title = "Suspicious Countries",
    i18n_description = "Trigger an alert when at least one among the client and server is from a suspicious country",
  },
  default_enabled = true,
  -- ISO 3166-1 alpha-2 codes
  default_value = { countries = { "CN", "KP", "IR" } },
}

local function listed(conf, cc)
  if cc == nil then return false end
  for _, c in ipairs((conf and conf.countries) or {}) do
    if c == cc then return true end
  end
  return false
end

function script.hooks.protocolDetected(now, conf)
  local cli_geo = flow.getClientGeolocation()
  local srv_geo = flow.getServerGeolocation()
  local cli, srv = cli_geo["cli.country"], srv_geo["srv.country"]
  if listed(conf, cli) or listed(conf, srv) then
    flow.triggerStatus("suspicious_country", 50, "warning",
      "flow with " .. (listed(conf, cli) and ("client in " .. cli) or ("server in " .. srv)),
      { cli_country = cli, srv_country = srv })
  end
end

return script
