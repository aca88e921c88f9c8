-- flowhook: ntopng 4.2's alert keys ({PEN, id}; PEN 0 is ntopng's own).
local native = ...
local M = { ntopng = {}, user = {} }
for _, a in ipairs(native.alerts) do
  local name = a.key
  if name == "external_alert" then name = "alert_external" end
  if name:find("^alert_unexpected_") then name = name .. "_server" end
  M.ntopng[name] = { 0, a.id }
end
for i = 1, 5 do
  M.user[string.format("alert_user_%02d", i)] = { 0, 32767 + i }
end
-- the key as one number: ntopng's own ids as is, others (PEN << 16) + id
function M.parse_alert_key(k)
  if type(k) ~= "table" then return k end
  local pen, id = tonumber(k[1]) or 0, tonumber(k[2]) or 0
  if pen == 0 then return id end
  return (pen << 16) + id
end
return M
