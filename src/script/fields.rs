//! One Lua table of many fields, written in a single protected call.
//!
//! mlua protects every `Table::raw_set` and every string it creates with a
//! `lua_pcall` of its own: a `getInfo` table of some fifty fields cost about
//! a hundred of them (most of a scripted replay's time). [`build`] runs one
//! protected call in which [`Fields`] pushes keys and values with Lua's C API
//! and stores them raw; an allocation failure inside raises the usual Lua
//! error out of that call. Keys are interned once per state in an array
//! ([`Keys`]) and named by their index there, so a field's key costs an
//! array read instead of hashing and finding its string again.
//!
//! [`values`] does the same for a function's results (the captures of
//! `string.match`, one `lua_pcall` each before).
//!
//! In: the fields, through a closure that must not panic or own anything
//! that needs dropping (a Lua error unwinds past it with `longjmp`), or the
//! values. Out: the table, or the values.

use std::net::IpAddr;

use mlua::{Lua, MultiValue, Table, ffi};

use crate::flow::json::{hex16_into, ip_string};

/// A result [`values`] pushes.
#[derive(Clone, Copy)]
pub enum Item<'a> {
    Int(i64),
    Bytes(&'a [u8]),
}

/// The keys of the tables one state builds, interned once, and mlua's array
/// metatable (for [`Fields::strings`]).
pub struct Keys {
    keys: Table,
    array_mt: Table,
}

impl Keys {
    /// `names`: every key, in the order [`Key`] indexes them.
    pub fn new(lua: &Lua, names: &[&str]) -> mlua::Result<Self> {
        use mlua::LuaSerdeExt as _;
        Ok(Keys {
            keys: lua.create_sequence_from(names.iter().copied())?,
            array_mt: lua.array_metatable(),
        })
    }
}

/// A key's index in the [`Keys`] names (`key_index` finds it at compile time).
#[derive(Clone, Copy)]
pub struct Key(pub usize);

impl Key {
    /// The key `n` places after this one (keys of one group listed together).
    pub const fn at(self, n: usize) -> Key {
        Key(self.0 + n)
    }
}

/// The index of `name` in `names`; a compile error when called in a
/// constant with a name that is not there.
pub const fn key_index(names: &[&str], name: &str) -> Key {
    let mut i = 0;
    while i < names.len() {
        let (a, b) = (names[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return Key(i);
            }
        }
        i += 1;
    }
    panic!("not a key of this table")
}

/// Stack indexes of `build`'s arguments inside its protected call.
const ARRAY_MT: i32 = 1;
const KEYS: i32 = 2;

/// Writes fields into the table on top of the Lua stack.
pub struct Fields {
    l: *mut ffi::lua_State,
}

impl Fields {
    fn key(&mut self, k: Key) {
        // SAFETY: `l` is the state of the protected call `build` runs, with
        // the key array at `KEYS`, the table on top and room for the two
        // values (checked in `build`).
        unsafe { ffi::lua_rawgeti(self.l, KEYS, k.0 as i64 + 1) };
    }

    fn set(&mut self) {
        // SAFETY: as in `key`: table, key, value on top.
        unsafe { ffi::lua_rawset(self.l, -3) };
    }

    pub fn str(&mut self, k: Key, v: &[u8]) {
        self.key(k);
        // SAFETY: as in `key`.
        unsafe { ffi::lua_pushlstring(self.l, v.as_ptr().cast(), v.len()) };
        self.set();
    }

    /// An address as text.
    pub fn ip(&mut self, k: Key, a: IpAddr) {
        self.str(k, ip_string(a).bytes());
    }

    /// A flow key as 16 hex digits.
    pub fn hex16(&mut self, k: Key, v: u64) {
        let mut b = [0u8; 16];
        hex16_into(&mut b, v);
        self.str(k, &b);
    }

    pub fn int(&mut self, k: Key, v: i64) {
        self.key(k);
        // SAFETY: as in `key`.
        unsafe { ffi::lua_pushinteger(self.l, v) };
        self.set();
    }

    /// An unsigned count: an integer while it fits, else a float (as mlua
    /// converts `u64`).
    pub fn uint(&mut self, k: Key, v: u64) {
        match i64::try_from(v) {
            Ok(i) => self.int(k, i),
            Err(_) => self.num(k, v as f64),
        }
    }

    pub fn num(&mut self, k: Key, v: f64) {
        self.key(k);
        // SAFETY: as in `key`.
        unsafe { ffi::lua_pushnumber(self.l, v) };
        self.set();
    }

    pub fn bool(&mut self, k: Key, v: bool) {
        self.key(k);
        // SAFETY: as in `key`.
        unsafe { ffi::lua_pushboolean(self.l, i32::from(v)) };
        self.set();
    }

    /// An array of strings with mlua's array metatable (as serde's
    /// conversion makes it, so it serializes as a JSON array even when empty).
    pub fn strings<'a>(&mut self, k: Key, v: impl Iterator<Item = &'a str>) {
        self.key(k);
        // SAFETY: as in `key`; the array is on top while its items are set,
        // one at a time, and `array_mt` is a valid index below it.
        unsafe {
            ffi::lua_createtable(self.l, 0, 0);
            ffi::lua_pushvalue(self.l, ARRAY_MT);
            ffi::lua_setmetatable(self.l, -2);
            for (i, s) in v.enumerate() {
                ffi::lua_pushlstring(self.l, s.as_ptr().cast(), s.len());
                ffi::lua_rawseti(self.l, -2, i as i64 + 1);
            }
        }
        self.set();
    }
}

/// A new table with room for `fields` fields, filled by `fill` with keys
/// of `keys`.
pub fn build(
    lua: &Lua,
    keys: &Keys,
    fields: i32,
    fill: impl FnOnce(&mut Fields),
) -> mlua::Result<Table> {
    // SAFETY: the closure runs inside mlua's protected call with the two
    // arguments at `ARRAY_MT` and `KEYS`; `fill` owns nothing that needs
    // dropping if Lua raises.
    unsafe {
        lua.exec_raw((&keys.array_mt, &keys.keys), move |l| {
            fill_in(l, fields, fill)
        })
    }
}

/// The two tables [`fill_in`] wants at `ARRAY_MT` and `KEYS` (a C function
/// that builds tables keeps them as upvalues: `getters.rs`).
pub fn upvalues(keys: &Keys) -> (&Table, &Table) {
    (&keys.array_mt, &keys.keys)
}

/// What [`build`] does inside its protected call: a new table with room
/// for `fields` fields, filled by `fill`; it leaves exactly that table on
/// the stack.
///
/// # Safety
/// `l` holds exactly mlua's array metatable at `ARRAY_MT` and the keys at
/// `KEYS`, and runs inside a protected call or a C function Lua called (an
/// allocation failure raises a Lua error); `fill` owns nothing that needs
/// dropping.
pub unsafe fn fill_in(l: *mut ffi::lua_State, fields: i32, fill: impl FnOnce(&mut Fields)) {
    // SAFETY: as the caller promises.
    unsafe {
        ffi::lua_createtable(l, 0, fields);
        ffi::luaL_checkstack(l, 8, std::ptr::null());
        fill(&mut Fields { l });
        ffi::lua_remove(l, KEYS);
        ffi::lua_remove(l, ARRAY_MT);
    }
}

/// `items` as Lua values, strings created in one protected call.
pub fn values(lua: &Lua, items: &[Item<'_>]) -> mlua::Result<MultiValue> {
    let n = i32::try_from(items.len()).unwrap_or(i32::MAX);
    // SAFETY: the closure runs inside mlua's protected call with no
    // arguments, makes room for the items and leaves exactly them on the
    // stack; it owns nothing that needs dropping.
    unsafe {
        lua.exec_raw((), move |l| {
            ffi::luaL_checkstack(l, n, std::ptr::null());
            for it in items {
                match *it {
                    Item::Int(i) => ffi::lua_pushinteger(l, i),
                    Item::Bytes(b) => {
                        ffi::lua_pushlstring(l, b.as_ptr().cast(), b.len());
                    }
                }
            }
        })
    }
}
