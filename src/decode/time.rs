//! Time conversion for flow start/end fields.
//!
//! In: header times (Unix seconds, nanoseconds, system uptime) and the flow's
//! raw time fields. Out: absolute Unix milliseconds. NetFlow v5/v7/v9 times are
//! sysUptime offsets (RFC 3954 §5.2: `first`/`last` in ms since boot), so the
//! absolute time is `export - (uptime - t)`. The uptime counter is 32-bit and
//! wraps after ~49.7 days; taking the difference modulo 2^32 as a signed
//! 32-bit number handles a flow that started before the wrap (t > uptime) and
//! a `last` a few ms ahead of the header's uptime alike.

/// Unix ms of a sysUptime-relative time `t_ms`, given the export time and uptime from the header.
pub fn uptime_to_unix_ms(export_unix_ms: i64, sys_uptime_ms: u32, t_ms: u32) -> i64 {
    let ago = sys_uptime_ms.wrapping_sub(t_ms) as i32;
    export_unix_ms - i64::from(ago)
}

/// Unix ms of an IPFIX sysUpTime-relative time (IE 21/22) given systemInitTimeMilliseconds (IE 160).
pub fn init_relative_to_unix_ms(system_init_ms: i64, t_ms: u64) -> i64 {
    system_init_ms.saturating_add(i64::try_from(t_ms).unwrap_or(i64::MAX))
}

/// Unix ms of an IPFIX delta-microseconds time (IE 158/159, RFC 7011 §6.1.8
/// dateTimeMicroseconds relative to the message's export time: time before export).
pub fn delta_us_to_unix_ms(export_unix_ms: i64, delta_us: u64) -> i64 {
    export_unix_ms - i64::try_from(delta_us / 1000).unwrap_or(i64::MAX)
}

/// Unix ms of a v5/v7 header's `unix_secs` + `unix_nsecs`.
pub fn header_unix_ms(unix_secs: u32, unix_nsecs: u32) -> i64 {
    i64::from(unix_secs) * 1000 + i64::from(unix_nsecs.min(999_999_999) / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_simple() {
        // exported at t=10_000 ms uptime; flow started at 4_000 → 6 s earlier
        assert_eq!(uptime_to_unix_ms(1_000_000, 10_000, 4_000), 994_000);
    }

    #[test]
    fn uptime_wrap_start_before_wrap() {
        // uptime wrapped to 3381 ms; flow started at 0xFFFF_FFFF (1 ms before the wrap)
        assert_eq!(
            uptime_to_unix_ms(1_000_000, 3381, u32::MAX),
            1_000_000 - 3382
        );
    }

    #[test]
    fn uptime_last_slightly_ahead_of_header() {
        assert_eq!(uptime_to_unix_ms(1_000_000, 10_000, 10_005), 1_000_005);
    }

    #[test]
    fn uptime_near_wrap_boundary() {
        // export just before the wrap, flow from long ago
        assert_eq!(
            uptime_to_unix_ms(5_000_000, u32::MAX - 10, u32::MAX - 1_000_010),
            4_000_000
        );
    }

    #[test]
    fn ipfix_variants() {
        assert_eq!(
            init_relative_to_unix_ms(1_431_516_013_506, 12_726),
            1_431_516_026_232
        );
        assert_eq!(delta_us_to_unix_ms(1_000_000, 2_500_000), 997_500);
        assert_eq!(
            header_unix_ms(1_430_591_888, 280_328_000),
            1_430_591_888_280
        );
        assert_eq!(header_unix_ms(1, 2_000_000_000), 1_999);
    }
}
