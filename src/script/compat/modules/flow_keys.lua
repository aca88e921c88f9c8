-- flowhook: ntopng 4.2's flow status ids (`flow_keys.ntopng`, `flow_keys.user`).
local native = ...
local M = { ntopng = {}, user = {} }
for _, s in ipairs(native.statuses) do
  M.ntopng[s.flow_key] = s.id
end
for i = 1, 5 do
  M.user[string.format("status_user_%02d", i)] = 58 + i
end
return M
