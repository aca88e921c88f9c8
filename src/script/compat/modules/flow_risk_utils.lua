-- flowhook: nDPI flow risk ids and names (ntopng 4.2). NetFlow/IPFIX carry
-- no nDPI risks, so flows never have one; the table is there for scripts.
local M = {}
M.risks = {
  ndpi_no_risk = 0, ndpi_url_possible_xss = 1, ndpi_url_possible_sql_injection = 2,
  ndpi_url_possible_rce_injection = 3, ndpi_binary_application_transfer = 4,
  ndpi_known_protocol_on_non_standard_port = 5, ndpi_tls_selfsigned_certificate = 6,
  ndpi_tls_obsolete_version = 7, ndpi_tls_weak_cipher = 8, ndpi_tls_certificate_expired = 9,
  ndpi_tls_certificate_mismatch = 10, ndpi_http_suspicious_user_agent = 11,
  ndpi_http_numeric_ip_host = 12, ndpi_http_suspicious_url = 13, ndpi_http_suspicious_header = 14,
  ndpi_tls_not_carrying_https = 15, ndpi_suspicious_dga_domain = 16, ndpi_malformed_packet = 17,
  ndpi_ssh_obsolete_client_version_or_cipher = 18, ndpi_ssh_obsolete_server_version_or_cipher = 19,
  ndpi_smb_insecure_version = 20, ndpi_tls_suspicious_esni_usage = 21, ndpi_unsafe_protocol = 22,
  ndpi_dns_suspicious_traffic = 23, ndpi_tls_missing_sni = 24,
}
local by_id = {}
for k, v in pairs(M.risks) do by_id[v] = k end
function M.risk_id_2_i18n(id)
  local k = by_id[tonumber(id) or -1]
  if k == nil then return "unknown risk " .. tostring(id) end
  return (k:gsub("^ndpi_", ""):gsub("_", " "))
end
return M
