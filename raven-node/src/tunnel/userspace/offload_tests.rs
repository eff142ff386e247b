//! Tests of [`super`]: merge and split tables, built from packets assembled here.

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
                    let n = split_tcp4(&f[packet], mss, &mut scratch, |s| again.push(s.to_vec()))
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
            frames
                .iter()
                .any(|f| f[VNET_HDR_LEN..] == bad[..]
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
