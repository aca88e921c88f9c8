//! UDP socket setup: SO_REUSEPORT, the receive buffer (SO_RCVBUFFORCE when
//! the process may, else SO_RCVBUF, which the kernel caps at
//! `net.core.rmem_max`), non-blocking, bound.

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
