//! The one DER reader the proxy needs: a bounded TLV splitter, used to read the subject of
//! certificates rustls has already verified (the tunnel's node identity, the front side's
//! caller identity) without a full X.509 parser on the handshake path.

/// One DER TLV: `(tag, content, rest)`. Bounded reads only; `None` on malformed input.
pub fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}
