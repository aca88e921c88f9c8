//! UDP socket setup: SO_REUSEPORT, the receive buffer (SO_RCVBUFFORCE when
//! the process may, else SO_RCVBUF, which the kernel caps at
//! `net.core.rmem_max`), non-blocking, bound. For a rolling restart, whether
//! another socket already holds the address ([`held`]) and, if so, a
//! steering program that sends the group's new datagrams to the newest
//! socket ([`take_over`]), so the old instance drains what it holds and
//! receives nothing more.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use super::IngestError;

/// Requests `bytes` of receive buffer; returns what the kernel granted.
fn set_recv_buffer(sock: &Socket, bytes: usize) -> usize {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let v: libc::c_int = bytes.min(i32::MAX as usize / 2) as libc::c_int;
        // SAFETY: setsockopt with a valid fd, a pointer to a live c_int and its size.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            let _ = sock.set_recv_buffer_size(bytes);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = sock.set_recv_buffer_size(bytes);
    // Linux reports twice the requested size (bookkeeping overhead included).
    sock.recv_buffer_size().unwrap_or(0)
}

/// Whether some other socket (another flowhook instance, with SO_REUSEPORT)
/// is bound to `addr` already. Port 0 is never held.
pub fn held(addr: SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    let Ok(probe) = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)) else {
        return false;
    };
    if addr.is_ipv6() {
        let _ = probe.set_only_v6(true);
    }
    matches!(probe.bind(&addr.into()), Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
}

/// Steers the SO_REUSEPORT group `sock` belongs to: every new datagram goes
/// to the group's socket number `index` (the order of binding; a number
/// beyond the group falls back to the kernel's hash, so once the older
/// sockets have closed the group works as before).
#[cfg(target_os = "linux")]
pub fn take_over(sock: &std::net::UdpSocket, index: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // one classic BPF instruction: return `index`
    let mut code = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: index,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: setsockopt with a valid fd and a pointer to a live sock_fprog and its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn take_over(_sock: &std::net::UdpSocket, _index: u32) -> std::io::Result<()> {
    Err(std::io::Error::other("steering needs Linux"))
}

/// Binds one UDP socket on `addr` with SO_REUSEPORT and the receive buffer
/// requested; returns it with the buffer size the kernel granted.
pub fn bind(
    addr: SocketAddr,
    recv_buffer: usize,
    reuse_port: bool,
) -> Result<(std::net::UdpSocket, usize), IngestError> {
    let err = |source| IngestError::Bind { addr, source };
    let sock =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true).map_err(err)?;
    }
    #[cfg(unix)]
    if reuse_port {
        sock.set_reuse_port(true).map_err(err)?;
    }
    let granted = set_recv_buffer(&sock, recv_buffer);
    sock.set_nonblocking(true).map_err(err)?;
    sock.bind(&addr.into()).map_err(err)?;
    Ok((sock.into(), granted))
}
