-- flowhook: the globals ntopng 4.x gives its flow scripts (lua_utils,
-- ntop_utils, locales, format helpers), the `interface` table, the parts of
-- `ntop` not made in Rust, and the ntopng 4.x flow API on top of flowhook's
-- `flow` object. Runs once per Lua state, in the shared globals that every
-- script environment copies. Written for flowhook; the behaviour follows
-- ntopng's documentation of these functions.
local native = ...
local flow, ntop, string, table, math = flow, ntop, string, table, math
local type, pairs, ipairs, tostring, tonumber, select = type, pairs, ipairs, tostring, tonumber, select
local ndpi = native.ndpi

-- ------------------------------------------------------------------ helpers
function isEmptyString(s) return s == nil or s == "" end
function ternary(c, a, b) if c then return a else return b end end
function table.len(t)
  if type(t) ~= "table" then return 0 end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end
function table.empty(t) return t == nil or next(t) == nil end
function table.clone(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = table.clone(v) end
  return c
end
function table.merge(a, b)
  local r = {}
  for k, v in pairs(a or {}) do r[k] = v end
  for k, v in pairs(b or {}) do r[k] = v end
  return r
end
function string.starts(s, p) return type(s) == "string" and s:sub(1, #p) == p end
function string.ends(s, e) return type(s) == "string" and (e == "" or s:sub(-#e) == e) end
starts, ends = string.starts, string.ends
function string.split(s, sep)
  if type(s) ~= "string" or sep == nil or not s:find(sep) then return nil end
  local out = {}
  for part in (s .. sep):gmatch("(.-)" .. sep) do out[#out + 1] = part end
  return out
end
function firstToUpper(s) return (tostring(s):gsub("^%l", string.upper)) end
function pairsByKeys(t, f)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, f)
  local i = 0
  return function() i = i + 1; if keys[i] ~= nil then return keys[i], t[keys[i]] end end
end
function pairsByValues(t, f)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return f(t[a], t[b]) end)
  local i = 0
  return function() i = i + 1; if keys[i] ~= nil then return keys[i], t[keys[i]] end end
end
function round(v, digits)
  local m = 10 ^ (digits or 0)
  return math.floor(v * m + 0.5) / m
end
function formatValue(v)
  local s = tostring(math.floor(tonumber(v) or 0))
  local r = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (r:gsub("^,", ""))
end
function bytesToSize(b)
  b = tonumber(b) or 0
  local units = { "B", "KB", "MB", "GB", "TB", "PB" }
  local i = 1
  while b >= 1024 and i < #units do b = b / 1024; i = i + 1 end
  if i == 1 then return string.format("%d %s", b, units[i]) end
  return string.format("%.2f %s", b, units[i])
end
function secondsToTime(s)
  s = math.floor(tonumber(s) or 0)
  if s < 1 then return "< 1 sec" end
  local d, h, m = s // 86400, (s % 86400) // 3600, (s % 3600) // 60
  local parts = {}
  if d > 0 then parts[#parts + 1] = d .. " day" .. (d > 1 and "s" or "") end
  if h > 0 then parts[#parts + 1] = h .. " h" end
  if m > 0 then parts[#parts + 1] = m .. " min" end
  if s % 60 > 0 then parts[#parts + 1] = (s % 60) .. " sec" end
  return table.concat(parts, ", ")
end
function formatEpoch(e)
  if e == nil or tonumber(e) == nil or tonumber(e) == 0 then return "" end
  return os.date("!%d/%m/%Y %X", math.floor(tonumber(e)))
end

-- tracing
TRACE_ERROR, TRACE_WARNING, TRACE_NORMAL, TRACE_INFO, TRACE_DEBUG = 0, 1, 2, 3, 6
TRACE_CONSOLE, TRACE_FILE = 0, 1
function traceError(level, mode, msg)
  print(msg)
end

-- localisation: plugin locales (`locales/en.lua`) under the plugin's name
local locales
local function load_locales()
  locales = {}
  for _, l in ipairs(native.locales) do
    if l.key == "en" then
      local chunk = load(l.source, "@" .. l.path, "t", {})
      local ok, t = pcall(chunk or function() end)
      if ok and type(t) == "table" then
        locales[l.plugin] = table.merge(locales[l.plugin], t)
      elseif not ok then
        native.warn(l.path, tostring(t))
      end
    end
  end
end
-- The string for `key` ("plugin.a.b") with %{name} filled in; nil when unknown.
local function lookup(key, params)
  if type(key) ~= "string" then return nil end
  if locales == nil then load_locales() end
  local node = locales
  for part in key:gmatch("[^%.]+") do
    if type(node) ~= "table" then return nil end
    node = node[part]
  end
  if type(node) ~= "string" then return nil end
  if type(params) == "table" then
    node = node:gsub("%%{([%w_%.]+)}", function(k)
      local v = params[k]
      if v == nil then return nil end
      return tostring(v)
    end)
  end
  return node
end
native.i18n_lookup = lookup
-- ntopng's i18n; for keys of ntopng's own locale (not shipped) the key itself
function i18n(key, params)
  return lookup(key, params) or key
end

-- urls, hosts, misc lua_utils globals
function getDeviceProtocolPoliciesUrl(params) return "" end
function getMacUrl(mac) return "" end
function getHostUrl(host, vlan) return "" end
function getHostPoolUrl(pool) return "" end
function get_symbolic_mac(mac) return mac end
function getInterfaceName(id) return "flowhook" end
function getHumanReadableInterfaceName(id) return "flowhook" end
function host2name(host) return host end
function areAlertsEnabled() return true end
function hostinfo2hostkey(info)
  if type(info) ~= "table" then return tostring(info) end
  local host = info.host or info.ip or ""
  local vlan = tonumber(info.vlan) or 0
  if vlan > 0 then return host .. "@" .. vlan end
  return host
end
function hostkey2hostinfo(key)
  local host, vlan = tostring(key):match("^(.-)@(%d+)$")
  return { host = host or key, vlan = tonumber(vlan) or 0 }
end
function formatElephantFlowStatus(info, l2r)
  info = info or {}
  local th = l2r and info["elephant.l2r_threshold"] or info["elephant.r2l_threshold"]
  return (l2r and "Elephant flow (local to remote)" or "Elephant flow (remote to local)")
    .. (th and (" above " .. bytesToSize(th)) or "")
end
l4_keys = {
  { "IP", "ip", 0 }, { "ICMP", "icmp", 1 }, { "IGMP", "igmp", 2 }, { "TCP", "tcp", 6 },
  { "UDP", "udp", 17 }, { "IPv6", "ipv6", 41 }, { "RSVP", "rsvp", 46 }, { "GRE", "gre", 47 },
  { "ESP", "esp", 50 }, { "IPv6-ICMP", "ipv6icmp", 58 }, { "OSPF", "ospf", 89 },
  { "PIM", "pim", 103 }, { "VRRP", "vrrp", 112 }, { "HIP", "hip", 139 }, { "SCTP", "sctp", 132 },
}
function l4_proto_to_id(name)
  for _, k in ipairs(l4_keys) do
    if k[1] == name or k[2] == name then return k[3] end
  end
  return nil
end
function shortFlowLabel(info)
  if type(info) ~= "table" then return "" end
  local label = ""
  if info["proto.ndpi"] ~= nil then label = "[" .. info["proto.ndpi"] .. "] " end
  label = label .. (info["proto.l4"] or "") .. " " .. (info["cli.ip"] or "") .. ":" .. (info["cli.port"] or "")
    .. " -> " .. (info["srv.ip"] or "") .. ":" .. (info["srv.port"] or "")
  if info.info ~= nil and info.info ~= "" then label = label .. " [" .. info.info .. "]" end
  return label
end

-- ------------------------------------------------------------------ ntop.*
function ntop.isPro() return false end
function ntop.isEnterprise() return false end
function ntop.isEnterpriseM() return false end
function ntop.isEnterpriseL() return false end
function ntop.isnEdge() return false end
function ntop.isnEdgeEnterprise() return false end
function ntop.isWindows() return false end
function ntop.isAppliance() return false end
function ntop.isShutdown() return false end
function ntop.getHttpPrefix() return "" end
local dir_table = ntop.__dirs
ntop.__dirs = nil
function ntop.getDirs()
  local d = {}
  for k, v in pairs(dir_table) do d[k] = v end
  return d
end
-- what ntopng's files expect around them: `dirs` and `package.path` (set, never searched)
dirs = ntop.getDirs()
package = { path = "", cpath = "", loaded = {} }
function ntop.getInfo() return { product = "flowhook", version = "ntopng 4.x compatible" } end
function ntop.getStartupEpoch() return 0 end
local tls_names = { [0x300] = "SSLv3", [0x301] = "TLSv1", [0x302] = "TLSv1.1", [0x303] = "TLSv1.2", [0x304] = "TLSv1.3" }
function ntop.getTLSVersionName(v) return tls_names[tonumber(v) or 0] end
function ntop.syslog(...) end
-- Redis hashes, sets and lists have no meaning here: they answer empty
for _, name in ipairs({ "getHashCache", "getHashAllCache", "getMembersCache", "lrangeCache", "lpopCache" }) do
  ntop[name] = function() return nil end
end
for _, name in ipairs({ "setHashCache", "delHashCache", "setMembersCache", "delMembersCache", "ltrimCache" }) do
  ntop[name] = function() end
end

-- ------------------------------------------------------------------ interface.*
interface = {}
function interface.getId() return 0 end
function interface.getName() return "flowhook" end
function interface.isPacketInterface() return false end
function interface.isView() return false end
function interface.getStats() return {} end
function interface.getnDPIProtoName(id) return ndpi.names[tonumber(id) or -1] or "Unknown" end
function interface.getnDPIProtoId(name) return ndpi.protos[name] or -1 end

-- ------------------------------------------------------------------ the 4.x flow API
local raw = {
  getInfo = flow.getInfo,
  triggerStatus = flow.triggerStatus,
  isStatusSet = flow.isStatusSet,
  status4 = flow._status4x,
  clear = flow._clearStatus,
  blacklisted = flow._blacklisted,
  key = flow.getKey,
}
flow._status4x, flow._clearStatus, flow._blacklisted = nil, nil, nil

-- the application part of "TLS.Google" style names, and its category
local function l7_parts(l7)
  local master, app = tostring(l7 or "Unknown"):match("^([^%.]+)%.?(.*)$")
  if app == nil or app == "" then app = master end
  return master or "Unknown", app or "Unknown"
end
local function category(l7)
  local master = l7_parts(l7)
  local name = ndpi.proto_category[master] or "Unspecified"
  return name, ndpi.categories[name] or 0
end

-- getInfo carries ntopng's names too (proto.ndpi, proto.ndpi_app, proto.ndpi_cat, cli./srv.localhost)
local getInfo = raw.getInfo

local function ip_kind(ip)
  ip = tostring(ip or "")
  if ip == "" then return "none" end
  if ip == "0.0.0.0" or ip == "::" then return "noip" end
  if ip == "255.255.255.255" then return "broadcast" end
  local a = tonumber(ip:match("^(%d+)%."))
  if a and a >= 224 and a <= 239 then return "multicast" end
  if ip:lower():match("^ff%x%x:") then return "multicast" end
  -- a directed broadcast (x.x.x.255) cannot be told from a host without the prefix length
  return "unicast"
end
function flow.isClientUnicast() local k = ip_kind(getInfo()["cli.ip"]) return k == "unicast" or k == "noip" end
function flow.isServerUnicast() local k = ip_kind(getInfo()["srv.ip"]) return k == "unicast" or k == "noip" end
function flow.isUnicast() return flow.isClientUnicast() and flow.isServerUnicast() end
function flow.isClientNoIP() return ip_kind(getInfo()["cli.ip"]) == "noip" end
function flow.isServerNoIP() return ip_kind(getInfo()["srv.ip"]) == "noip" end
function flow.getUnicastInfo()
  local i = getInfo()
  local function bm(ip) local k = ip_kind(ip) return k == "broadcast" or k == "multicast" end
  return { ["cli.broadmulticast"] = bm(i["cli.ip"]), ["srv.broadmulticast"] = bm(i["srv.ip"]) }
end

function flow.getnDPIAppProtoId() local _, app = l7_parts(getInfo()["proto.l7"]) return ndpi.protos[app] or 0 end
function flow.getnDPIMasterProtoId() local master = l7_parts(getInfo()["proto.l7"]) return ndpi.protos[master] or 0 end
function flow.getnDPICategoryName() return (category(getInfo()["proto.l7"])) end
function flow.getnDPICategoryId() return select(2, category(getInfo()["proto.l7"])) end
function flow.getProtoBreed() return "Unrated" end
function flow.getProtocols()
  local i = getInfo()
  return {
    ["proto.l4"] = i["proto.l4"], ["proto.ndpi"] = i["proto.l7"],
    ["proto.ndpi_id"] = flow.getnDPIAppProtoId(), ["proto.master_ndpi_id"] = flow.getnDPIMasterProtoId(),
    ["proto.ndpi_cat"] = flow.getnDPICategoryName(), ["proto.ndpi_cat_id"] = flow.getnDPICategoryId(),
  }
end

-- TCP: from the flags NetFlow/IPFIX carry (no per-packet retransmission data)
local SYN, RST, ACK = 0x02, 0x04, 0x10
local function flags()
  local i = getInfo()
  return i["proto.l4"] == "TCP", i["cli2srv.tcp_flags"] or 0, i["srv2cli.tcp_flags"] or 0
end
function flow.isTwhOK()
  local tcp, c, s = flags()
  return tcp and (c & SYN) ~= 0 and (s & SYN) ~= 0 and (s & ACK) ~= 0 and (c & ACK) ~= 0
end
function flow.isTCPConnectionRefused()
  local tcp, c, s = flags()
  return tcp and (c & SYN) ~= 0 and (s & RST) ~= 0 and not flow.isTwhOK()
end
function flow.isTCPConnecting()
  local tcp, c, s = flags()
  return tcp and (c & SYN) ~= 0 and not flow.isTwhOK() and (s & RST) == 0
end
function flow.getTCPStats()
  return {
    ["cli2srv.retransmissions"] = 0, ["cli2srv.out_of_order"] = 0, ["cli2srv.lost"] = 0,
    ["srv2cli.retransmissions"] = 0, ["srv2cli.out_of_order"] = 0, ["srv2cli.lost"] = 0,
  }
end
function flow.getClientTCPIssues() return 0 end
function flow.getServerTCPIssues() return 0 end
function flow.getClientRetrPercentage() return 0 end
function flow.getServerRetrPercentage() return 0 end
function flow.getGoodputBytes() return 0 end
function flow.getClient2ServerIAT() return {} end
function flow.getServer2ClientIAT() return {} end

-- host keys "ip@vlan", as ntopng writes them

-- what needs packets, DPI or ntopng's hosts: ntopng's answer without data
function flow.hasRisk() return false end
function flow.getRiskInfo() return {} end
function flow.getTLSInfo() return {} end
function flow.getSSHInfo() return {} end
function flow.getHTTPInfo() return {} end
function flow.getDNSInfo() return {} end
function flow.getMUDInfo() return {} end
function flow.getnDPIMatchPacket() return {} end
function flow.getDnsQuery() if getInfo()["proto.l7"] == "DNS" then return nil end return "" end
function flow.getTLSVersion() return 0 end
function flow.getServerCipherClass() return nil end
function flow.getICMPType() return 0 end
function flow.getMaxSeenIcmpPayloadSize() return 0 end
function flow.getICMPStatusInfo() return nil end
function flow.hasMaliciousTlsSignature() return false end
function flow.dnsQueryHasInvalidChars() return false end
function flow.isNotPurged() return false end
function flow.isPassVerdict() return true end
function flow.isDeviceProtocolNotAllowed() return false end
function flow.getDeviceProtoAllowedInfo() return {} end
function flow.retrieveExternalAlertInfo() return nil end
function flow.getHashEntryId() return 0 end
function flow.getAlertedStatus() return 0 end
function flow.getAlertedStatusScore() return 0 end
function flow.getPredominantStatus() return 0 end
function flow.getScoreInfo() return { status_map = 0, score = flow.getScore() } end

-- blocklist: flowhook's blocklist script marks the listed side (`flow.markBlacklisted`)
function flow.isBlacklisted() local c, s = raw.blacklisted() return c or s end
function flow.getBlacklistedInfo()
  local c, s = raw.blacklisted()
  local t = {}
  if c then t["blacklisted.cli"] = true end
  if s then t["blacklisted.srv"] = true end
  return t
end

-- ------------------------------------------------------------------ statuses, 4.x forms
local function severity_name(sev)
  if type(sev) == "table" then
    if type(sev.name) == "string" then return sev.name end
    sev = sev.syslog_severity
    local names = { [0] = "emergency", "alert", "critical", "error", "warning", "notice", "info", "info" }
    return names[tonumber(sev) or 4] or "warning"
  end
  if type(sev) == "string" then return sev end
  return nil
end

-- flowhook's name of a status: the status key without "status_"
local function status_name(def)
  local key = type(def) == "table" and (def.key or def.status_key) or def
  if type(key) == "number" then
    for _, s in ipairs(native.statuses) do
      if s.id == key then key = s.key break end
    end
  end
  key = tostring(key or "status_unknown")
  return (key:gsub("^status_", ""))
end

local function describe(def, params, name)
  local d = type(def) == "table" and def.i18n_description
  local text
  if type(d) == "function" then
    local ok, r = pcall(d, params or {})
    if ok and type(r) == "string" then text = r end
  elseif type(d) == "string" then
    text = lookup(d, params)
  end
  if text == nil and type(def) == "table" then text = lookup(def.i18n_title, params) end
  if text == nil then text = (name:gsub("_", " ")) end
  return text
end

local function score(v)
  v = math.tointeger(tonumber(v) or 0) or 0
  if v < 0 then return 0 end
  return v
end

-- flow.triggerStatus with a table first (flowhook's own form, a name first,
-- stays in Rust):
-- (status_info [, flow_score, cli_score, srv_score])             ntopng 4.2
-- (status_type, status_info, flow_score, cli_score, srv_score, sev) ntopng 4.0
native.trigger4x = function(a, ...)
  local def, params, fs, cs, ss, sev
  if type(a.status_type) == "table" then
    def = a.status_type
    params = a.alert_type_params or {}
    fs, cs, ss = ...
    sev = severity_name(def.alert_severity) or severity_name(a.alert_severity)
  else
    def = a
    params, fs, cs, ss, sev = ...
    sev = severity_name(sev) or severity_name(def.alert_severity)
    if type(params) == "number" then
      print("Invalid status_info")
      return
    end
  end
  local name = status_name(def)
  fs = score(fs)
  -- a status with score 0 never alerts in ntopng
  raw.status4(name, fs, score(cs), score(ss), sev or "warning", describe(def, params, name), params, fs > 0)
end

-- 4.0: setStatus(status_type, flow_score, cli_score, srv_score); 4.2 (C): setStatus(status_id, …)
function flow.setStatus(st, fs, cs, ss)
  local name = status_name(st)
  if raw.isStatusSet(name) then return false end
  raw.status4(name, score(fs), score(cs), score(ss), severity_name(type(st) == "table" and st.alert_severity) or "info", "", {}, false)
  return true
end
function flow.clearStatus(st)
  return raw.clear(status_name(st))
end
