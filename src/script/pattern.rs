//! Lua patterns with a budget: `string.find`, `string.match`,
//! `string.gmatch` and `string.gsub` as Lua 5.4 defines them, matched here
//! instead of in Lua's C library, which runs without instruction hooks and
//! can backtrack for hours (`string.find(string.rep("a", 5000),
//! ".-.-.-.-.-.-.-b")`). Every matching step counts; every few thousand
//! steps the call's deadline is checked, and past it the call fails with
//! the deadline error like any other script code.
//!
//! In: subject, pattern and the usual arguments, from Lua. Out: the same
//! results and the same error messages as Lua's own functions
//! (`tests` compares the two on a corpus of patterns).

use mlua::{Function, Lua, MultiValue, Table, Value};

use super::fields::{self, Item};
use super::sandbox::{Deadline, DeadlineExceeded};

const MAXCAPTURES: usize = 32;
/// Nesting of the matcher (Lua's MAXCCALLS).
const MAXDEPTH: usize = 200;
const ESC: u8 = b'%';
const SPECIALS: &[u8] = b"^$*+?.([%-";
/// Matching steps between deadline checks.
const CHECK_EVERY: u32 = 4096;

#[derive(Clone, Copy, PartialEq)]
enum Cap {
    Position,
    Unclosed,
    Len(usize),
}

enum Stop {
    Lua(String),
    Deadline,
}

type R<T> = Result<T, Stop>;

fn bad(msg: impl Into<String>) -> Stop {
    Stop::Lua(msg.into())
}

struct Matcher<'a> {
    src: &'a [u8],
    pat: &'a [u8],
    level: usize,
    caps: [(usize, Cap); MAXCAPTURES],
    depth: usize,
    steps: u32,
    deadline: &'a Deadline,
}

fn class(c: u8, cl: u8) -> bool {
    let r = match cl.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        // C's isspace: space, \t \n \v \f \r
        b's' => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        _ => return cl == c,
    };
    if cl.is_ascii_uppercase() { !r } else { r }
}

impl<'a> Matcher<'a> {
    fn new(src: &'a [u8], pat: &'a [u8], deadline: &'a Deadline) -> Self {
        Matcher {
            src,
            pat,
            level: 0,
            caps: [(0, Cap::Unclosed); MAXCAPTURES],
            depth: MAXDEPTH,
            steps: 0,
            deadline,
        }
    }

    fn reset(&mut self) {
        self.level = 0;
        self.depth = MAXDEPTH;
    }

    #[inline]
    fn tick(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps >= CHECK_EVERY {
            self.steps = 0;
            if self.deadline.passed() {
                return Err(Stop::Deadline);
            }
        }
        Ok(())
    }

    fn pc(&self, p: usize) -> u8 {
        self.pat.get(p).copied().unwrap_or(0)
    }

    fn class_end(&self, mut p: usize) -> R<usize> {
        let c = self.pat[p];
        p += 1;
        if c == ESC {
            if p >= self.pat.len() {
                return Err(bad("malformed pattern (ends with '%')"));
            }
            return Ok(p + 1);
        }
        if c == b'[' {
            if self.pc(p) == b'^' {
                p += 1;
            }
            loop {
                if p >= self.pat.len() {
                    return Err(bad("malformed pattern (missing ']')"));
                }
                let c = self.pat[p];
                p += 1;
                if c == ESC && p < self.pat.len() {
                    p += 1;
                }
                if self.pc(p) == b']' {
                    break;
                }
            }
            return Ok(p + 1);
        }
        Ok(p)
    }

    fn bracket(&self, c: u8, mut p: usize, ec: usize) -> bool {
        let mut sig = true;
        if self.pc(p + 1) == b'^' {
            sig = false;
            p += 1;
        }
        p += 1;
        while p < ec {
            if self.pat[p] == ESC {
                p += 1;
                if class(c, self.pc(p)) {
                    return sig;
                }
                p += 1;
            } else if self.pc(p + 1) == b'-' && p + 2 < ec {
                if self.pat[p] <= c && c <= self.pat[p + 2] {
                    return sig;
                }
                p += 3;
            } else {
                if self.pat[p] == c {
                    return sig;
                }
                p += 1;
            }
        }
        !sig
    }

    fn single(&self, s: usize, p: usize, ep: usize) -> bool {
        let Some(&c) = self.src.get(s) else {
            return false;
        };
        match self.pat[p] {
            b'.' => true,
            ESC => class(c, self.pc(p + 1)),
            b'[' => self.bracket(c, p, ep - 1),
            pc => pc == c,
        }
    }

    fn do_match(&mut self, s: usize, p: usize) -> R<Option<usize>> {
        if self.depth == 0 {
            return Err(bad("pattern too complex"));
        }
        self.depth -= 1;
        let r = self.match_at(s, p);
        self.depth += 1;
        r
    }

    fn match_at(&mut self, mut s: usize, mut p: usize) -> R<Option<usize>> {
        loop {
            self.tick()?;
            if p >= self.pat.len() {
                return Ok(Some(s));
            }
            match self.pat[p] {
                b'(' => {
                    return if self.pc(p + 1) == b')' {
                        self.start_capture(s, p + 2, Cap::Position)
                    } else {
                        self.start_capture(s, p + 1, Cap::Unclosed)
                    };
                }
                b')' => return self.end_capture(s, p + 1),
                b'$' if p + 1 == self.pat.len() => {
                    return Ok((s == self.src.len()).then_some(s));
                }
                ESC if self.pc(p + 1) == b'b' => match self.balance(s, p + 2)? {
                    Some(e) => {
                        s = e;
                        p += 4;
                        continue;
                    }
                    None => return Ok(None),
                },
                ESC if self.pc(p + 1) == b'f' => {
                    p += 2;
                    if self.pc(p) != b'[' {
                        return Err(bad("missing '[' after '%f' in pattern"));
                    }
                    let ep = self.class_end(p)?;
                    let prev = if s == 0 { 0 } else { self.src[s - 1] };
                    let cur = self.src.get(s).copied().unwrap_or(0);
                    if !self.bracket(prev, p, ep - 1) && self.bracket(cur, p, ep - 1) {
                        p = ep;
                        continue;
                    }
                    return Ok(None);
                }
                ESC if self.pc(p + 1).is_ascii_digit() => {
                    match self.back_reference(s, self.pc(p + 1))? {
                        Some(e) => {
                            s = e;
                            p += 2;
                            continue;
                        }
                        None => return Ok(None),
                    }
                }
                _ => {}
            }
            let ep = self.class_end(p)?;
            let q = self.pc(ep);
            if !self.single(s, p, ep) {
                if matches!(q, b'*' | b'?' | b'-') {
                    p = ep + 1;
                    continue;
                }
                return Ok(None);
            }
            match q {
                b'?' => {
                    if let Some(e) = self.do_match(s + 1, ep + 1)? {
                        return Ok(Some(e));
                    }
                    p = ep + 1;
                }
                b'+' => return self.max_expand(s + 1, p, ep),
                b'*' => return self.max_expand(s, p, ep),
                b'-' => return self.min_expand(s, p, ep),
                _ => {
                    s += 1;
                    p = ep;
                }
            }
        }
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> R<Option<usize>> {
        let mut i = 0usize;
        while self.single(s + i, p, ep) {
            self.tick()?;
            i += 1;
        }
        loop {
            if let Some(e) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(e));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> R<Option<usize>> {
        loop {
            if let Some(e) = self.do_match(s, ep + 1)? {
                return Ok(Some(e));
            }
            if self.single(s, p, ep) {
                s += 1;
            } else {
                return Ok(None);
            }
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, what: Cap) -> R<Option<usize>> {
        if self.level >= MAXCAPTURES {
            return Err(bad("too many captures"));
        }
        self.caps[self.level] = (s, what);
        self.level += 1;
        let r = self.do_match(s, p)?;
        if r.is_none() {
            self.level -= 1;
        }
        Ok(r)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> R<Option<usize>> {
        let l = (0..self.level)
            .rev()
            .find(|l| self.caps[*l].1 == Cap::Unclosed)
            .ok_or_else(|| bad("invalid pattern capture"))?;
        self.caps[l].1 = Cap::Len(s - self.caps[l].0);
        let r = self.do_match(s, p)?;
        if r.is_none() {
            self.caps[l].1 = Cap::Unclosed;
        }
        Ok(r)
    }

    fn balance(&mut self, s: usize, p: usize) -> R<Option<usize>> {
        if p + 1 >= self.pat.len() {
            return Err(bad("malformed pattern (missing arguments to '%b')"));
        }
        let (b, e) = (self.pat[p], self.pat[p + 1]);
        if self.src.get(s) != Some(&b) {
            return Ok(None);
        }
        let mut open = 1;
        let mut i = s + 1;
        while i < self.src.len() {
            self.tick()?;
            let c = self.src[i];
            if c == e {
                open -= 1;
                if open == 0 {
                    return Ok(Some(i + 1));
                }
            } else if c == b {
                open += 1;
            }
            i += 1;
        }
        Ok(None)
    }

    fn capture_index(&self, l: u8) -> R<usize> {
        let l = usize::from(l.wrapping_sub(b'1'));
        if l >= self.level || self.caps[l].1 == Cap::Unclosed {
            return Err(bad(format!("invalid capture index %{}", l + 1)));
        }
        Ok(l)
    }

    fn back_reference(&mut self, s: usize, l: u8) -> R<Option<usize>> {
        let l = self.capture_index(l)?;
        // a position capture has no text: as in Lua, it never matches
        let (init, len) = match self.caps[l] {
            (i, Cap::Len(n)) => (i, n),
            _ => return Ok(None),
        };
        Ok(
            (self.src.len() - s >= len && self.src[init..init + len] == self.src[s..s + len])
                .then_some(s + len),
        )
    }

    /// Capture `i` of a match `s..e` (the whole match when there are none).
    fn item(&self, i: usize, s: usize, e: usize) -> R<Item<'a>> {
        if i >= self.level {
            if i != 0 {
                return Err(bad(format!("invalid capture index %{}", i + 1)));
            }
            return Ok(Item::Bytes(&self.src[s..e]));
        }
        match self.caps[i] {
            (_, Cap::Unclosed) => Err(bad("unfinished capture")),
            (init, Cap::Position) => Ok(Item::Int(init as i64 + 1)),
            (init, Cap::Len(n)) => Ok(Item::Bytes(&self.src[init..init + n])),
        }
    }

    fn capture(&self, lua: &Lua, i: usize, s: usize, e: usize) -> R<Value> {
        Ok(match self.item(i, s, e)? {
            Item::Int(i) => Value::Integer(i),
            Item::Bytes(b) => lua_str(lua, b)?,
        })
    }

    /// The captures of a match `s..e` after `lead` (`find`'s positions),
    /// made in one call into Lua.
    fn captures(&self, lua: &Lua, s: usize, e: usize, whole: bool, lead: &[i64]) -> R<MultiValue> {
        let n = if self.level == 0 && whole {
            1
        } else {
            self.level
        };
        let mut items = [Item::Int(0); MAXCAPTURES + 2];
        for (slot, &x) in items.iter_mut().zip(lead) {
            *slot = Item::Int(x);
        }
        for i in 0..n {
            items[lead.len() + i] = self.item(i, s, e)?;
        }
        fields::values(lua, &items[..lead.len() + n]).map_err(|e| Stop::Lua(e.to_string()))
    }
}

fn lua_str(lua: &Lua, b: &[u8]) -> R<Value> {
    lua.create_string(b)
        .map(Value::String)
        .map_err(|e| Stop::Lua(e.to_string()))
}

fn to_lua(e: Stop) -> mlua::Error {
    match e {
        Stop::Lua(m) => mlua::Error::runtime(m),
        Stop::Deadline => mlua::Error::external(DeadlineExceeded),
    }
}

/// A string argument's bytes: borrowed from Lua, or a number's text.
enum Bytes {
    Lua(mlua::BorrowedBytes),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Lua(b) => b,
            Bytes::Owned(v) => v,
        }
    }
}

/// A string argument (numbers are converted, as Lua's `luaL_checklstring` does).
fn bytes(v: Option<&Value>, n: usize, f: &str) -> mlua::Result<Bytes> {
    match v {
        Some(Value::String(s)) => Ok(Bytes::Lua(s.as_bytes())),
        Some(Value::Integer(i)) => Ok(Bytes::Owned(i.to_string().into_bytes())),
        Some(Value::Number(x)) => Ok(Bytes::Owned(lua_number(*x).into_bytes())),
        other => Err(mlua::Error::runtime(format!(
            "bad argument #{n} to 'string.{f}' (string expected, got {})",
            arg_type(other)
        ))),
    }
}

fn arg_type(v: Option<&Value>) -> &'static str {
    match v {
        None => "no value",
        Some(other) => other.type_name(),
    }
}

/// How Lua 5.4 writes a float: `%.14g`, with ".0" when that looks like an integer.
fn lua_number(x: f64) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sci = format!("{x:.13e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    let mut out = if !(-4..14).contains(&exp) {
        format!(
            "{}e{}{:02}",
            trim(mant),
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    } else {
        trim(&format!("{:.*}", (13 - exp).max(0) as usize, x))
    };
    if !out.contains(['.', 'e', 'n', 'i']) {
        out.push_str(".0");
    }
    out
}

fn opt_int(v: Option<&Value>, n: usize, f: &str, default: i64) -> mlua::Result<i64> {
    let arg_type = |v: &Value| arg_type(Some(v));
    match v {
        None | Some(Value::Nil) => Ok(default),
        Some(Value::Integer(i)) => Ok(*i),
        Some(Value::Number(x)) if x.fract() == 0.0 && x.abs() < 9.2e18 => Ok(*x as i64),
        Some(Value::Number(_)) => Err(mlua::Error::runtime(format!(
            "bad argument #{n} to 'string.{f}' (number has no integer representation)"
        ))),
        Some(Value::String(s)) => s
            .to_str()
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                mlua::Error::runtime(format!(
                    "bad argument #{n} to 'string.{f}' (number expected, got string)"
                ))
            }),
        Some(other) => Err(mlua::Error::runtime(format!(
            "bad argument #{n} to 'string.{f}' (number expected, got {})",
            arg_type(other)
        ))),
    }
}

/// Lua 5.4's `posrelatI`: a 1-based start position from a possibly negative one.
fn start_pos(pos: i64, len: usize) -> usize {
    let len = len as i64;
    if pos > 0 {
        pos as usize
    } else if pos == 0 || pos < -len {
        1
    } else {
        (len + pos + 1) as usize
    }
}

fn find_aux(
    lua: &Lua,
    args: MultiValue,
    find: bool,
    deadline: &Deadline,
) -> mlua::Result<MultiValue> {
    let f = if find { "find" } else { "match" };
    let a = &args;
    let src = bytes(a.front(), 1, f)?;
    let pat = bytes(a.get(1), 2, f)?;
    let init = start_pos(opt_int(a.get(2), 3, f, 1)?, src.len()) - 1;
    if init > src.len() {
        return Ok(MultiValue::from_vec(vec![Value::Nil]));
    }
    let plain = matches!(a.get(3), Some(v) if !matches!(v, Value::Nil | Value::Boolean(false)));
    if find && (plain || !pat.iter().any(|c| SPECIALS.contains(c))) {
        let hit = if pat.is_empty() {
            Some(init)
        } else {
            src[init..]
                .windows(pat.len())
                .position(|w| w == &pat[..])
                .map(|i| i + init)
        };
        return Ok(MultiValue::from_vec(match hit {
            Some(i) => vec![
                Value::Integer(i as i64 + 1),
                Value::Integer((i + pat.len()) as i64),
            ],
            None => vec![Value::Nil],
        }));
    }
    let anchor = pat.first() == Some(&b'^');
    let p0 = usize::from(anchor);
    let mut m = Matcher::new(&src, &pat, deadline);
    let mut s = init;
    loop {
        m.reset();
        if let Some(e) = m.do_match(s, p0).map_err(to_lua)? {
            let out = if find {
                m.captures(lua, s, e, false, &[s as i64 + 1, e as i64])
            } else {
                m.captures(lua, s, e, true, &[])
            };
            return out.map_err(to_lua);
        }
        s += 1;
        if anchor || s > src.len() {
            return Ok(MultiValue::from_vec(vec![Value::Nil]));
        }
    }
}

fn gmatch(lua: &Lua, args: MultiValue, deadline: &Deadline) -> mlua::Result<Function> {
    let a: Vec<Value> = args.into_iter().collect();
    let src = bytes(a.first(), 1, "gmatch")?.to_vec();
    let pat = bytes(a.get(1), 2, "gmatch")?.to_vec();
    let init = (start_pos(opt_int(a.get(2), 3, "gmatch", 1)?, src.len()) - 1).min(src.len());
    let deadline = deadline.clone();
    let mut pos = init;
    let mut last: Option<usize> = None;
    lua.create_function_mut(move |lua, ()| {
        let mut m = Matcher::new(&src, &pat, &deadline);
        let mut s = pos;
        while s <= src.len() {
            m.reset();
            if let Some(e) = m.do_match(s, 0).map_err(to_lua)?
                && Some(e) != last
            {
                pos = e;
                last = Some(e);
                return m.captures(lua, s, e, true, &[]).map_err(to_lua);
            }
            s += 1;
        }
        pos = src.len() + 1;
        Ok(MultiValue::from_vec(vec![Value::Nil]))
    })
}

fn gsub(lua: &Lua, args: MultiValue, deadline: &Deadline) -> mlua::Result<MultiValue> {
    let a: Vec<Value> = args.into_iter().collect();
    let src = bytes(a.first(), 1, "gsub")?;
    let pat = bytes(a.get(1), 2, "gsub")?;
    let repl = a.get(2).cloned().unwrap_or(Value::Nil);
    if !matches!(
        repl,
        Value::String(_)
            | Value::Integer(_)
            | Value::Number(_)
            | Value::Table(_)
            | Value::Function(_)
    ) {
        return Err(mlua::Error::runtime(format!(
            "bad argument #3 to 'string.gsub' (string/function/table expected, got {})",
            arg_type(a.get(2))
        )));
    }
    let repl_s = match &repl {
        Value::String(_) | Value::Integer(_) | Value::Number(_) => {
            Some(bytes(Some(&repl), 3, "gsub")?)
        }
        _ => None,
    };
    let max = opt_int(a.get(3), 4, "gsub", src.len() as i64 + 1)?;
    let anchor = pat.first() == Some(&b'^');
    let p0 = usize::from(anchor);
    let mut m = Matcher::new(&src, &pat, deadline);
    let mut out: Vec<u8> = Vec::with_capacity(src.len());
    let (mut s, mut n, mut last) = (0usize, 0i64, None::<usize>);
    while n < max {
        m.reset();
        match m.do_match(s, p0).map_err(to_lua)? {
            Some(e) if Some(e) != last => {
                n += 1;
                add_value(lua, &m, &mut out, s, e, &repl, repl_s.as_deref())?;
                s = e;
                last = Some(e);
            }
            _ if s < src.len() => {
                out.push(src[s]);
                s += 1;
            }
            _ => break,
        }
        if anchor {
            break;
        }
    }
    out.extend_from_slice(&src[s.min(src.len())..]);
    Ok(MultiValue::from_vec(vec![
        Value::String(lua.create_string(&out)?),
        Value::Integer(n),
    ]))
}

fn add_value(
    lua: &Lua,
    m: &Matcher<'_>,
    out: &mut Vec<u8>,
    s: usize,
    e: usize,
    repl: &Value,
    repl_s: Option<&[u8]>,
) -> mlua::Result<()> {
    if let Some(r) = repl_s {
        let mut i = 0;
        while i < r.len() {
            let c = r[i];
            i += 1;
            if c != ESC {
                out.push(c);
                continue;
            }
            let d = r.get(i).copied().unwrap_or(0);
            i += 1;
            if d == ESC {
                out.push(ESC);
            } else if d.is_ascii_digit() {
                let v = if d == b'0' {
                    Value::String(lua.create_string(&m.src[s..e])?)
                } else {
                    m.capture(lua, usize::from(d - b'1'), s, e)
                        .map_err(to_lua)?
                };
                match v {
                    Value::String(x) => out.extend_from_slice(&x.as_bytes()),
                    Value::Integer(x) => out.extend_from_slice(x.to_string().as_bytes()),
                    _ => {}
                }
            } else {
                return Err(mlua::Error::runtime(
                    "invalid use of '%' in replacement string",
                ));
            }
        }
        return Ok(());
    }
    let first = m.capture(lua, 0, s, e).map_err(to_lua)?;
    let v: Value = match repl {
        Value::Table(t) => t.get(first)?,
        Value::Function(f) => {
            let caps = m.captures(lua, s, e, true, &[]).map_err(to_lua)?;
            f.call::<Value>(caps)?
        }
        _ => Value::Nil,
    };
    match v {
        Value::Nil | Value::Boolean(false) => out.extend_from_slice(&m.src[s..e]),
        Value::String(x) => out.extend_from_slice(&x.as_bytes()),
        Value::Integer(x) => out.extend_from_slice(x.to_string().as_bytes()),
        Value::Number(x) => out.extend_from_slice(lua_number(x).as_bytes()),
        other => {
            return Err(mlua::Error::runtime(format!(
                "invalid replacement value (a {})",
                other.type_name()
            )));
        }
    }
    Ok(())
}

/// Replaces `find`, `match`, `gmatch` and `gsub` in the `string` table `t`.
pub fn install(lua: &Lua, t: &Table, deadline: &Deadline) -> mlua::Result<()> {
    let d = deadline.clone();
    t.set(
        "find",
        lua.create_function(move |lua, a: MultiValue| find_aux(lua, a, true, &d))?,
    )?;
    let d = deadline.clone();
    t.set(
        "match",
        lua.create_function(move |lua, a: MultiValue| find_aux(lua, a, false, &d))?,
    )?;
    let d = deadline.clone();
    t.set(
        "gmatch",
        lua.create_function(move |lua, a: MultiValue| gmatch(lua, a, &d))?,
    )?;
    let d = deadline.clone();
    t.set(
        "gsub",
        lua.create_function(move |lua, a: MultiValue| gsub(lua, a, &d))?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case through Lua's own functions and through ours, in one
    /// state: the results (captures, positions, counts) and the errors must
    /// be the same.
    #[test]
    fn same_results_and_errors_as_lua() {
        let lua = Lua::new();
        let mine = lua.create_table().unwrap();
        let d = Deadline::default();
        install(&lua, &mine, &d).unwrap();
        lua.globals().set("mine", mine).unwrap();
        let mismatches: Vec<String> = lua
            .load(
                r##"
local subjects = { "", "hello world", "  key = value  ", "a,b,,c", "(foo(bar))baz",
  "THE (quick) fox", "x=1, y=22, z=333", "aaa", "abcabcabc", "192.168.10.254",
  "f(a(b)c)d", "\0bin\0ary", "utf8: é ü", "[[nested]]", "%d%%", "trailing   " }
local patterns = { "", "o", "l+", "l*", "l-", "l?", "^h", "d$", "^$", "(h)(e)", "()ll()",
  "%a+", "%A+", "%d+", "%D", "%s*(%S+)%s*", "%w+", "%p", "%x+", "%u", "%l+", "%c", "%g+",
  "[aeiou]", "[^aeiou]+", "[a-f]+", "[%d.]+", "[]]", "[^]]", "[a-]", "%b()", "%b[]",
  "%f[%w]%w+", "%f[%W]", "(%d+)%.(%d+)%.(%d+)%.(%d+)", "(a)%1", "(ab)c%1", "((a)(b))",
  "(%w+)=(%w+)", ".-b", ".*b", "a.-c", "(.)%1", "[%a_][%w_]*", "^(%s*)$", "x*$",
  "%", "[a", "(()", "%b", "%f", "%fa", "(a)%2", "a)", "%1", "[%", "((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))" }
local function show(ok, ...)
  local t = { tostring(ok) }
  for i = 1, select("#", ...) do t[#t + 1] = tostring((select(i, ...))) end
  if not ok then
    -- Lua's own messages and ours differ only in mlua's decoration
    local m = tostring((...)):gsub("^runtime error: ", ""):gsub("\nstack traceback:.*", ""):gsub("^[^:]*:[%d:]+ ", "")
    return "error: " .. m
  end
  return table.concat(t, "|")
end
local function each_gmatch(f, s, p)
  local out = {}
  for a, b in f(s, p) do out[#out + 1] = tostring(a) .. "/" .. tostring(b); if #out > 50 then break end end
  return table.concat(out, ",")
end
local bad = {}
local function cmp(what, a, b)
  if a ~= b then bad[#bad + 1] = what .. ": lua " .. a .. " ours " .. b end
end
for _, s in ipairs(subjects) do
  for _, p in ipairs(patterns) do
    local q = string.format("%q %q", s, p)
    for _, init in ipairs({ 1, 3, -2, 40 }) do
      cmp("find " .. q .. " " .. init, show(pcall(string.find, s, p, init)), show(pcall(mine.find, s, p, init)))
      cmp("match " .. q .. " " .. init, show(pcall(string.match, s, p, init)), show(pcall(mine.match, s, p, init)))
    end
    cmp("find plain " .. q, show(pcall(string.find, s, p, 1, true)), show(pcall(mine.find, s, p, 1, true)))
    cmp("gmatch " .. q, show(pcall(each_gmatch, string.gmatch, s, p)), show(pcall(each_gmatch, mine.gmatch, s, p)))
    for _, r in ipairs({ "<%0>", "%1-%1", "%%", "x", "%2", "%9" }) do
      cmp("gsub " .. q .. " " .. r, show(pcall(string.gsub, s, p, r)), show(pcall(mine.gsub, s, p, r)))
      cmp("gsub1 " .. q .. " " .. r, show(pcall(string.gsub, s, p, r, 1)), show(pcall(mine.gsub, s, p, r, 1)))
    end
    local tbl = { hello = "HI", a = false, ["1"] = 7 }
    cmp("gsub table " .. q, show(pcall(string.gsub, s, p, tbl)), show(pcall(mine.gsub, s, p, tbl)))
    local fn = function(x, y) if x == "l" then return nil end return "[" .. tostring(x) .. tostring(y) .. "]" end
    cmp("gsub fn " .. q, show(pcall(string.gsub, s, p, fn)), show(pcall(mine.gsub, s, p, fn)))
  end
end
cmp("number subject", show(pcall(string.find, 12345, "3")), show(pcall(mine.find, 12345, "3")))
cmp("float subject", show(pcall(string.gsub, 1.5, "%.", ",")), show(pcall(mine.gsub, 1.5, "%.", ",")))
cmp("bad repl", show(pcall(string.gsub, "a", "a", true)), show(pcall(mine.gsub, "a", "a", true)))
cmp("bad repl value", show(pcall(string.gsub, "a", "a", { a = {} })), show(pcall(mine.gsub, "a", "a", { a = {} })))
cmp("bad %", show(pcall(string.gsub, "a", "a", "%x")), show(pcall(mine.gsub, "a", "a", "%x")))
cmp("no subject", show(pcall(string.find)), show(pcall(mine.find)))
return bad
"##,
            )
            .eval()
            .unwrap();
        assert!(
            mismatches.is_empty(),
            "{} mismatches, first: {:#?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(15)]
        );
    }

    /// What backtracks for hours in Lua's matcher stops at the deadline.
    #[test]
    fn catastrophic_backtracking_stops_at_the_deadline() {
        let lua = Lua::new();
        let mine = lua.create_table().unwrap();
        let d = Deadline::default();
        install(&lua, &mine, &d).unwrap();
        lua.globals().set("mine", mine).unwrap();
        d.arm(std::time::Instant::now() + std::time::Duration::from_millis(50));
        let t = std::time::Instant::now();
        let r = lua
            .load(r#"return mine.find(string.rep("a", 5000), ".-.-.-.-.-.-.-b")"#)
            .exec();
        d.disarm();
        let e = r.unwrap_err();
        assert!(e.to_string().contains("deadline"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }
}
