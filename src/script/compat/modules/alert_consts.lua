-- flowhook: alert_consts as ntopng 4.x flow scripts and status definitions
-- use it: severities (4.2's eight, which include 4.0's info, warning,
-- error), alert types (ntopng's built-in keys plus the plugins'
-- alert_definitions), entities and the lookup helpers.
local native, provide = ...
local M = {}
provide(M)

local sev = {
  { "debug", 7, "badge-secondary" }, { "info", 6, "badge-info" }, { "notice", 5, "badge-info" },
  { "warning", 4, "badge-warning" }, { "error", 3, "badge-danger" }, { "critical", 2, "badge-danger" },
  { "alert", 1, "badge-danger" }, { "emergency", 0, "badge-danger" },
}
M.alert_severities = {}
M.alert_severities_id_to_key = {}
for id, s in ipairs(sev) do
  M.alert_severities[s[1]] = {
    severity_id = id, name = s[1], syslog_severity = s[2], label = s[3],
    icon = "fas fa-exclamation", i18n_title = "alerts_dashboard." .. s[1], emoji = "",
  }
  M.alert_severities_id_to_key[id] = s[1]
end
M.severity_groups = {
  group_none = { severity_group_id = 0, i18n_title = "severity_groups.group_none" },
  notice_or_lower = { severity_group_id = 1, i18n_title = "severity_groups.group_notice_or_lower" },
  warning = { severity_group_id = 2, i18n_title = "severity_groups.group_warning" },
  error_or_higher = { severity_group_id = 3, i18n_title = "severity_groups.group_error_or_higher" },
}
function M.alertSeverityRaw(id) return M.alert_severities_id_to_key[tonumber(id)] end
function M.alertSeverity(key) local s = M.alert_severities[key] return s and s.severity_id end
function M.alertSeverityById(id)
  local k = M.alert_severities_id_to_key[tonumber(id)]
  if k == nil then error("unknown alert severity id " .. tostring(id), 2) end
  return M.alert_severities[k]
end
function M.alertSeverityLabel(id) return M.alertSeverityRaw(id) or "" end
function M.alertLevelToSyslogLevel(key) local s = M.alert_severities[key] return s and s.syslog_severity or 6 end

M.alert_entities = {}
M.alert_entities_id_to_key = {}
for id, name in pairs({ [0] = "interface", "host", "network", "snmp_device", "flow", "mac", "host_pool",
  "process", "user", "influx_db", "test", "category_lists", "am_host", "periodic_activity" }) do
  M.alert_entities[name] = { entity_id = id, label = name, i18n_label = "alert_entities." .. name }
  M.alert_entities_id_to_key[id] = name
end
function M.alertEntityRaw(id) return M.alert_entities_id_to_key[tonumber(id)] end
function M.alertEntity(key) local e = M.alert_entities[key] return e and e.entity_id end
function M.alertEntityById(id) return M.alert_entities[M.alertEntityRaw(id) or ""] end
function M.alertEntityLabel(id) return M.alertEntityRaw(id) or "" end
function M.formatAlertEntity(ifid, entity, value) return tostring(value) end
M.alerts_granularities = {
  min = { granularity_id = 1, granularity_seconds = 60, i18n_title = "show_alerts.minute" },
  ["5mins"] = { granularity_id = 2, granularity_seconds = 300, i18n_title = "show_alerts.5_min" },
  hour = { granularity_id = 3, granularity_seconds = 3600, i18n_title = "show_alerts.hourly" },
  day = { granularity_id = 4, granularity_seconds = 86400, i18n_title = "show_alerts.daily" },
}
function M.granularity2sec(g) local x = M.alerts_granularities[g] return x and x.granularity_seconds or 0 end
function M.granularity2id(g) local x = M.alerts_granularities[g] return x and x.granularity_id end
function M.sec2granularity(s)
  for k, v in pairs(M.alerts_granularities) do if v.granularity_seconds == s then return k end end
end
M.ids_rule_maker = { GPL = "GPL", SURICATA = "Suricata", ET = "Emerging Threats" }
M.MAX_NUM_QUEUED_ALERTS_PER_MODULE = 1024
M.MAX_NUM_QUEUED_ALERTS_PER_RECIPIENT = 4096

-- alert types: ntopng's built-in ones, then the plugins' alert_definitions
local types, by_id = {}, {}
M.alert_types = types
local function pack(spec, ...)
  if spec == "" then return {} end
  if spec == "*" then
    local v = ...
    if type(v) == "table" then return v end
    return { value = v }
  end
  local t, i = {}, 1
  for name in spec:gmatch("[^,]+") do
    t[name] = select(i, ...)
    i = i + 1
  end
  return t
end
local function add(key, def, spec)
  def.key = key
  if def.create == nil then
    def.create = function(severity, ...)
      local params
      if type(def.creator) == "function" then
        local ok, r = pcall(def.creator, ...)
        params = ok and type(r) == "table" and r or {}
      else
        params = pack(spec or "", ...)
      end
      return { alert_severity = severity, alert_type_params = params, alert_type = def }
    end
  end
  types[key] = def
  local id = def.alert_key
  if type(id) == "table" then id = (tonumber(id[1]) or 0) == 0 and id[2] or ((id[1] << 16) + id[2]) end
  if id ~= nil then by_id[id] = key end
end
for _, a in ipairs(native.alerts) do
  add(a.key, { alert_key = a.id, i18n_title = "alerts_dashboard." .. a.key, icon = "fas fa-exclamation" }, a.params)
end
for _, d in ipairs(native.alert_definitions) do
  local chunk, err = load(d.source, "@" .. d.path, "t", _ENV)
  local ok, def = false, err
  if chunk then ok, def = pcall(chunk) end
  if ok and type(def) == "table" then
    add(d.key, def)
  else
    native.warn(d.path, "alert definition not loaded: " .. tostring(def))
  end
end
function M.getAlertType(id) return by_id[tonumber(id)] end
M.alertTypeRaw = M.getAlertType
function M.alertType(key) local t = types[key] return t and (type(t.alert_key) == "number" and t.alert_key or nil) end
function M.alertTypeLabel(id) return M.getAlertType(id) or "" end
function M.getDefinititionDirs() return {} end
function M.getDefinitionsDirs() return {} end
function M.loadDefinition() return true end
function M.resetDefinitions() end

return M
