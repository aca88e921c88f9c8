-- flowhook: the format helpers ntopng's status definitions use.
local M = {
  formatEpoch = formatEpoch,
  secondsToTime = secondsToTime,
  bytesToSize = bytesToSize,
  formatValue = formatValue,
  round = round,
}
function M.formatPastEpochShort(e) return formatEpoch(e) end
function M.formatConnectionIssues(info)
  info = info or {}
  local parts = {}
  local stats = info.tcp_stats or {}
  for _, k in ipairs({ "retransmissions", "out_of_order", "lost" }) do
    local c, s = stats["cli2srv." .. k] or 0, stats["srv2cli." .. k] or 0
    if c + s > 0 then parts[#parts + 1] = k:gsub("_", " ") .. ": " .. c .. " / " .. s end
  end
  if #parts == 0 then return "TCP connection issues" end
  return "TCP connection issues (" .. table.concat(parts, ", ") .. ")"
end
return M
