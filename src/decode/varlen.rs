//! Variable-length fields, handled around the decoder crate.
//!
//! `netflow_parser` 1.0.6 rejects a variable-length field whose length is 0
//! (RFC 7011 §7 allows it: an empty string), which silently empties whole
//! data sets (Procera, NetScaler, IXIA), and it refuses NetFlow v9 templates
//! that borrow IPFIX's variable-length encoding (H3C NetStream declares
//! VRFname with length 65535). So flowhook keeps its own copy of every
//! template that has a variable-length field, learnt from the template sets
//! as they pass, and decodes those templates' data sets itself: it cuts the
//! record into fields (RFC 7011 §7: one length byte, or 255 and two bytes)
//! and lets the crate type each field's bytes (`FieldValue::from_field_type`).
//!
//! In: the message bytes and its sets. Out: [`VarTemplates`] updates and
//! decoded records as `(field, value)` lists.

use rustc_hash::FxHashMap;

use netflow_parser::variable_versions::enterprise_registry::EnterpriseFieldRegistry;
use netflow_parser::variable_versions::field_value::FieldDataType;
use netflow_parser::variable_versions::ipfix::lookup::IPFixField;
use netflow_parser::{FieldValue, V9Field};

/// One template field as declared on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireField {
    pub ie: u16,
    pub len: u16,
    pub pen: Option<u32>,
}

/// A template with at least one variable-length field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarTemplate {
    pub fields: Vec<WireField>,
    /// Options template (records are options data).
    pub options: bool,
}

/// Variable-length templates of one stream, bounded.
#[derive(Debug, Clone, Default)]
pub struct VarTemplates {
    map: FxHashMap<u16, VarTemplate>,
}

/// A decoded field: the crate's field enum (v9 or IPFIX) and its value.
pub enum AnyField {
    V9(V9Field),
    Ipfix(IPFixField),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// The sets of a v9 or IPFIX message: `(set id, body)`.
pub fn sets(msg: &[u8], version: u16) -> Vec<(u16, &[u8])> {
    let mut at = if version == 9 { 20 } else { 16 };
    let mut out = Vec::new();
    while let (Some(id), Some(len)) = (u16_at(msg, at), u16_at(msg, at + 2)) {
        let len = usize::from(len);
        if len < 4 || at + len > msg.len() {
            break;
        }
        out.push((id, &msg[at + 4..at + len]));
        at += len;
    }
    out
}

/// Calls `f` with `(set id, body)` of each set of a v9 or IPFIX message, as
/// [`sets`] lists them, without allocating. Returns whether the sets fill
/// the message exactly (at least one set, nothing left over).
pub fn for_each_set(msg: &[u8], version: u16, mut f: impl FnMut(u16, &[u8])) -> bool {
    let start = if version == 9 { 20 } else { 16 };
    let mut at = start;
    while let (Some(id), Some(len)) = (u16_at(msg, at), u16_at(msg, at + 2)) {
        let len = usize::from(len);
        if len < 4 || at + len > msg.len() {
            break;
        }
        f(id, &msg[at + 4..at + len]);
        at += len;
    }
    at > start && at == msg.len()
}

impl VarTemplates {
    pub fn get(&self, id: u16) -> Option<&VarTemplate> {
        self.map.get(&id)
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn put(&mut self, id: u16, t: Option<VarTemplate>, cap: usize) {
        match t {
            Some(t) => {
                if !self.map.contains_key(&id)
                    && self.map.len() >= cap
                    && let Some(k) = self.map.keys().next().copied()
                {
                    self.map.remove(&k);
                }
                self.map.insert(id, t);
            }
            None => {
                self.map.remove(&id);
            }
        }
    }

    /// Learns from one template set (v9 ids 0/1, IPFIX ids 2/3); keeps only
    /// templates with a variable-length field, forgets redefined ones.
    /// Returns how many variable-length templates the set defined.
    pub fn learn(&mut self, version: u16, set_id: u16, body: &[u8], cap: usize) -> usize {
        let mut learnt = 0;
        for (tid, t) in parse_templates(version, set_id, body) {
            let t = t.filter(|t| t.fields.iter().any(|f| f.len == 65535));
            learnt += usize::from(t.is_some());
            self.put(tid, t, cap);
        }
        learnt
    }
}

/// The templates one template set defines, in order: `(id, Some(template))`,
/// or `(id, None)` for a withdrawal (RFC 7011 §8.1). v9 sets 0/1 and IPFIX
/// sets 2/3 (the options ones marked `options`); parsing stops at padding
/// or at a template that runs past the set.
pub fn parse_templates(version: u16, set_id: u16, body: &[u8]) -> Vec<(u16, Option<VarTemplate>)> {
    template_records(version, set_id, body)
        .into_iter()
        .map(|(tid, t, _)| (tid, t))
        .collect()
}

/// As [`parse_templates`], with each template record's bytes in `body`
/// (what `persist` keeps to restore the template after a restart).
pub fn template_records(
    version: u16,
    set_id: u16,
    body: &[u8],
) -> Vec<(u16, Option<VarTemplate>, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let enterprise_bit = version == 10;
    let options = matches!((version, set_id), (9, 1) | (10, 3));
    if !matches!((version, set_id), (9, 0) | (9, 1) | (10, 2) | (10, 3)) {
        return out;
    }
    while at + 4 <= body.len() {
        let (Some(tid), Some(second)) = (u16_at(body, at), u16_at(body, at + 2)) else {
            return out;
        };
        if tid < 256 {
            return out; // padding
        }
        let start = at;
        at += 4;
        let mut fields = Vec::new();
        let count = if version == 9 && options {
            // v9 options: scope length and option length in bytes (RFC 3954 §6.1)
            let Some(opt_len) = u16_at(body, at) else {
                return out;
            };
            at += 2;
            (usize::from(second) + usize::from(opt_len)) / 4
        } else {
            usize::from(second)
        };
        if version == 10 && options {
            at += 2; // scope field count; scope fields are ordinary fields here
        }
        if count == 0 {
            out.push((tid, None, start..at)); // withdrawal (RFC 7011 §8.1)
            continue;
        }
        for _ in 0..count {
            let (Some(mut ie), Some(len)) = (u16_at(body, at), u16_at(body, at + 2)) else {
                return out;
            };
            at += 4;
            let mut pen = None;
            if enterprise_bit && ie & 0x8000 != 0 {
                ie &= 0x7fff;
                let Some(p) = u32_at(body, at) else {
                    return out;
                };
                pen = Some(p);
                at += 4;
            }
            fields.push(WireField { ie, len, pen });
        }
        out.push((tid, Some(VarTemplate { fields, options }), start..at));
    }
    out
}

/// Decodes a data set of `t`. Records are cut per RFC 7011 §7; a record that
/// runs past the set ends it (the rest is padding or damage).
pub fn decode_set(
    version: u16,
    t: &VarTemplate,
    body: &[u8],
    registry: &EnterpriseFieldRegistry,
) -> Vec<Vec<(AnyField, FieldValue)>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let min: usize = t
        .fields
        .iter()
        .map(|f| {
            if f.len == 65535 {
                1
            } else {
                usize::from(f.len)
            }
        })
        .sum();
    while min > 0 && at + min <= body.len() {
        let mut rec = Vec::with_capacity(t.fields.len());
        let mut ok = true;
        for f in &t.fields {
            let len = if f.len == 65535 {
                let Some(&b) = body.get(at) else {
                    ok = false;
                    break;
                };
                at += 1;
                if b == 255 {
                    let Some(l) = u16_at(body, at) else {
                        ok = false;
                        break;
                    };
                    at += 2;
                    usize::from(l)
                } else {
                    usize::from(b)
                }
            } else {
                usize::from(f.len)
            };
            let Some(bytes) = body.get(at..at + len) else {
                ok = false;
                break;
            };
            at += len;
            let (field, ty) = if version == 9 {
                let v = V9Field::from(f.ie);
                (AnyField::V9(v), FieldDataType::from(v))
            } else {
                let v = IPFixField::new(f.ie, f.pen);
                (AnyField::Ipfix(v), v.to_field_data_type(registry))
            };
            let value = match FieldValue::from_field_type(bytes, ty, len as u16) {
                Ok((_, v)) if len > 0 => v,
                _ if matches!(ty, FieldDataType::String) => {
                    FieldValue::from_field_type(bytes, ty, len as u16)
                        .map(|(_, v)| v)
                        .unwrap_or_else(|_| FieldValue::Vec(bytes.to_vec()))
                }
                _ => FieldValue::Vec(bytes.to_vec()),
            };
            rec.push((field, value));
        }
        if !ok {
            break;
        }
        out.push(rec);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipfix_template(tid: u16, fields: &[(u16, u16)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&tid.to_be_bytes());
        b.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        for (ie, len) in fields {
            b.extend_from_slice(&ie.to_be_bytes());
            b.extend_from_slice(&len.to_be_bytes());
        }
        b
    }

    #[test]
    fn learns_only_varlen_templates_and_forgets_redefinitions() {
        let mut v = VarTemplates::default();
        v.learn(10, 2, &ipfix_template(300, &[(8, 4), (82, 65535)]), 16);
        assert!(v.get(300).is_some());
        v.learn(10, 2, &ipfix_template(300, &[(8, 4)]), 16);
        assert!(v.get(300).is_none());
    }

    #[test]
    fn decodes_zero_and_long_lengths() {
        let t = VarTemplate {
            fields: vec![
                WireField {
                    ie: 8,
                    len: 4,
                    pen: None,
                },
                WireField {
                    ie: 82,
                    len: 65535,
                    pen: None,
                },
            ],
            options: false,
        };
        let mut body = vec![10, 0, 0, 1, 0]; // empty interfaceName
        body.extend_from_slice(&[10, 0, 0, 2, 255, 0, 3, b'a', b'b', b'c']);
        body.extend_from_slice(&[0, 0]); // padding
        let recs = decode_set(10, &t, &body, &EnterpriseFieldRegistry::new());
        assert_eq!(recs.len(), 2);
        assert!(matches!(&recs[1][1].1, FieldValue::String(s) if s.value == "abc"));
    }

    #[test]
    fn hostile_lengths_stop_cleanly() {
        let t = VarTemplate {
            fields: vec![WireField {
                ie: 82,
                len: 65535,
                pen: None,
            }],
            options: false,
        };
        let body = [255, 255, 255, 1, 2];
        assert!(decode_set(10, &t, &body, &EnterpriseFieldRegistry::new()).is_empty());
    }
}
