//! The generator's sockets: one UDP socket per simulated exporter, bound to
//! its own loopback address and connected to the target, sending batches
//! with `sendmmsg` (one system call per batch on Linux).
//!
//! In: batches of encoded datagrams. Out: datagrams on the wire; refused
//! sends counted.

use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

use super::{GenError, exporter_addr};

/// One connected socket per exporter.
pub struct Senders {
    socks: Vec<UdpSocket>,
    ports: Vec<u16>,
}

impl Senders {
    pub fn open(target: SocketAddr, exporters: u16) -> Result<Self, GenError> {
        let mut socks = Vec::new();
        let mut ports = Vec::new();
        for i in 0..usize::from(exporters) {
            let local: SocketAddr = if target.is_ipv4() {
                SocketAddr::from((exporter_addr(i), 0))
            } else {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
            };
            let err = |source| GenError::Socket {
                addr: local,
                source,
            };
            let s = Socket::new(
                Domain::for_address(target),
                Type::DGRAM,
                Some(Protocol::UDP),
            )
            .map_err(err)?;
            let _ = s.set_send_buffer_size(4 << 20);
            s.bind(&local.into()).map_err(err)?;
            s.connect(&target.into()).map_err(err)?;
            let u: UdpSocket = s.into();
            ports.push(u.local_addr().map_err(err)?.port());
            socks.push(u);
        }
        Ok(Senders { socks, ports })
    }

    /// The source port of exporter `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// Sends `bufs` from exporter `i`; returns how many could not be sent.
    pub fn send(&mut self, i: usize, bufs: &[Vec<u8>]) -> u64 {
        let sock = &self.socks[i];
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let mut iov: Vec<libc::iovec> = bufs
                .iter()
                .map(|b| libc::iovec {
                    iov_base: b.as_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                })
                .collect();
            // SAFETY: zeroed mmsghdr is a valid empty header; the fields set
            // below point into `iov`, which outlives the call.
            let mut msgs: Vec<libc::mmsghdr> = (0..iov.len())
                .map(|_| unsafe { std::mem::zeroed() })
                .collect();
            for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
            }
            let mut done = 0usize;
            let mut failed = 0u64;
            while done < msgs.len() {
                // SAFETY: fd is a live socket; msgs[done..] are valid headers.
                let rc = unsafe {
                    libc::sendmmsg(
                        sock.as_raw_fd(),
                        msgs[done..].as_mut_ptr(),
                        (msgs.len() - done) as libc::c_uint,
                        0,
                    )
                };
                if rc <= 0 {
                    // skip the datagram that failed (connection refused, no buffer)
                    failed += 1;
                    done += 1;
                } else {
                    done += rc as usize;
                }
            }
            failed
        }
        #[cfg(not(target_os = "linux"))]
        {
            bufs.iter().filter(|b| sock.send(b).is_err()).count() as u64
        }
    }
}
