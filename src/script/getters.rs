//! `flow`'s plain getters (an address, a country, a counter: one value read
//! from the flow) as one C function of Lua's API, told by an upvalue which
//! value to push, and the two geolocation tables as another. A getter made with mlua's `create_function` runs through
//! mlua's callback machinery (panic guard, error slot, argument and result
//! conversion) and, with the state's memory limit set, creates each string
//! in a protected call of its own: together about half a microsecond per
//! call, more than the rest of a short hook. Here a call reads the slot and
//! pushes the value, nothing more.
//!
//! In: the slot the host fills before each hook call (upvalue 1, a light
//! userdata) and the getter's index in [`ALL`] (upvalue 2). Out: one Lua value, or the error
//! "flow is only available inside a hook" outside of one.

use std::cell::RefCell;
use std::ffi::c_int;

use mlua::{Function, Lua, ffi};

use super::api::{Current, Slot};
use super::fields::{self, Keys};
use super::info::{self, CLI_GEO, SRV_GEO};
use crate::flow::FlowView;
use crate::flow::json::{Buf as _, Stack, ip_string};

/// Which value a getter pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Get {
    ClientIp,
    ServerIp,
    ClientKey,
    ServerKey,
    ClientCountry,
    ServerCountry,
    Key,
    FirstSeen,
    LastSeen,
    Duration,
    Packets,
    PacketsSent,
    PacketsRcvd,
    Bytes,
    BytesSent,
    BytesRcvd,
    NdpiProtocolName,
    L4ProtocolName,
    IsBidirectional,
}

/// Every getter and its name in `flow` (a getter's upvalue is its index here).
const ALL: [(Get, &str); 19] = [
    (Get::ClientIp, "getClientIp"),
    (Get::ServerIp, "getServerIp"),
    (Get::ClientKey, "getClientKey"),
    (Get::ServerKey, "getServerKey"),
    (Get::ClientCountry, "getClientCountry"),
    (Get::ServerCountry, "getServerCountry"),
    (Get::Key, "getKey"),
    (Get::FirstSeen, "getFirstSeen"),
    (Get::LastSeen, "getLastSeen"),
    (Get::Duration, "getDuration"),
    (Get::Packets, "getPackets"),
    (Get::PacketsSent, "getPacketsSent"),
    (Get::PacketsRcvd, "getPacketsRcvd"),
    (Get::Bytes, "getBytes"),
    (Get::BytesSent, "getBytesSent"),
    (Get::BytesRcvd, "getBytesRcvd"),
    (Get::NdpiProtocolName, "getnDPIProtocolName"),
    (Get::L4ProtocolName, "getL4ProtocolName"),
    (Get::IsBidirectional, "isBidirectional"),
];

/// Keeps the slot alive as long as the Lua state whose getters point at it.
struct Keep(#[allow(dead_code)] Vec<Slot>);

/// Keeps `slot` alive as long as `lua` (its C functions point at it).
fn keep(lua: &Lua, slot: &Slot) {
    match lua.app_data_mut::<Keep>() {
        Some(mut k) => {
            if !k.0.iter().any(|s| std::rc::Rc::ptr_eq(s, slot)) {
                k.0.push(slot.clone());
            }
        }
        None => {
            lua.set_app_data(Keep(vec![slot.clone()]));
        }
    }
}

/// Every getter, as `(name, function)`, reading `slot`.
pub fn all(lua: &Lua, slot: &Slot) -> mlua::Result<Vec<(&'static str, Function)>> {
    keep(lua, slot);
    let ptr = std::rc::Rc::as_ptr(slot) as *mut std::ffi::c_void;
    ALL.iter()
        .enumerate()
        .map(|(i, (_, name))| {
            let which = i as ffi::lua_Integer;
            // SAFETY: the closure pushes two values and the C closure that
            // takes them as upvalues, leaving exactly the function.
            let f = unsafe {
                lua.exec_raw::<Function>((), move |l| {
                    ffi::lua_pushlightuserdata(l, ptr);
                    ffi::lua_pushinteger(l, which);
                    ffi::lua_pushcclosure(l, getter, 2);
                })
            }?;
            Ok((*name, f))
        })
        .collect()
}

/// `getClientGeolocation` and `getServerGeolocation`, as C functions that
/// build their table straight on Lua's stack (`fields::fill_in`): no mlua
/// callback and no protected call of their own.
pub fn geolocation(
    lua: &Lua,
    slot: &Slot,
    keys: &Keys,
) -> mlua::Result<Vec<(&'static str, Function)>> {
    keep(lua, slot);
    let ptr = std::rc::Rc::as_ptr(slot) as *mut std::ffi::c_void;
    [("getClientGeolocation", 0), ("getServerGeolocation", 1)]
        .into_iter()
        .map(|(name, side)| {
            // SAFETY: the two tables arrive at 1 and 2; the closure pushes
            // the slot, the side and copies of both, makes the C closure of
            // those four, and leaves exactly the function.
            let f = unsafe {
                lua.exec_raw::<Function>(fields::upvalues(keys), move |l| {
                    ffi::lua_pushlightuserdata(l, ptr);
                    ffi::lua_pushinteger(l, side);
                    ffi::lua_pushvalue(l, 1);
                    ffi::lua_pushvalue(l, 2);
                    ffi::lua_pushcclosure(l, geolocation_table, 4);
                    ffi::lua_remove(l, 1);
                    ffi::lua_remove(l, 1);
                })
            }?;
            Ok((name, f))
        })
        .collect()
}

/// The C function behind the two geolocation getters.
unsafe extern "C-unwind" fn geolocation_table(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: as in `getter`, with the side at upvalue 2 and mlua's array
    // metatable and the keys at upvalues 3 and 4, which `fill_in` wants at
    // 1 and 2 of an otherwise empty stack; `info::geo` owns nothing.
    unsafe {
        let v = current(l);
        let cli = ffi::lua_tointeger(l, ffi::lua_upvalueindex(2)) == 0;
        let (first, g) = if cli {
            (CLI_GEO, &v.cli_geo)
        } else {
            (SRV_GEO, &v.srv_geo)
        };
        ffi::lua_settop(l, 0);
        ffi::luaL_checkstack(l, 4, std::ptr::null());
        ffi::lua_pushvalue(l, ffi::lua_upvalueindex(3));
        ffi::lua_pushvalue(l, ffi::lua_upvalueindex(4));
        // room for what there is (no enrichment: an empty table)
        fields::fill_in(l, info::geo_fields(g), |f| info::geo(f, first, g, false));
        1
    }
}

/// The flow of the hook running, from the slot at upvalue 1 (see `getter`);
/// outside a hook, raises the Lua error "flow is only available inside a hook".
///
/// # Safety
/// Upvalue 1 of the running C function is a live slot's `RefCell`.
unsafe fn current<'a>(l: *mut ffi::lua_State) -> &'a FlowView {
    // SAFETY: as the caller promises; the reference is taken without a
    // borrow guard (nothing to drop if Lua raises), and the host does not
    // borrow the slot mutably while Lua runs.
    unsafe {
        let slot = ffi::lua_touserdata(l, ffi::lua_upvalueindex(1)) as *const RefCell<Current>;
        match (*slot).try_borrow_unguarded() {
            Ok(Current { view: Some(v), .. }) => v,
            _ => {
                ffi::lua_pushlstring(l, OUTSIDE.as_ptr().cast(), OUTSIDE.len());
                ffi::lua_error(l)
            }
        }
    }
}

/// One value of the flow, as [`getter`] pushes it.
enum Out<'a> {
    Text(Stack<64>),
    Str(&'a [u8]),
    Int(i64),
    Num(f64),
    Bool(bool),
    Nil,
}

/// A counter as Lua has it: an integer while it fits, else a float.
fn count(n: u64) -> Out<'static> {
    match i64::try_from(n) {
        Ok(i) => Out::Int(i),
        Err(_) => Out::Num(n as f64),
    }
}

fn host_key(ip: std::net::IpAddr, vlan: u16) -> Out<'static> {
    let mut t = ip_string(ip);
    t.push(b'@');
    t.put(itoa::Buffer::new().format(vlan).as_bytes());
    Out::Text(t)
}

fn country(c: &Option<std::sync::Arc<str>>) -> Out<'_> {
    match c.as_deref() {
        Some(c) => Out::Str(c.as_bytes()),
        None => Out::Nil,
    }
}

fn value(g: Get, v: &FlowView) -> Out<'_> {
    match g {
        Get::ClientIp => Out::Text(ip_string(v.cli_ip)),
        Get::ServerIp => Out::Text(ip_string(v.srv_ip)),
        Get::ClientKey => host_key(v.cli_ip, v.vlan),
        Get::ServerKey => host_key(v.srv_ip, v.vlan),
        Get::ClientCountry => country(&v.cli_geo.country),
        Get::ServerCountry => country(&v.srv_geo.country),
        Get::Key => {
            let mut t = Stack::<64>::new();
            for i in (0..16).rev() {
                t.push(b"0123456789abcdef"[((v.key >> (i * 4)) & 0xf) as usize]);
            }
            Out::Text(t)
        }
        Get::FirstSeen => Out::Num(v.first_ms as f64 / 1000.0),
        Get::LastSeen => Out::Num(v.last_ms as f64 / 1000.0),
        Get::Duration => Out::Num(v.duration_ms() as f64 / 1000.0),
        Get::Packets => count(v.cli2srv_packets.saturating_add(v.srv2cli_packets)),
        Get::PacketsSent => count(v.cli2srv_packets),
        Get::PacketsRcvd => count(v.srv2cli_packets),
        Get::Bytes => count(v.cli2srv_bytes.saturating_add(v.srv2cli_bytes)),
        Get::BytesSent => count(v.cli2srv_bytes),
        Get::BytesRcvd => count(v.srv2cli_bytes),
        Get::NdpiProtocolName => Out::Str(v.l7.as_bytes()),
        Get::L4ProtocolName => match crate::flow::classify::l4_name(v.proto) {
            Some(n) => Out::Str(n.as_bytes()),
            None => {
                let mut t = Stack::<64>::new();
                t.put(itoa::Buffer::new().format(v.proto).as_bytes());
                Out::Text(t)
            }
        },
        Get::IsBidirectional => Out::Bool(v.cli2srv_packets > 0 && v.srv2cli_packets > 0),
    }
}

const OUTSIDE: &[u8] = b"flow is only available inside a hook";

/// The C function behind every getter (see the module header).
unsafe extern "C-unwind" fn getter(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: upvalue 1 is the slot's `RefCell`, kept alive by `Keep` as long
    // as this state; upvalue 2 its index in `ALL`. The reference is taken without a
    // borrow guard, so nothing here needs dropping if Lua raises (an
    // allocation failure while pushing); the host does not borrow the slot
    // mutably while Lua runs, and pushing a value runs no flowhook code.
    unsafe {
        let which = ffi::lua_tointeger(l, ffi::lua_upvalueindex(2));
        let Some(&(g, _)) = ALL.get(which as usize) else {
            return 0;
        };
        let v = current(l);
        match value(g, v) {
            Out::Text(t) => {
                let b = t.bytes();
                ffi::lua_pushlstring(l, b.as_ptr().cast(), b.len());
            }
            Out::Str(s) => {
                ffi::lua_pushlstring(l, s.as_ptr().cast(), s.len());
            }
            Out::Int(i) => ffi::lua_pushinteger(l, i),
            Out::Num(n) => ffi::lua_pushnumber(l, n),
            Out::Bool(b) => ffi::lua_pushboolean(l, c_int::from(b)),
            Out::Nil => ffi::lua_pushnil(l),
        }
        1
    }
}
