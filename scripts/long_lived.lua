-- Long-lived flows: alert on flows still alive after `min_duration_secs`
-- (default one hour). Checked at every periodicUpdate.
local script = {
  hooks = {},
  gui = { i18n_title = "Long-lived flows", i18n_description = "Alert on flows that last longer than a threshold" },
  default_enabled = true,
  default_value = { min_duration_secs = 3600 },
}

function script.hooks.periodicUpdate(now, conf)
  local d = flow.getDuration()
  if d >= conf.min_duration_secs then
    flow.triggerStatus("long_lived_flow", 20, "notice",
      string.format("flow alive for %d s", math.floor(d)), { duration = d })
  end
end

return script
