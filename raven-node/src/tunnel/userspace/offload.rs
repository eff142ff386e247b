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
mod tests {
    use super::*;

    /// Collects frames.
    #[derive(Default)]
    struct Frames(Vec<Vec<u8>>);
    impl Sink for Frames {
        fn write_frame(&mut self, frame: &[u8]) {
            self.0.push(frame.to_vec());
        }
    }

    fn checksum(data: &[u8]) -> u16 {
        !fold(sum_words(data, 0))
    }

    /// A TCPv4 segment 10.0.0.1:1000 → 10.0.0.2:2000 with a valid IP and TCP checksum.
    fn tcp(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let total = 20 + 32 + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&(seq as u16).to_be_bytes()); // any ID
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..22].copy_from_slice(&1000u16.to_be_bytes());
        p[22..24].copy_from_slice(&2000u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&77u32.to_be_bytes());
        p[32] = 8 << 4; // 32-byte header: timestamps
        p[33] = flags;
        p[34..36].copy_from_slice(&500u16.to_be_bytes());
        p[40..52].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);
        p[52..].copy_from_slice(payload);
        let ip = checksum(&p[..20]);
        p[10..12].copy_from_slice(&ip.to_be_bytes());
        fix_tcp_checksum(&mut p);
        p
    }

    fn fix_tcp_checksum(p: &mut [u8]) {
        p[36..38].copy_from_slice(&[0, 0]);
        let len = (p.len() - 20) as u64;
        let sum = sum_words(&p[20..], sum_words(&p[12..20], 6 + len));
        p[36..38].copy_from_slice(&(!fold(sum)).to_be_bytes());
    }

    /// What the kernel does with a GSO frame: segments at gso_size, completes checksums.
    fn resegment(frame: &[u8]) -> Vec<Vec<u8>> {
        let h = VnetHdr::read(frame).expect("header");
        let p = &frame[VNET_HDR_LEN..];
        if h.gso_type == GSO_NONE {
            assert_eq!(h, VnetHdr::default());
            return vec![p.to_vec()];
        }
        assert_eq!(h.gso_type, GSO_TCPV4);
        assert_eq!(h.flags, F_NEEDS_CSUM);
        assert_eq!((h.csum_start, h.csum_offset), (20, 16));
        // The IP header of the merged packet is itself valid.
        assert_eq!(checksum(&p[..20]), 0);
        assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
        let hdr = usize::from(h.hdr_len);
        let seq0 = u32::from_be_bytes([p[24], p[25], p[26], p[27]]);
        let chunks: Vec<&[u8]> = p[hdr..].chunks(usize::from(h.gso_size)).collect();
        let n = chunks.len();
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut s = p[..hdr].to_vec();
                s.extend_from_slice(c);
                let total = s.len() as u16;
                s[2..4].copy_from_slice(&total.to_be_bytes());
                let id = u16::from_be_bytes([p[4], p[5]]).wrapping_add(i as u16);
                s[4..6].copy_from_slice(&id.to_be_bytes());
                s[10..12].copy_from_slice(&[0, 0]);
                let ip = checksum(&s[..20]);
                s[10..12].copy_from_slice(&ip.to_be_bytes());
                let seq = seq0.wrapping_add((i * usize::from(h.gso_size)) as u32);
                s[24..28].copy_from_slice(&seq.to_be_bytes());
                if i + 1 < n {
                    s[33] &= !TCP_PSH;
                }
                fix_tcp_checksum(&mut s);
                s
            })
            .collect()
    }

    /// Feeds packets, flushes, and returns (frames, the packets the kernel would emit).
    fn run(packets: &[Vec<u8>]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut c = Coalescer::new();
        let mut out = Frames::default();
        for p in packets {
            c.push(p, &mut out);
        }
        c.flush(&mut out);
        let segs = out.0.iter().flat_map(|f| resegment(f)).collect();
        (out.0, segs)
    }

    /// Compares ignoring the IP ID (meaningless with DF; the kernel renumbers).
    fn same(a: &[Vec<u8>], b: &[Vec<u8>]) -> bool {
        let strip = |v: &[Vec<u8>]| -> Vec<Vec<u8>> {
            v.iter()
                .map(|p| {
                    let mut p = p.clone();
                    if p.len() >= 20 && p[0] == 0x45 {
                        p[4..6].copy_from_slice(&[0, 0]);
                        p[10..12].copy_from_slice(&[0, 0]);
                    }
                    p
                })
                .collect()
        };
        strip(a) == strip(b)
    }

    fn stream(sizes: &[usize], last_flags: u8) -> Vec<Vec<u8>> {
        let mut seq = 1000u32;
        let n = sizes.len();
        sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let flags = if i + 1 == n { last_flags } else { TCP_ACK };
                let payload: Vec<u8> = (0..len).map(|j| (j + i) as u8).collect();
                let p = tcp(seq, flags, &payload);
                seq = seq.wrapping_add(len as u32);
                p
            })
            .collect()
    }

    #[test]
    fn merge_cases() {
        let ack = TCP_ACK;
        let psh = TCP_ACK | TCP_PSH;
        let mut reordered = stream(&[100, 100, 100], ack);
        reordered.swap(1, 2);
        let mut other_flow = stream(&[100, 100], ack);
        other_flow[1][22..24].copy_from_slice(&2001u16.to_be_bytes());
        fix_tcp_checksum(&mut other_flow[1]);
        let mut other_ttl = stream(&[100, 100], ack);
        other_ttl[1][8] = 63;
        let mut no_df = stream(&[100, 100], ack);
        no_df[1][6] = 0;
        let mut other_ack = stream(&[100, 100], ack);
        other_ack[1][28..32].copy_from_slice(&78u32.to_be_bytes());
        let mut other_ts = stream(&[100, 100], ack);
        other_ts[1][51] = 8;
        let mut ecn = stream(&[100, 100], ack);
        ecn[1][1] = 3;
        let mut fin = stream(&[100, 100], ack);
        fin[1][33] = TCP_ACK | 0x01;
        let mut pure_ack = stream(&[100, 100], ack);
        pure_ack.insert(1, tcp(1100, ack, &[]));
        let mut wrap = Vec::new();
        for (i, len) in [100usize, 100, 100].iter().enumerate() {
            let seq = (u32::MAX - 150).wrapping_add((i as u32) * 100);
            wrap.push(tcp(seq, ack, &vec![i as u8; *len]));
        }
        let big = stream(&vec![1400; 50], ack); // 70 000 bytes: two frames
        let udp = {
            let mut p = stream(&[100], ack).remove(0);
            p[9] = 17;
            p
        };
        // (name, packets, frames expected)
        let cases: Vec<(&str, Vec<Vec<u8>>, usize)> = vec![
            ("one segment stays plain", stream(&[100], ack), 1),
            ("equal run merges", stream(&[100, 100, 100], ack), 1),
            ("shorter last merges", stream(&[100, 100, 40], ack), 1),
            (
                "shorter middle ends the run",
                stream(&[100, 40, 100], ack),
                2,
            ),
            ("longer later starts a new run", stream(&[100, 200], ack), 2),
            ("PSH on the last merges", stream(&[100, 100, 100], psh), 1),
            (
                "PSH ends the run",
                {
                    let mut s = stream(&[100, 100], psh);
                    s.extend(stream(&[100], ack).into_iter().map(|mut p| {
                        p[24..28].copy_from_slice(&1200u32.to_be_bytes());
                        fix_tcp_checksum(&mut p);
                        p
                    }));
                    s
                },
                2,
            ),
            ("gap in sequence", reordered, 3),
            ("other port", other_flow, 2),
            ("other TTL", other_ttl, 2),
            ("DF clear", no_df, 2),
            ("other ACK number", other_ack, 2),
            ("other timestamp", other_ts, 2),
            ("other ECN bits", ecn, 2),
            ("FIN", fin, 2),
            ("pure ACK in between", pure_ack, 3),
            ("sequence wraps", wrap, 1),
            ("64 KiB limit", big, 2),
            ("UDP", vec![udp], 1),
            ("IPv6", vec![vec![0x60; 60]], 1),
            ("garbage", vec![vec![0x45; 3]], 1),
        ];
        for (name, packets, frames) in cases {
            let (out, segs) = run(&packets);
            assert_eq!(out.len(), frames, "{name}: frames");
            assert!(same(&segs, &packets), "{name}: re-segmented packets differ");
            for f in &out {
                assert!(f.len() - VNET_HDR_LEN <= MAX_IPV4, "{name}: frame too big");
            }
        }
    }

    #[test]
    fn merged_frame_header() {
        let (out, _) = run(&stream(&[1368, 1368, 1000], TCP_ACK));
        let h = VnetHdr::read(&out[0]).expect("hdr");
        assert_eq!(
            h,
            VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV4,
                hdr_len: 52,
                gso_size: 1368,
                csum_start: 20,
                csum_offset: 16,
            }
        );
        assert_eq!(out[0].len(), VNET_HDR_LEN + 52 + 1368 * 2 + 1000);
        // Completing the partial checksum over the whole merged segment, as the kernel does
        // when it sends it unsegmented, gives a valid TCP checksum.
        let mut frame = out[0].clone();
        frame[1] = GSO_NONE;
        let Ok(Frame::Packet(r)) = finish_read(&mut frame) else {
            panic!("a packet")
        };
        let p = &frame[r];
        let len = (p.len() - 20) as u64;
        assert_eq!(
            fold(sum_words(&p[20..], sum_words(&p[12..20], 6 + len))),
            0xffff
        );
    }

    #[test]
    fn read_completes_a_partial_checksum() {
        let packet = tcp(5, TCP_ACK, b"hello world");
        let mut want = packet.clone();
        fix_tcp_checksum(&mut want);
        // As the kernel hands it over: the pseudo-header sum in the field.
        let mut partial = packet.clone();
        let len = (partial.len() - 20) as u64;
        let pseudo = fold(sum_words(&partial[12..20], 6 + len));
        partial[36..38].copy_from_slice(&pseudo.to_be_bytes());
        let mut buf = vec![0u8; VNET_HDR_LEN];
        VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 16,
            ..VnetHdr::default()
        }
        .write(&mut buf);
        buf.extend_from_slice(&partial);
        let Ok(Frame::Packet(r)) = finish_read(&mut buf) else {
            panic!("a packet")
        };
        assert_eq!(&buf[r], &want[..]);

        let mut plain = vec![0u8; VNET_HDR_LEN];
        plain.extend_from_slice(&packet);
        let Ok(Frame::Packet(r)) = finish_read(&mut plain) else {
            panic!("a packet")
        };
        assert_eq!(&plain[r], &packet[..]);

        let mut gso = plain.clone();
        gso[1] = 3; // UDP
        assert_eq!(finish_read(&mut gso), Err(ReadError::Gso));
        gso[1] = GSO_TCPV4 | GSO_ECN;
        gso[4..6].copy_from_slice(&100u16.to_ne_bytes());
        assert_eq!(
            finish_read(&mut gso),
            Ok(Frame::Tcp4 {
                packet: VNET_HDR_LEN..plain.len(),
                mss: 100
            })
        );
        assert_eq!(finish_read(&mut [0u8; 4]), Err(ReadError::Short));
        let mut bad = buf.clone();
        bad[6..8].copy_from_slice(&9000u16.to_ne_bytes());
        assert_eq!(finish_read(&mut bad), Err(ReadError::BadChecksumOffset));
    }

    /// Splitting a frame the coalescer built gives back the packets it merged: the two halves
    /// of the offload agree with each other (and `resegment` above, the kernel's rules).
    #[test]
    fn split_undoes_merge() {
        for (sizes, last) in [
            (vec![1368, 1368, 1368], TCP_ACK | TCP_PSH),
            (vec![100, 100, 7], TCP_ACK),
            (vec![1400; 46], TCP_ACK),
        ] {
            let packets = stream(&sizes, last);
            let (frames, _) = run(&packets);
            let mut again = Vec::new();
            let mut scratch = Vec::new();
            for mut f in frames {
                let frame = finish_read(&mut f).expect("read");
                match frame {
                    Frame::Packet(r) => again.push(f[r].to_vec()),
                    Frame::Tcp4 { packet, mss } => {
                        let n =
                            split_tcp4(&f[packet], mss, &mut scratch, |s| again.push(s.to_vec()))
                                .expect("split");
                        assert!(n > 1);
                    }
                }
            }
            assert!(same(&again, &packets), "{sizes:?}");
        }
    }

    /// A merged frame the device refused comes back as the plain frames it stands for.
    #[test]
    fn unmerge_frame_gives_back_the_segments() {
        let packets = stream(&[1368, 1368, 1368, 500], TCP_ACK | TCP_PSH);
        let (frames, _) = run(&packets);
        assert_eq!(frames.len(), 1, "one merged frame");
        let mut again = Vec::new();
        let n = unmerge_frame(&frames[0], &mut Vec::new(), &mut Vec::new(), |f| {
            assert_eq!(VnetHdr::read(f), Some(VnetHdr::default()), "plain header");
            again.push(f[VNET_HDR_LEN..].to_vec());
        })
        .expect("unmerge");
        assert_eq!(n, 4);
        assert!(same(&again, &packets));
        assert!(unmerge_frame(&[0u8; 4], &mut Vec::new(), &mut Vec::new(), |_| ()).is_err());
    }

    /// Segments whose checksums do not verify are never merged (their receiver must see the
    /// bad checksum and drop them): each goes out alone, unchanged.
    #[test]
    fn segments_with_bad_checksums_are_not_merged() {
        for corrupt in [38usize, 10, 200] {
            let mut packets = stream(&[1368, 1368, 1368], TCP_ACK);
            packets[1][corrupt] ^= 0x5a; // a payload byte, the IP checksum, a payload byte
            let (frames, _) = run(&packets);
            let bad = packets[1].clone();
            assert!(
                frames.iter().any(|f| f[VNET_HDR_LEN..] == bad[..]
                    && VnetHdr::read(f) == Some(VnetHdr::default())),
                "byte {corrupt}: the corrupt segment went out merged or changed"
            );
        }
    }

    /// Superpackets with IP options are refused by the splitter.
    #[test]
    fn split_refuses_ip_options() {
        let mut p = tcp(9, TCP_ACK, &[7u8; 250]);
        p.splice(20..20, [1u8, 1, 1, 0]); // four NOPs/EOL of options
        p[0] = 0x46;
        assert_eq!(
            split_tcp4(&p, 100, &mut Vec::new(), |_| ()),
            Err(ReadError::BadSuperpacket)
        );
    }

    #[test]
    fn split_places_flags_and_checksums() {
        // A superpacket as the kernel hands it: CWR, PSH and FIN set on the whole.
        let mut p = tcp(9, TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR, &[7u8; 250]);
        p[36..38].copy_from_slice(&[0xde, 0xad]); // partial or stale: ignored
        let mut segs = Vec::new();
        let n = split_tcp4(&p, 100, &mut Vec::new(), |s| segs.push(s.to_vec())).expect("split");
        assert_eq!(n, 3);
        let flags: Vec<u8> = segs.iter().map(|s| s[33]).collect();
        assert_eq!(
            flags,
            vec![TCP_ACK | TCP_CWR, TCP_ACK, TCP_ACK | TCP_PSH | TCP_FIN]
        );
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(s.len(), 52 + [100, 100, 50][i]);
            assert_eq!(checksum(&s[..20]), 0, "IP checksum");
            let len = (s.len() - 20) as u64;
            assert_eq!(
                fold(sum_words(&s[20..], sum_words(&s[12..20], 6 + len))),
                0xffff,
                "TCP checksum"
            );
            let seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
            assert_eq!(seq, 9 + 100 * i as u32);
            assert_eq!(u16::from_be_bytes([s[4], s[5]]), 9 + i as u16, "IP ID");
        }
        // No payload: one segment, as is.
        let bare = tcp(1, TCP_ACK, &[]);
        assert_eq!(split_tcp4(&bare, 100, &mut Vec::new(), |_| {}), Ok(1));
        for bad in [vec![0x45; 30], vec![0x60; 60]] {
            assert_eq!(
                split_tcp4(&bad, 100, &mut Vec::new(), |_| {}),
                Err(ReadError::BadSuperpacket)
            );
        }
        assert_eq!(
            split_tcp4(&p, 0, &mut Vec::new(), |_| {}),
            Err(ReadError::BadSuperpacket)
        );
    }

    /// A UDP checksum that computes to 0 is sent as 0xffff (0 would mean "none").
    #[test]
    fn completed_zero_checksum_is_sent_as_ffff() {
        // UDP 10.0.0.1:1 → 10.0.0.2:2, 4 payload bytes; the field holds the pseudo sum.
        let mut p = vec![0u8; 32];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&32u16.to_be_bytes());
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..22].copy_from_slice(&1u16.to_be_bytes());
        p[22..24].copy_from_slice(&2u16.to_be_bytes());
        p[24..26].copy_from_slice(&12u16.to_be_bytes());
        let pseudo = fold(sum_words(&p[12..20], 17 + 12));
        p[26..28].copy_from_slice(&pseudo.to_be_bytes());
        // Choose the last payload word so that the whole sum is 0xffff.
        let partial = fold(sum_words(&p[20..], 0));
        p[30..32].copy_from_slice(&(!partial).to_be_bytes());
        assert_eq!(fold(sum_words(&p[20..], 0)), 0xffff);
        let mut buf = vec![0u8; VNET_HDR_LEN];
        VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 6,
            ..VnetHdr::default()
        }
        .write(&mut buf);
        buf.extend_from_slice(&p);
        let Ok(Frame::Packet(r)) = finish_read(&mut buf) else {
            panic!("a packet")
        };
        assert_eq!(&buf[r][26..28], &[0xff, 0xff]);
    }

    #[test]
    fn checksum_of_odd_lengths() {
        // RFC 1071's example words.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(&data, 0)), 0xddf2);
        assert_eq!(fold(sum_words(&[0xab], 0)), 0xab00);
        assert_eq!(
            fold(sum_words(&data[..7], 0)),
            fold(sum_words(&data[..6], 0xf600))
        );
    }
}
