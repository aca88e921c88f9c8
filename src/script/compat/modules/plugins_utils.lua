-- flowhook: plugins_utils as flow scripts use it. loadModule(plugin, name)
-- loads `<plugin>/modules/<name>.lua` of the scripts directory's plugin
-- trees in the calling script's environment.
local native = ...
local M = {}
local loaded = {}
function M.loadModule(plugin, name)
  local key = tostring(plugin) .. "/" .. tostring(name)
  if loaded[key] ~= nil then return loaded[key] end
  local dir = native.module_dirs[plugin]
  if dir == nil then return nil end
  local src, path = native.read_module(dir, tostring(name))
  if src == nil then return nil end
  local chunk, err = load(src, "@" .. path, "t", _ENV)
  if chunk == nil then error(err, 2) end
  local m = chunk()
  loaded[key] = m
  return m
end
function M.getPluginDataDir(plugin) return nil end
function M.getHttpdocsDir(plugin) return "" end
function M.getUrl(script) return "" end
function M.hasAlerts() return false end
function M.getMenuEntries() return {} end
function M.loadPlugins() return true end
function M.getPlugins() return {} end
return M
