//! Batched receive: `recvmmsg` (Linux) reads up to a batch of datagrams in
//! one system call into a scratch area allocated once per socket; elsewhere
//! one `recv_from` per datagram.
//!
//! In: a UDP socket (blocking with a receive timeout, for a round that waits
//! for its first datagram). Out: `(source, payload)` for each datagram read,
//! to a callback; `WouldBlock` when nothing came.

use std::io;
use std::net::SocketAddr;

/// Largest UDP payload (IPv4); a slot holds any datagram whole.
const SLOT: usize = 65_536;

/// Distance between slots: a slot and 37 cache lines more. With slots a
/// power of two apart, every datagram of a round would start in the same
/// cache set (the address bits that pick a set repeat every 4 KiB in L1,
/// every 128 KiB in L2), and a round of a few dozen 1,400-byte datagrams
/// would evict itself from L1 before the shard reads it.
const STRIDE: usize = SLOT + 37 * 64;

/// Scratch space for one socket's receive rounds.
pub struct RecvBuf {
    slots: usize,
    data: Vec<u8>,
    #[cfg(target_os = "linux")]
    addrs: Vec<libc::sockaddr_storage>,
    #[cfg(target_os = "linux")]
    iov: Vec<libc::iovec>,
    #[cfg(target_os = "linux")]
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iov` and `msgs` point into this struct's own
// buffers and are rewritten before every use.
unsafe impl Send for RecvBuf {}

impl RecvBuf {
    /// Room for `slots` datagrams per round.
    pub fn new(slots: usize) -> Self {
        let slots = slots.max(1);
        RecvBuf {
            slots,
            data: vec![0u8; slots * STRIDE],
            #[cfg(target_os = "linux")]
            // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr.
            addrs: vec![unsafe { std::mem::zeroed() }; slots],
            #[cfg(target_os = "linux")]
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                slots
            ],
            #[cfg(target_os = "linux")]
            msgs: (0..slots).map(|_| unsafe { std::mem::zeroed() }).collect(),
        }
    }

    /// Datagrams one round can read.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Reads what is waiting (up to [`RecvBuf::slots`]) from `sock`, calling
    /// `f` for each datagram; returns how many were read. With `wait`, a
    /// blocking socket waits for the first datagram (up to its receive
    /// timeout) and takes those that came with it; without, nothing waits.
    #[cfg(target_os = "linux")]
    pub fn recv(
        &mut self,
        sock: &impl std::os::fd::AsRawFd,
        wait: bool,
        mut f: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        let base = self.data.as_mut_ptr();
        for i in 0..self.slots {
            // SAFETY: slot i (SLOT bytes from i * STRIDE) lies inside `data` (slots * STRIDE bytes).
            self.iov[i].iov_base = unsafe { base.add(i * STRIDE) }.cast();
            self.iov[i].iov_len = SLOT;
            let m = &mut self.msgs[i].msg_hdr;
            m.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            m.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_iov = &mut self.iov[i];
            m.msg_iovlen = 1;
            m.msg_control = std::ptr::null_mut();
            m.msg_controllen = 0;
            m.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: every header points at live buffers of the sizes given.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                self.slots as libc::c_uint,
                if wait {
                    libc::MSG_WAITFORONE
                } else {
                    libc::MSG_DONTWAIT
                },
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            let len = (self.msgs[i].msg_len as usize).min(SLOT);
            if let Some(from) = socket_addr(&self.addrs[i]) {
                f(from, &self.data[i * STRIDE..i * STRIDE + len]);
            }
        }
        Ok(n)
    }
}

/// The address the kernel wrote into `a` (IPv4 or IPv6).
#[cfg(target_os = "linux")]
fn socket_addr(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match i32::from(a.ss_family) {
        libc::AF_INET => {
            // SAFETY: ss_family says the storage holds a sockaddr_in.
            let v4 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: ss_family says the storage holds a sockaddr_in6.
            let v6 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(not(target_os = "linux"))]
impl RecvBuf {
    pub fn recv(
        &mut self,
        sock: &std::net::UdpSocket,
        wait: bool,
        mut f: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        let mut n = 0;
        let _ = sock.set_nonblocking(!wait);
        while n < self.slots {
            match sock.recv_from(&mut self.data[..SLOT]) {
                Ok((len, from)) => {
                    f(from, &self.data[..len]);
                    n += 1;
                }
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
            if n == 1 {
                let _ = sock.set_nonblocking(true);
            }
        }
        Ok(n)
    }
}
