-- flowhook: an ntopng module for its web GUI, Redis, time series or
-- notifications. Flow scripts may require it; every function does nothing
-- and answers nil.
local noop = function() return nil end
return setmetatable({}, { __index = function() return noop end })
