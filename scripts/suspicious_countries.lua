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

-- the configured countries as a set, rebuilt when the configuration changes
local last_conf, countries = nil, {}
local function set_of(conf)
  if conf ~= last_conf then
    last_conf, countries = conf, {}
    for _, c in ipairs((conf and conf.countries) or {}) do countries[c] = true end
  end
  return countries
end

function script.hooks.protocolDetected(now, conf)
  local cli, srv = flow.getClientCountry(), flow.getServerCountry()
  local set = set_of(conf)
  local cli_listed, srv_listed = cli ~= nil and set[cli], srv ~= nil and set[srv]
  if cli_listed or srv_listed then
    flow.triggerStatus("suspicious_country", 50, "warning",
      "flow with " .. (cli_listed and ("client in " .. cli) or ("server in " .. srv)),
      { cli_country = cli, srv_country = srv })
  end
end

return script
