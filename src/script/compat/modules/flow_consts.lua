-- flowhook: flow_consts as ntopng 4.x flow scripts use it. `status_types`
-- holds ntopng 4.2's built-in flow statuses and those the plugins'
-- status_definitions define (by file name, as ntopng keys them); each has
-- status_key, alert_severity, alert_type, i18n_title and create(severity, …).
-- A name that is not there yields a usable status of that name (severity
-- warning) instead of an error.
local native, provide = ...
local alert_consts = require("alert_consts")
local M = { max_score = 1024 }
provide(M)
for i = 1, 5 do M["custom_status_" .. i] = 58 + i end
local types, by_id = {}, {}

local function finish(key, def)
  def.key = key
  if def.create == nil then
    def.create = function(severity, ...)
      local at = def.alert_type
      local info
      if type(at) == "table" and type(at.create) == "function" then
        local ok, r = pcall(at.create, severity, ...)
        if ok and type(r) == "table" then info = r end
      end
      if info == nil then
        -- no alert type that knows its arguments: one table is the parameters, else they are listed
        local n, first = select("#", ...), ...
        local params
        if n == 1 and type(first) == "table" then params = first else params = { ... } end
        info = { alert_severity = severity, alert_type_params = params }
      end
      info.status_type = def
      return info
    end
  end
  rawset(types, key, def)
  if type(def.status_key) == "number" then by_id[def.status_key] = def end
  return def
end

for _, s in ipairs(native.statuses) do
  finish(s.key, {
    status_key = s.id,
    alert_severity = alert_consts.alert_severities[s.severity],
    alert_type = alert_consts.alert_types[s.alert_type],
    i18n_title = s.title,
  })
end
for _, d in ipairs(native.status_definitions) do
  local chunk, err = load(d.source, "@" .. d.path, "t", _ENV)
  local ok, def = false, err
  if chunk then ok, def = pcall(chunk) end
  if ok and type(def) == "table" then
    if def.status_key == nil then def.status_key = d.key end
    if def.alert_severity == nil then def.alert_severity = alert_consts.alert_severities.warning end
    finish(d.key, def)
  else
    native.warn(d.path, "status definition not loaded: " .. tostring(def))
  end
end
M.status_types = setmetatable(types, {
  __index = function(t, key)
    if type(key) ~= "string" then return nil end
    local base = key:gsub("^status_", "")
    return finish(key, {
      status_key = key,
      alert_severity = alert_consts.alert_severities.warning,
      alert_type = alert_consts.alert_types["alert_" .. base],
      i18n_title = key,
    })
  end,
})

function M.getStatusType(id) local d = by_id[tonumber(id)] return d and d.key end
function M.getStatusInfo(id) return by_id[tonumber(id)] end
function M.getStatusTitle(id)
  local d = by_id[tonumber(id)]
  if d == nil then return "" end
  return native.i18n_lookup(d.i18n_title) or (d.key:gsub("^status_", ""):gsub("_", " "))
end
function M.getStatusDescription(id, info)
  local d = by_id[tonumber(id)]
  if d == nil then return "" end
  if type(d.i18n_description) == "function" then
    local ok, r = pcall(d.i18n_description, info or {})
    if ok then return r end
  end
  return M.getStatusTitle(id)
end
function M.getStatusIcon() return "" end
function M.getDefinititionDirs() return {} end
function M.getDefinititionsDir() return "" end
function M.resetDefinitions() end
function M.loadDefinition() return true end
M.flow_fields_description = {}
M.mobile_country_code = {}
return M
