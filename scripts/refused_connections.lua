-- Refused connections and scans: a client whose TCP connections are refused
-- (tcp_connection_refused) or unanswered (tcp_no_response) more than
-- `max_refused` times within `window_secs` is probably scanning: alert once
-- per client and window. State is per worker (flows of one client may land on
-- several workers, so the threshold applies per worker).
local script = {
  hooks = {},
  gui = { i18n_title = "Refused connections / scans", i18n_description = "Alert on clients with many refused or unanswered TCP connections" },
  default_enabled = true,
  l4_proto = "TCP",
  default_value = { max_refused = 20, window_secs = 60 },
}

local seen = {}   -- client ip -> { start = t, count = n, alerted = bool }
local tracked = 0

function script.hooks.statusChanged(now, conf)
  if not (flow.isStatusSet("tcp_connection_refused") or flow.isStatusSet("tcp_no_response")) then return end
  local ip = flow.getClientIp()
  local s = seen[ip]
  if s == nil or now - s.start > conf.window_secs then
    if s == nil then tracked = tracked + 1 end
    s = { start = now, count = 0, alerted = false }
    seen[ip] = s
  end
  s.count = s.count + 1
  if s.count > conf.max_refused and not s.alerted then
    s.alerted = true
    flow.triggerStatus("tcp_scan", 80, "error",
      string.format("%s had %d refused or unanswered connections in %d s", ip, s.count, conf.window_secs),
      { client = ip, refused = s.count })
  end
  -- keep the table bounded
  if tracked > 100000 then seen = {}; tracked = 0 end
end

return script
