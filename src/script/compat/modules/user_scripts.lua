-- flowhook: user_scripts as ntopng 4.x flow scripts and their setup /
-- onEnable functions use it: categories (ntopng 4.2's ids), field units,
-- script types, and configuration helpers that answer as ntopng does with
-- its default configuration. Configuration itself is flowhook's
-- ([scripts.conf.<name>]); the GUI and configset functions do nothing.
local M = {}
local function cat(id, k, icon)
  return { id = id, icon = icon, i18n_title = "user_scripts.category_" .. k, i18n_descr = "user_scripts.category_" .. k .. "_descr" }
end
M.script_categories = {
  other = cat(0, "other", "fas fa-scroll"),
  security = cat(1, "security", "fas fa-shield-alt"),
  internals = cat(2, "internals", "fas fa-wrench"),
  network = cat(3, "network", "fas fa-network-wired"),
  system = cat(4, "system", "fas fa-server"),
}
-- flowhook's own scripts used these
M.priorities = { normal = 0, low = 1 }
M.field_units = {}
for _, u in ipairs({ "seconds", "bytes", "flows", "packets", "mbits", "hosts", "syn_sec", "flow_sec", "percentage", "syn_min" }) do
  M.field_units[u] = "field_units." .. u
end
M.DEFAULT_CONFIGSET_ID = 0
-- read by ntopng's notification pages when an unexpected_* plugin is on
M.unexpected_plugins_enabled = false
M.script_types = {
  flow = { parent_dir = "interface", hooks = { "protocolDetected", "statusChanged", "flowEnd", "periodicUpdate" }, subdirs = { "flow" }, default_config_only = true },
  traffic_element = { parent_dir = "interface", hooks = { "min", "5mins", "hour", "day" }, subdirs = { "interface", "network" } },
  host = { parent_dir = "interface", hooks = { "min", "5mins", "hour", "day" }, subdirs = { "host" } },
  snmp_device = { parent_dir = "system", hooks = { "snmpDevice", "snmpDeviceInterface" }, subdirs = { "snmp_device" } },
  system = { parent_dir = "system", hooks = { "min", "5mins", "hour", "day" }, subdirs = { "system" } },
  syslog = { parent_dir = "system", hooks = { "handleEvent" }, subdirs = { "syslog" } },
}
M.operator_functions = {
  gt = function(a, b) return a > b end,
  lt = function(a, b) return a < b end,
}
function M.getScriptType(subdir)
  for _, t in pairs(M.script_types) do
    for _, s in ipairs(t.subdirs) do if s == subdir then return t end end
  end
end
function M.listSubdirs()
  local out = {}
  for _, s in ipairs({ "host", "flow", "interface", "network", "snmp_device", "system", "syslog" }) do
    out[#out + 1] = { id = s, label = s }
  end
  return out
end
function M.getTargetHookConfig(target_cfg, script, hook)
  return { enabled = true, script_conf = (type(script) == "table" and script.default_value) or {} }
end
function M.isSystemScriptEnabled(key) return false end
function M.load() return { modules = {}, hooks = {}, conf = {} } end
function M.loadModule() return nil end
function M.teardown() end
function M.listScripts() return {} end
function M.getConfigsets() return {} end
function M.getScriptConfig() return {} end
function M.getDefaultConfig() return {} end
function M.getConfigById() return {} end
function M.getFactoryConfig() return {} end
function M.findConfigSet() return nil end
local noop = function() end
for _, n in ipairs({ "updateScriptConfig", "toggleScript", "toggleAllScripts", "loadDefaultConfig",
  "resetConfigsets", "createOrReplaceConfigset", "deleteConfigset", "renameConfigset", "cloneConfigset",
  "runPeriodicScripts", "schedulePeriodicScripts", "loadUnloadUserScripts", "getScriptEditorUrl",
  "getSubdirectoryPath", "getConfigsetPools", "getTargetConfig", "getHostTargetConfigset",
  "setConfigsetTargets", "getSubdirTargetType" }) do
  M[n] = noop
end
return M
