//! What a stream's decoder state looks like on disk, and how it comes back.
//!
//! In: the template records of each template set a stream sends (kept
//! byte for byte, with the wall time they were last seen) and the sampling
//! rates it announced. Out: [`SavedStream`]s for the state file (`state`
//! writes them), and, after a restart, the same streams restored by feeding
//! their template records back through the decoder as one synthetic message
//! per stream — the crate, the variable-length templates and the compiled
//! plans learn them exactly as they learnt them live.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::sampling::Announced;

/// One template record as the exporter sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedTemplate {
    /// Template set id (v9 0/1, IPFIX 2/3).
    pub set_id: u16,
    pub id: u16,
    /// Wall time it was last received (defined or refreshed), Unix ms.
    pub learned_ms: i64,
    /// The template record, header included.
    #[serde(with = "hex_bytes")]
    pub bytes: Vec<u8>,
}

/// One stream's persisted state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedStream {
    pub exporter: IpAddr,
    pub version: u16,
    pub domain: u32,
    pub templates: Vec<SavedTemplate>,
    #[serde(default)]
    pub sampling: Announced,
}

impl SavedStream {
    /// The newest time anything of this stream was learnt.
    pub fn learned_ms(&self) -> i64 {
        self.templates
            .iter()
            .map(|t| t.learned_ms)
            .max()
            .unwrap_or(i64::MIN)
    }
}

/// The template records a stream defined, by id (bounded like the crate's cache).
#[derive(Debug, Clone, Default)]
pub struct WireTemplates {
    list: Vec<SavedTemplate>,
}

impl WireTemplates {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn has(&self, id: u16) -> bool {
        self.list.iter().any(|t| t.id == id)
    }

    pub fn list(&self) -> &[SavedTemplate] {
        &self.list
    }

    /// Learns the template records of one template set; true when a
    /// definition was added, changed or withdrawn (times alone do not count).
    pub fn learn(
        &mut self,
        version: u16,
        set_id: u16,
        body: &[u8],
        cap: usize,
        now_ms: i64,
    ) -> bool {
        let mut changed = false;
        for (id, t, span) in super::varlen::template_records(version, set_id, body) {
            let pos = self.list.iter().position(|s| s.id == id);
            let Some(bytes) = t.and(body.get(span)) else {
                if let Some(i) = pos {
                    self.list.remove(i);
                    changed = true;
                }
                continue;
            };
            match pos {
                Some(i) if self.list[i].bytes == bytes && self.list[i].set_id == set_id => {
                    self.list[i].learned_ms = now_ms;
                }
                Some(i) => {
                    self.list[i] = SavedTemplate {
                        set_id,
                        id,
                        learned_ms: now_ms,
                        bytes: bytes.to_vec(),
                    };
                    changed = true;
                }
                None => {
                    if self.list.len() >= cap.max(1) {
                        // the least recently learnt goes, as in the crate's cache
                        if let Some((i, _)) = self
                            .list
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, t)| t.learned_ms)
                        {
                            self.list.remove(i);
                        }
                    }
                    self.list.push(SavedTemplate {
                        set_id,
                        id,
                        learned_ms: now_ms,
                        bytes: bytes.to_vec(),
                    });
                    changed = true;
                }
            }
        }
        changed
    }

    /// A refresh of compiled templates (same definition): only the time moves.
    pub fn touch(&mut self, id: u16, now_ms: i64) {
        if let Some(t) = self.list.iter_mut().find(|t| t.id == id) {
            t.learned_ms = now_ms;
        }
    }

    /// Keeps a restored record (not yet known here) with its original time.
    pub fn restore(&mut self, t: &SavedTemplate) {
        if !self.has(t.id) {
            self.list.push(t.clone());
        }
    }
}

/// Export messages (each below 64 KiB) that define `templates` for a stream:
/// what [`super::Decoder::restore`] feeds through the decoder.
pub fn messages(s: &SavedStream, templates: &[&SavedTemplate], now_ms: i64) -> Vec<Vec<u8>> {
    const MAX: usize = 60_000;
    let mut out = Vec::new();
    let mut sets: Vec<u8> = Vec::new();
    let mut count = 0u16;
    let flush = |sets: &mut Vec<u8>, count: &mut u16, out: &mut Vec<Vec<u8>>| {
        if sets.is_empty() {
            return;
        }
        let secs = (now_ms / 1000).clamp(0, i64::from(u32::MAX)) as u32;
        let mut m = Vec::with_capacity(sets.len() + 20);
        if s.version == 10 {
            m.extend_from_slice(&10u16.to_be_bytes());
            m.extend_from_slice(&((16 + sets.len()) as u16).to_be_bytes());
            m.extend_from_slice(&secs.to_be_bytes());
            m.extend_from_slice(&0u32.to_be_bytes());
            m.extend_from_slice(&s.domain.to_be_bytes());
        } else {
            m.extend_from_slice(&9u16.to_be_bytes());
            m.extend_from_slice(&count.to_be_bytes());
            m.extend_from_slice(&1u32.to_be_bytes());
            m.extend_from_slice(&secs.to_be_bytes());
            m.extend_from_slice(&0u32.to_be_bytes());
            m.extend_from_slice(&s.domain.to_be_bytes());
        }
        m.extend_from_slice(sets);
        out.push(m);
        sets.clear();
        *count = 0;
    };
    for t in templates {
        if t.bytes.len() + 4 > MAX {
            continue;
        }
        if sets.len() + t.bytes.len() + 4 > MAX {
            flush(&mut sets, &mut count, &mut out);
        }
        // one set per record keeps v9 and IPFIX alike (a set may hold one template)
        sets.extend_from_slice(&t.set_id.to_be_bytes());
        sets.extend_from_slice(&((t.bytes.len() + 4) as u16).to_be_bytes());
        sets.extend_from_slice(&t.bytes);
        count += 1;
    }
    flush(&mut sets, &mut count, &mut out);
    out
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::record::hex(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        if !s.len().is_multiple_of(2) || !s.is_ascii() {
            return Err(serde::de::Error::custom("odd or non-ASCII hex string"));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(serde::de::Error::custom))
            .collect()
    }
}
