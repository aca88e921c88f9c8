//! Export sequence tracking per (exporter, observation domain).
//!
//! In: each message's sequence number and how many units it carried. Out: a
//! [`SeqEvent`] (in order, gap, duplicate/reorder, restart) and running
//! counters. What a unit is depends on the version: v5/v7 count flow records
//! (RFC-less Cisco format: `flow_sequence` = flows seen before this packet),
//! v9 counts export packets (RFC 3954 §5.1), IPFIX counts data records
//! (RFC 7011 §3.1). A jump larger than [`RESTART_WINDOW`] forward or backward,
//! or a sysUptime that went backwards, is an exporter restart, not loss.

/// Jumps beyond this many units are taken as a restart, not as loss.
pub const RESTART_WINDOW: u32 = 1 << 20;

/// What one message's sequence number says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqEvent {
    /// The first message seen from this stream.
    First,
    /// Exactly the expected number.
    InOrder,
    /// `lost` units went missing before this message.
    Gap { lost: u64 },
    /// A number already passed: a duplicate or a late (reordered) message.
    Late,
    /// The exporter restarted (sequence or uptime reset).
    Restart,
    /// The previous message's size was unknown (undecodable sets), so nothing can be said.
    Resync,
}

/// Per-stream state.
#[derive(Debug, Clone, Default)]
pub struct SeqState {
    /// Next expected sequence number, when known.
    next: Option<u32>,
    /// Last header sysUptime (v5/v7/v9), to see restarts.
    last_uptime: Option<u32>,
    seen: bool,
    /// Counters.
    pub gaps: u64,
    pub lost: u64,
    pub late: u64,
    pub restarts: u64,
}

impl SeqState {
    /// Records a message with `seq`, carrying `units` (None when unknown), at header uptime `uptime`.
    pub fn observe(&mut self, seq: u32, units: Option<u32>, uptime: Option<u32>) -> SeqEvent {
        let uptime_reset = matches!((self.last_uptime, uptime), (Some(prev), Some(now)) if now < prev && prev - now > 60_000);
        if uptime.is_some() {
            self.last_uptime = uptime;
        }
        let event = if !self.seen {
            SeqEvent::First
        } else if uptime_reset {
            SeqEvent::Restart
        } else {
            match self.next {
                None => SeqEvent::Resync,
                Some(expected) if seq == expected => SeqEvent::InOrder,
                Some(expected) => {
                    let ahead = seq.wrapping_sub(expected);
                    let behind = expected.wrapping_sub(seq);
                    if ahead < RESTART_WINDOW {
                        SeqEvent::Gap {
                            lost: u64::from(ahead),
                        }
                    } else if behind < RESTART_WINDOW {
                        SeqEvent::Late
                    } else {
                        SeqEvent::Restart
                    }
                }
            }
        };
        self.seen = true;
        match event {
            SeqEvent::Gap { lost } => {
                self.gaps += 1;
                self.lost += lost;
            }
            SeqEvent::Late => {
                self.late += 1;
                // a late message does not move the expectation
                return event;
            }
            SeqEvent::Restart => self.restarts += 1,
            _ => {}
        }
        self.next = units.map(|u| seq.wrapping_add(u));
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_then_gap_then_late() {
        let mut s = SeqState::default();
        assert_eq!(s.observe(100, Some(10), None), SeqEvent::First);
        assert_eq!(s.observe(110, Some(10), None), SeqEvent::InOrder);
        assert_eq!(s.observe(125, Some(5), None), SeqEvent::Gap { lost: 5 });
        assert_eq!(s.observe(120, Some(5), None), SeqEvent::Late);
        assert_eq!(s.observe(130, Some(1), None), SeqEvent::InOrder);
        assert_eq!((s.gaps, s.lost, s.late, s.restarts), (1, 5, 1, 0));
    }

    #[test]
    fn wraps_around_u32() {
        let mut s = SeqState::default();
        s.observe(u32::MAX - 1, Some(3), None);
        assert_eq!(s.observe(1, Some(1), None), SeqEvent::InOrder);
    }

    #[test]
    fn big_jump_is_restart() {
        let mut s = SeqState::default();
        s.observe(5_000_000, Some(1), None);
        assert_eq!(s.observe(0, Some(1), None), SeqEvent::Restart);
        assert_eq!(s.observe(1, Some(1), None), SeqEvent::InOrder);
        assert_eq!(s.restarts, 1);
        assert_eq!(s.lost, 0);
    }

    #[test]
    fn uptime_going_back_is_restart() {
        let mut s = SeqState::default();
        s.observe(10, Some(1), Some(9_000_000));
        assert_eq!(s.observe(11, Some(1), Some(1_000)), SeqEvent::Restart);
    }

    #[test]
    fn unknown_size_resyncs() {
        let mut s = SeqState::default();
        s.observe(10, None, None);
        assert_eq!(s.observe(99, Some(1), None), SeqEvent::Resync);
        assert_eq!(s.observe(100, Some(1), None), SeqEvent::InOrder);
    }
}
