-- Example script of the flowhook-scripts ConfigMap: an alert, once per
-- exporter, when an exporter's records arrive without a sampling rate
-- flowhook could apply (add a [[sampling]] rule for it). Add your own
-- scripts to the ConfigMap beside this one (docs/scripting.md).
local script = { hooks = {}, default_enabled = true }
local told = {}

function script.hooks.flowEnd(now)
  local e = flow.getExporterInfo()
  if e.sampling_source == nil and not told[e.exporter] then
    told[e.exporter] = true
    flow.triggerAlert(0, "exporter " .. e.exporter .. " announces no sampling rate", { exporter = e.exporter })
  end
end

return script
