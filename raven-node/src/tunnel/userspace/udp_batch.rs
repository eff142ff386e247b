//! Batched UDP I/O of the packet path: `sendmmsg(2)` with `UDP_SEGMENT` (GSO) runs on the way
//! out, `recvmmsg(2)` with `UDP_GRO` coalesced buffers on the way in, and the socket-address
//! encoding both need. Kept apart from the WireGuard logic of [`super::datapath`] because it is
//! where the `unsafe` FFI lives: each block states why its pointers are valid.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// Packets per batch.
pub(super) const BATCH: usize = 64;

/// Encodes a socket address for the kernel.
pub(super) fn to_sockaddr(
    addr: &SocketAddr,
    storage: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((storage as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((storage as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Decodes a socket address the kernel filled in.
pub(super) fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Reusable `mmsghdr` arrays for one thread. The headers point into `iov` and `addrs`, which
/// are boxed slices that never move; `iov` entries are re-aimed before every call.
pub(super) struct Batch {
    pub(super) hdrs: Box<[libc::mmsghdr]>,
    pub(super) iov: Box<[libc::iovec]>,
    pub(super) addrs: Box<[libc::sockaddr_storage]>,
    /// Control-message buffers (UDP_SEGMENT on send, UDP_GRO on receive), one per header.
    pub(super) ctrl: Box<[[u64; 4]]>,
}

// SAFETY: the raw pointers inside point only into the Batch's own boxed slices and the
// caller's buffers; a Batch is used by one thread at a time.
unsafe impl Send for Batch {}

impl Batch {
    pub(super) fn new() -> Self {
        // SAFETY: these are plain C structs for which all-zero is valid.
        let zero_hdr: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: as above.
        let zero_addr: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
        let mut b = Self {
            hdrs: vec![zero_hdr; BATCH].into_boxed_slice(),
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ]
            .into_boxed_slice(),
            addrs: vec![zero_addr; BATCH].into_boxed_slice(),
            ctrl: vec![[0u64; 4]; BATCH].into_boxed_slice(),
        };
        for i in 0..BATCH {
            let iov: *mut libc::iovec = &mut b.iov[i];
            let addr: *mut libc::sockaddr_storage = &mut b.addrs[i];
            let h = &mut b.hdrs[i].msg_hdr;
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            h.msg_name = addr.cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        b
    }
}

/// Linux `UDP_SEGMENT` (generic segmentation offload for UDP sends; not in libc for glibc).
const UDP_SEGMENT: libc::c_int = 103;
/// Most segments the kernel accepts in one GSO send.
const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO send (one UDP datagram's length field).
const GSO_MAX_BYTES: usize = 65_000;

/// Sends the datagrams `spans` (offset, length, destination) of `out`.
///
/// With `gso`, runs of equal-size datagrams to the same destination (the last may be
/// shorter), which are contiguous in `out` by construction, go out as one `UDP_SEGMENT` send:
/// the kernel walks its UDP/IP output path once per run instead of once per datagram, and
/// `sendmmsg` carries all runs in one syscall. If the kernel refuses GSO, `gso` is cleared
/// and the rest is sent datagram by datagram. A run refused for its size (`EMSGSIZE`: the
/// learned path MTU to that peer fell below the datagram size) is re-sent datagram by
/// datagram, which the kernel may fragment, and GSO stays on for everything else.
pub(super) fn send_batch(
    socket: BorrowedFd<'_>,
    io_errors: &AtomicU64,
    batch: &mut Batch,
    out: &mut [u8],
    spans: &[(usize, usize, SocketAddr)],
    gso: &mut bool,
) {
    let mut first = 0;
    let mut starts = [0usize; BATCH + 1];
    // Spans before this index go out one datagram per message (after an EMSGSIZE).
    let mut plain_until = 0;
    while first < spans.len() {
        // Group spans into messages.
        let mut msgs = 0;
        let mut i = first;
        while i < spans.len() && msgs < BATCH {
            let (off, len, addr) = spans[i];
            let mut j = i + 1;
            let mut total = len;
            if *gso && i >= plain_until {
                while j < spans.len()
                    && j - i < GSO_MAX_SEGMENTS
                    && spans[j].2 == addr
                    && spans[j - 1].1 == len
                    && spans[j].1 <= len
                    && spans[j].0 == off + total
                    && total + spans[j].1 <= GSO_MAX_BYTES
                {
                    total += spans[j].1;
                    j += 1;
                }
            }
            batch.iov[msgs] = libc::iovec {
                iov_base: out[off..].as_mut_ptr().cast(),
                iov_len: total,
            };
            let hdr = &mut batch.hdrs[msgs].msg_hdr;
            hdr.msg_namelen = to_sockaddr(&addr, &mut batch.addrs[msgs]);
            if j - i > 1 {
                let ctrl: *mut [u64; 4] = &mut batch.ctrl[msgs];
                hdr.msg_control = ctrl.cast();
                // SAFETY: CMSG_SPACE is a pure computation; the control buffer (32 bytes,
                // 8-aligned) holds one header plus a u16 (24 bytes), written through the
                // kernel's own cmsg accessors.
                unsafe {
                    hdr.msg_controllen = libc::CMSG_SPACE(2) as usize;
                    let cmsg = libc::CMSG_FIRSTHDR(hdr);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(2) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), len as u16);
                }
            } else {
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
            }
            starts[msgs] = i;
            msgs += 1;
            i = j;
        }
        starts[msgs] = i;
        // Send them.
        let mut sent = 0;
        let mut resplit = false;
        while sent < msgs {
            let rest = &mut batch.hdrs[sent..msgs];
            // SAFETY: every header points at a valid iovec (aimed at `out`, alive for the
            // call), a valid address and, if set, a valid control buffer.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    rest.as_mut_ptr(),
                    rest.len() as libc::c_uint,
                    0,
                )
            };
            if n >= 0 {
                sent += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let was_gso = starts[sent + 1] - starts[sent] > 1;
            let refused = matches!(
                e.raw_os_error(),
                Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
            );
            if was_gso && refused {
                tracing::info!(error = %e, "UDP GSO refused by the kernel; sending datagrams one by one");
                *gso = false;
                resplit = true;
                break;
            }
            if was_gso && e.raw_os_error() == Some(libc::EMSGSIZE) {
                tracing::debug!(error = %e, "UDP GSO run above the path MTU; re-sent datagram by datagram");
                plain_until = starts[sent + 1];
                resplit = true;
                break;
            }
            // The message failed (unreachable, no route, ...): drop it, go on.
            io_errors.fetch_add(1, Ordering::Relaxed);
            sent += 1;
        }
        first = if resplit { starts[sent] } else { starts[msgs] };
    }
}

/// Linux `UDP_GRO` (receive coalesced datagrams with their segment size; not in libc for glibc).
const UDP_GRO: libc::c_int = 104;

/// Asks the kernel to hand over coalesced UDP datagrams (`UDP_GRO`): a train of equal-size
/// datagrams from one sender (a peer's `UDP_SEGMENT` send, or GRO on the receiving NIC)
/// arrives as one buffer plus a control message with the segment size, instead of being split
/// back into single datagrams by the kernel and queued one by one. Best effort: without it
/// (kernel < 5.0) every datagram arrives alone, which the inbound path handles the same way.
pub(super) fn enable_udp_gro(socket: &UdpSocket) -> bool {
    super::set_int_option(socket, libc::SOL_UDP, UDP_GRO, 1)
}

/// The segment size of a coalesced datagram, from the `UDP_GRO` control message of `hdr`
/// (`None`: a single datagram).
pub(super) fn gro_segment_size(hdr: &libc::msghdr) -> Option<usize> {
    if hdr.msg_control.is_null() || hdr.msg_controllen == 0 {
        return None;
    }
    // SAFETY: the kernel filled `msg_control` with `msg_controllen` bytes of well-formed
    // control messages; the accessors stay inside that range.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(size).ok().filter(|s| *s > 0);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

/// The datagrams a received buffer holds: `segment`-size pieces (the last may be shorter) when
/// the kernel coalesced them, else the buffer itself.
pub(super) fn datagrams(buffer: &[u8], segment: Option<usize>) -> std::slice::Chunks<'_, u8> {
    let size = segment.unwrap_or(buffer.len()).max(1);
    buffer.chunks(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn coalesced_buffers_split_into_datagrams() {
        let buf: Vec<u8> = (0..10).collect();
        let split = |seg| datagrams(&buf, seg).map(<[u8]>::len).collect::<Vec<_>>();
        assert_eq!(split(None), vec![10]);
        assert_eq!(split(Some(4)), vec![4, 4, 2]);
        assert_eq!(split(Some(5)), vec![5, 5]);
        assert_eq!(split(Some(10)), vec![10]);
        assert_eq!(split(Some(64)), vec![10]);
        assert_eq!(datagrams(&[], None).count(), 0);
    }

    /// The kernel contract the inbound path relies on, on real sockets: a `UDP_SEGMENT` send of
    /// three datagrams reaches a `UDP_GRO` socket as one buffer whose control message says the
    /// segment size, and splitting it gives back the three datagrams.
    #[test]
    fn udp_gro_socket_receives_a_segmented_send_as_one_buffer() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind rx");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind tx");
        assert!(enable_udp_gro(&rx), "UDP_GRO refused");
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut payload = Vec::new();
        for (i, len) in [(1u8, 100), (2, 100), (3, 40)] {
            payload.extend(std::iter::repeat_n(i, len));
        }
        let mut storage: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
        let dst = rx.local_addr().expect("addr");
        let mut iov = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        let mut ctrl = [0u64; 4];
        // SAFETY: all-zero msghdr is valid; every pointer set below outlives the call.
        let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        msg.msg_namelen = to_sockaddr(&dst, &mut storage);
        msg.msg_name = (&mut storage as *mut libc::sockaddr_storage).cast();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl.as_mut_ptr().cast();
        // SAFETY: the control buffer (32 bytes, 8-aligned) holds one u16 control message.
        let sent = unsafe {
            msg.msg_controllen = libc::CMSG_SPACE(2) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(2) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), 100);
            libc::sendmsg(tx.as_raw_fd(), &msg, 0)
        };
        assert_eq!(sent, 240, "{}", io::Error::last_os_error());

        let mut buf = vec![0u8; 65_535];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut ctrl = [0u64; 4];
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 4]>();
        // SAFETY: the buffers set above are valid for the call.
        let got = unsafe { libc::recvmsg(rx.as_raw_fd(), &mut msg, 0) };
        assert_eq!(
            got,
            240,
            "one coalesced buffer: {}",
            io::Error::last_os_error()
        );
        let segment = gro_segment_size(&msg);
        assert_eq!(segment, Some(100));
        let parts: Vec<&[u8]> = datagrams(&buf[..240], segment).collect();
        assert_eq!(parts.len(), 3);
        for (part, (byte, len)) in parts.iter().zip([(1u8, 100), (2, 100), (3, 40)]) {
            assert_eq!(part.len(), len);
            assert!(part.iter().all(|b| *b == byte));
        }
    }

    #[test]
    fn sockaddr_round_trip() {
        for text in ["192.0.2.1:4500", "[2001:db8::1]:51820"] {
            let addr: SocketAddr = text.parse().expect("addr");
            // SAFETY: all-zero sockaddr_storage is valid.
            let mut storage: libc::sockaddr_storage =
                unsafe { MaybeUninit::zeroed().assume_init() };
            let len = to_sockaddr(&addr, &mut storage);
            assert!(len as usize <= size_of::<libc::sockaddr_storage>());
            assert_eq!(from_sockaddr(&storage), Some(addr));
        }
    }
}
