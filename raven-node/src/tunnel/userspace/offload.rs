//! TCP receive coalescing for the TUN device (userspace GRO), and the `virtio_net_hdr` that
//! carries it.
//!
//! Why: without it, every decrypted 1420-byte packet is written to the TUN device alone, and
//! the kernel forwards, VXLAN-encapsulates (raven0 to a member), and delivers it alone. The
//! kernel does that work once per *write*, so handing it one TCP superpacket of up to 64 KiB
//! (a run of in-order segments of one flow, as the sender's TSO cut them) divides the
//! per-packet cost of the receiving gateway's forwarding, raven0's encapsulation, the
//! underlay, and the member's decapsulation by the number of segments. The device is opened
//! with `IFF_VNET_HDR`, so each write starts with a [`VnetHdr`] saying "TCPv4 GSO, segment
//! size N, checksum to complete"; the kernel re-segments only where a device needs it.
//!
//! The rules for merging follow what the kernel's own GRO accepts, so the segments the
//! kernel cuts again are the ones the sender sent: same addresses, ports, TOS/ECN, TTL, DF
//! set (IP IDs then carry no meaning, RFC 6864), no IP options; TCP flags exactly ACK (PSH
//! allowed on the last one), same ACK number, window and options; sequence numbers
//! contiguous; every segment the size of the first except a shorter last one. Anything else
//! (handshakes, FIN/RST, pure ACKs, IPv6, UDP, ICMP) is written as it came.
//!
//! Integrity: the decrypted segments are authenticated by WireGuard's AEAD, so the merged
//! packet carries a partial checksum (`NEEDS_CSUM`) that the kernel completes on the way
//! out, as it does for any locally built TCP packet.
//!
//! Reading is the other half: the device advertises checksum offload and TCPv4 segmentation
//! (`TUNSETOFFLOAD` with `TUN_F_CSUM | TUN_F_TSO4`), so the kernel hands over a TCP
//! superpacket (a local sender's TSO burst, or raven0's GRO result on a gateway) in one
//! read instead of segmenting it and queueing every piece. [`finish_read`] completes a
//! partial checksum of a plain packet; [`split_tcp4`] cuts a superpacket into the segments
//! it stands for (each with a full checksum) right before encryption, so the wire carries
//! exactly what it carried before. Other GSO kinds are never advertised, hence refused.

/// Size of the legacy `struct virtio_net_hdr` the TUN device uses by default.
pub const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is partial.
const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
const GSO_TCPV4: u8 = 1;

/// Largest IPv4 packet (the total-length field).
const MAX_IPV4: usize = 65_535;
/// TCP flag bits.
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
/// Offset of the TCP checksum in the TCP header.
const TCP_CSUM_OFFSET: usize = 16;

/// `struct virtio_net_hdr` (native byte order, as the TUN device uses it unless told
/// otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Encodes into the first [`VNET_HDR_LEN`] bytes of `out`.
    pub fn write(&self, out: &mut [u8]) {
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }

    /// Decodes the first [`VNET_HDR_LEN`] bytes of `b` (`None` if shorter).
    pub fn read(b: &[u8]) -> Option<Self> {
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        (b.len() >= VNET_HDR_LEN).then(|| Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }
}

/// `VIRTIO_NET_HDR_GSO_ECN`: the segments carry ECN (CWR only on the first).
const GSO_ECN: u8 = 0x80;
/// TCP flag bits cleared on all but the last (FIN, PSH) or first (CWR) segment.
const TCP_FIN: u8 = 0x01;
const TCP_CWR: u8 = 0x80;

/// What a frame read from the device holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// One finished packet at this range of the buffer.
    Packet(std::ops::Range<usize>),
    /// A TCPv4 superpacket (range) to cut into segments of `mss` payload bytes
    /// ([`split_tcp4`]) before encryption.
    Tcp4 {
        /// The superpacket's range in the buffer.
        packet: std::ops::Range<usize>,
        /// Payload bytes per segment.
        mss: usize,
    },
}

/// Why a packet read from the device cannot be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Shorter than the header.
    Short,
    /// A GSO packet although the device advertises no segmentation offload.
    Gso,
    /// A partial checksum whose position lies outside the packet.
    BadChecksumOffset,
    /// A TCPv4 superpacket whose headers do not parse.
    BadSuperpacket,
}

/// Turns a buffer read from the device (header + packet) into a packet, completing a
/// partial checksum in place, or into a TCPv4 superpacket for [`split_tcp4`].
pub fn finish_read(buf: &mut [u8]) -> Result<Frame, ReadError> {
    let hdr = VnetHdr::read(buf).ok_or(ReadError::Short)?;
    if hdr.gso_type & !GSO_ECN == GSO_TCPV4 && hdr.gso_size > 0 {
        return Ok(Frame::Tcp4 {
            packet: VNET_HDR_LEN..buf.len(),
            mss: usize::from(hdr.gso_size),
        });
    }
    if hdr.gso_type != GSO_NONE {
        return Err(ReadError::Gso);
    }
    let packet = &mut buf[VNET_HDR_LEN..];
    if hdr.flags & F_NEEDS_CSUM != 0 {
        let start = usize::from(hdr.csum_start);
        let at = start + usize::from(hdr.csum_offset);
        if at + 2 > packet.len() || start > packet.len() {
            return Err(ReadError::BadChecksumOffset);
        }
        // The field holds the pseudo-header sum; the sum from csum_start covers it. A result
        // of 0 goes out as 0xffff (equal in one's complement), as the kernel does: for UDP a
        // zero would mean "no checksum".
        let sum = match !fold(sum_words(&packet[start..], 0)) {
            0 => 0xffff,
            s => s,
        };
        packet[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }
    Ok(Frame::Packet(VNET_HDR_LEN..buf.len()))
}

/// Cuts a TCPv4 superpacket into the segments its sender meant (what the kernel's own
/// segmentation does): `mss` payload bytes each, the last shorter; IP total length, ID
/// (+1 per segment), header checksum; TCP sequence number, FIN/PSH only on the last and CWR
/// only on the first segment, and a full TCP checksum. Each segment is built in `scratch`
/// and passed to `each`. Returns the number of segments.
pub fn split_tcp4(
    packet: &[u8],
    mss: usize,
    scratch: &mut Vec<u8>,
    mut each: impl FnMut(&[u8]),
) -> Result<usize, ReadError> {
    let bad = ReadError::BadSuperpacket;
    if packet.len() < 40 || packet[0] >> 4 != 4 || packet[9] != 6 || mss == 0 {
        return Err(bad);
    }
    let ip_len = usize::from(packet[0] & 0x0f) * 4;
    // IP options are refused: with source routing the TCP pseudo-header holds the final
    // destination, not the header's next hop, so a fresh checksum from the header would be
    // wrong (and nothing sends TSO bursts with options in practice).
    if ip_len != 20 || ip_len + 20 > packet.len() {
        return Err(bad);
    }
    let tcp_len = usize::from(packet[ip_len + 12] >> 4) * 4;
    let hdr = ip_len + tcp_len;
    if tcp_len < 20 || hdr > packet.len() {
        return Err(bad);
    }
    let id = u16::from_be_bytes([packet[4], packet[5]]);
    let seq = u32::from_be_bytes([
        packet[ip_len + 4],
        packet[ip_len + 5],
        packet[ip_len + 6],
        packet[ip_len + 7],
    ]);
    let flags = packet[ip_len + 13];
    let payload = &packet[hdr..];
    let count = payload.len().div_ceil(mss).max(1);
    for i in 0..count {
        let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        scratch.clear();
        scratch.extend_from_slice(&packet[..hdr]);
        scratch.extend_from_slice(chunk);
        let s = &mut scratch[..];
        let total = s.len();
        s[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        s[4..6].copy_from_slice(&id.wrapping_add(i as u16).to_be_bytes());
        s[10..12].copy_from_slice(&[0, 0]);
        let ip_sum = !fold(sum_words(&s[..ip_len], 0));
        s[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        let t = ip_len;
        s[t + 4..t + 8].copy_from_slice(&seq.wrapping_add((i * mss) as u32).to_be_bytes());
        let mut f = flags;
        if i > 0 {
            f &= !TCP_CWR;
        }
        if i + 1 < count {
            f &= !(TCP_FIN | TCP_PSH);
        }
        s[t + 13] = f;
        s[t + TCP_CSUM_OFFSET..t + TCP_CSUM_OFFSET + 2].copy_from_slice(&[0, 0]);
        let pseudo = sum_words(&s[12..20], 6 + (total - ip_len) as u64);
        let tcp_sum = !fold(sum_words(&s[t..], pseudo));
        s[t + TCP_CSUM_OFFSET..t + TCP_CSUM_OFFSET + 2].copy_from_slice(&tcp_sum.to_be_bytes());
        each(s);
    }
    Ok(count)
}

/// One's-complement sum of `data` as big-endian 16-bit words, added to `acc` (not folded).
fn sum_words(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Sum the four 16-bit words of the 64-bit word without overflow.
        acc += (w >> 48) + ((w >> 32) & 0xffff) + ((w >> 16) & 0xffff) + (w & 0xffff);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits (not complemented).
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The header fields that identify a TCPv4 segment worth merging, parsed once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    /// IP header length (always 20: packets with IP options are not merged).
    ip_len: usize,
    /// TCP header length.
    tcp_len: usize,
    /// Payload length.
    payload: usize,
    seq: u32,
    flags: u8,
}

/// Parses `p` as a mergeable TCPv4 data segment (see the module doc), or `None`.
fn segment(p: &[u8]) -> Option<Segment> {
    if p.len() < 40 || p[0] != 0x45 {
        return None; // not IPv4, or IP options
    }
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    let frag = u16::from_be_bytes([p[6], p[7]]);
    // DF set, MF clear, offset 0; protocol TCP.
    if total != p.len() || frag != 0x4000 || p[9] != 6 {
        return None;
    }
    let tcp_len = usize::from(p[32] >> 4) * 4;
    let flags = p[33];
    if tcp_len < 20 || 20 + tcp_len >= total || (flags != TCP_ACK && flags != TCP_ACK | TCP_PSH) {
        return None;
    }
    // Merging would hide a bad checksum behind the one the kernel computes for the
    // superpacket, so (as the kernel's GRO) only segments whose IP and TCP checksums verify
    // are merged; a failing one is written as it came and its receiver drops it.
    let pseudo = sum_words(&p[12..20], 6 + (total - 20) as u64);
    if fold(sum_words(&p[..20], 0)) != 0xffff || fold(sum_words(&p[20..], pseudo)) != 0xffff {
        return None;
    }
    Some(Segment {
        ip_len: 20,
        tcp_len,
        payload: total - 20 - tcp_len,
        seq: u32::from_be_bytes([p[24], p[25], p[26], p[27]]),
        flags,
    })
}

/// Whether `next` continues the run whose first packet is `head` (parsed as `h`), whose
/// last segment was `last`, with `bytes` bytes in total so far.
fn continues(
    head: &[u8],
    h: &Segment,
    last: &Segment,
    next: &[u8],
    n: &Segment,
    bytes: usize,
) -> bool {
    let hdr = h.ip_len + h.tcp_len;
    n.tcp_len == h.tcp_len
        && n.payload <= h.payload
        && last.payload == h.payload
        && last.flags & TCP_PSH == 0
        && n.seq == last.seq.wrapping_add(last.payload as u32)
        && bytes + n.payload <= MAX_IPV4
        // TOS, DF/frag, TTL, protocol.
        && head[1] == next[1]
        && head[6..10] == next[6..10]
        // Addresses, ports.
        && head[12..24] == next[12..24]
        // ACK number, data offset, window.
        && head[28..33] == next[28..33]
        && head[34..36] == next[34..36]
        // Urgent pointer and options.
        && head[38..hdr] == next[38..hdr]
}

/// What a [`Coalescer`] gives back to write to the device: header + packet, contiguous.
pub trait Sink {
    /// Writes one frame (a [`VnetHdr`] followed by the packet).
    fn write_frame(&mut self, frame: &[u8]);
}

/// Merges runs of consecutive TCPv4 segments of one flow into one GSO frame. Streaming: a run
/// ends at the first packet that does not continue it, and [`Coalescer::flush`] ends the
/// last run (call it when the batch of received datagrams is done, so nothing waits).
#[derive(Debug)]
pub struct Coalescer {
    /// The frame being built: header room, the first packet, then the following payloads.
    buf: Vec<u8>,
    /// First segment of the run (None: no run open).
    head: Option<Segment>,
    /// Last segment appended.
    last: Option<Segment>,
    /// Segments in the run.
    count: usize,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new()
    }
}

impl Coalescer {
    /// An empty coalescer with room for one maximal frame.
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(VNET_HDR_LEN + MAX_IPV4),
            head: None,
            last: None,
            count: 0,
        }
    }

    /// Takes one decrypted packet; writes whatever it completes to `sink`.
    pub fn push(&mut self, packet: &[u8], sink: &mut impl Sink) {
        let Some(seg) = segment(packet).filter(|s| s.payload > 0) else {
            self.flush(sink);
            write_plain(&mut self.buf, packet, sink);
            return;
        };
        if let (Some(h), Some(l)) = (&self.head, &self.last) {
            let bytes = self.buf.len() - VNET_HDR_LEN;
            if continues(&self.buf[VNET_HDR_LEN..], h, l, packet, &seg, bytes) {
                let hdr = seg.ip_len + seg.tcp_len;
                self.buf.extend_from_slice(&packet[hdr..]);
                self.last = Some(seg);
                self.count += 1;
                return;
            }
            self.flush(sink);
        }
        self.buf.clear();
        self.buf.resize(VNET_HDR_LEN, 0);
        self.buf.extend_from_slice(packet);
        self.head = Some(seg);
        self.last = Some(seg);
        self.count = 1;
    }

    /// Writes the open run, if any.
    pub fn flush(&mut self, sink: &mut impl Sink) {
        let (Some(h), Some(l)) = (self.head.take(), self.last.take()) else {
            return;
        };
        let count = std::mem::take(&mut self.count);
        let frame = &mut self.buf[..];
        if count == 1 {
            VnetHdr::default().write(frame);
            sink.write_frame(frame);
            return;
        }
        let p = &mut frame[VNET_HDR_LEN..];
        let total = p.len();
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[10..12].copy_from_slice(&[0, 0]);
        let ip_sum = !fold(sum_words(&p[..h.ip_len], 0));
        p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        let tcp = h.ip_len;
        p[tcp + 13] |= l.flags & TCP_PSH;
        // Partial checksum: the pseudo-header sum (addresses, protocol, TCP length).
        let tcp_total = (total - h.ip_len) as u64;
        let pseudo = fold(sum_words(&p[12..20], 6 + tcp_total));
        p[tcp + TCP_CSUM_OFFSET..tcp + TCP_CSUM_OFFSET + 2].copy_from_slice(&pseudo.to_be_bytes());
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: (h.ip_len + h.tcp_len) as u16,
            gso_size: h.payload as u16,
            csum_start: h.ip_len as u16,
            csum_offset: TCP_CSUM_OFFSET as u16,
        }
        .write(frame);
        sink.write_frame(frame);
    }
}

/// Cuts a merged frame (as [`Coalescer`] writes them) back into plain frames, one per
/// segment, each behind an empty header, and passes them to `write`: for a device that
/// refused the merged frame, so its segments are not lost. Returns how many it wrote.
pub fn unmerge_frame(
    frame: &[u8],
    scratch: &mut Vec<u8>,
    plain: &mut Vec<u8>,
    mut write: impl FnMut(&[u8]),
) -> Result<usize, ReadError> {
    let h = VnetHdr::read(frame).ok_or(ReadError::Short)?;
    if h.gso_type & !GSO_ECN != GSO_TCPV4 {
        return Err(ReadError::BadSuperpacket);
    }
    split_tcp4(
        &frame[VNET_HDR_LEN..],
        usize::from(h.gso_size),
        scratch,
        |segment| {
            plain.clear();
            plain.resize(VNET_HDR_LEN, 0);
            plain.extend_from_slice(segment);
            write(plain);
        },
    )
}

/// Writes `packet` alone, behind an empty header, using `buf` as scratch.
fn write_plain(buf: &mut Vec<u8>, packet: &[u8], sink: &mut impl Sink) {
    buf.clear();
    buf.resize(VNET_HDR_LEN, 0);
    buf.extend_from_slice(packet);
    sink.write_frame(buf);
}

#[cfg(test)]
#[path = "offload_tests.rs"]
mod tests;
