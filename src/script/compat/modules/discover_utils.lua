-- flowhook: device types as ntopng names them (no device discovery here).
local M = {}
local types = {
  [0] = "unknown", "printer", "video", "workstation", "laptop", "tablet", "phone", "tv",
  "networking", "wifi", "nas", "multimedia", "iot",
}
function M.devtype2string(id) return types[tonumber(id) or 0] or "unknown" end
function M.devtype2id(name)
  for id = 0, #types do if types[id] == name then return id end end
  return 0
end
M.getDeviceTypes = function() return types end
return M
