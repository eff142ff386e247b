//! Per-pair ESP keys without an IKE daemon: the key ring file and the derivation. Pure, no I/O
//! except [`KeyRing::load`].
//!
//! ## Scheme
//! Both gateways of a pair already know each other's X25519 public key (`config.publicKey`,
//! the persisted identity of [`crate::tunnel::key`]). Each side computes the same X25519
//! shared secret `Z` from its own private key and the peer's public key, so `Z` is unique per
//! pair and never leaves the two nodes. For key index `i` (0..=15) and the direction
//! `S → D` (public keys):
//!
//! ```text
//! PRK = HKDF-Extract(salt = "raven-ipsec-v1" || PSK_i, IKM = Z)          (SHA-256)
//! OKM = HKDF-Expand(PRK, info = "raven esp" || pub_S || pub_D || i, 40)
//! key = OKM[0..36]   (AES-256 key + 4-byte GCM salt for rfc4106(gcm(aes)))
//! SPI = (OKM[36..40] as u32 & 0xffff_fff0) | i   (never below 256)
//! ```
//!
//! `PSK_i` is the optional pre-shared secret of index `i` from the key ring file (a mounted
//! Secret), empty without one. So every direction of every pair and every index has its own
//! key and SPI, and the SPI's low nibble names the index, which lets both generations coexist
//! during a rotation. Security properties are documented in the README ("IPsec key scheme").

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use boringtun::x25519::{PublicKey, StaticSecret};
use ring::hkdf;

/// Length of an rfc4106(gcm(aes)) key with AES-256: 32 key bytes and a 4-byte salt.
pub const AEAD_KEY_LEN: usize = 36;
/// Highest key index: the index lives in the SPI's low four bits.
pub const MAX_INDEX: u8 = 15;
/// Smallest usable SPI (RFC 4303: 1..=255 are reserved by IANA, 0 is never valid).
const MIN_SPI: u32 = 0x100;

/// A PSK shorter than this adds nothing worth having and is probably a typo.
const MIN_PSK_LEN: usize = 16;

/// Key material of one SA. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AeadKey(pub [u8; AEAD_KEY_LEN]);

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AeadKey(..)")
    }
}

/// The key ring: which indices exist (each with an optional PSK) and which one we send with.
///
/// File format (one entry per line, `#` comments):
/// ```text
/// 1 <base64 PSK>        # index 1, with a pre-shared key
/// 2 -                   # index 2, no PSK (X25519 only)
/// send 2                # outbound SAs use index 2 (default: the lowest index)
/// ```
/// Zero-loss rotation is three edits, each applied on every gateway before the next: add the
/// new index (inbound SAs for it appear everywhere), `send` the new index (output switches),
/// remove the old index (its SAs are deleted).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRing {
    keys: BTreeMap<u8, Option<Vec<u8>>>,
    send: u8,
}

impl fmt::Debug for KeyRing {
    /// Indices only, never the secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("indices", &self.keys.keys().collect::<Vec<_>>())
            .field("send", &self.send)
            .finish()
    }
}

impl Default for KeyRing {
    /// Index 0 without a PSK: what a gateway uses when no key file is configured.
    fn default() -> Self {
        Self {
            keys: BTreeMap::from([(0, None)]),
            send: 0,
        }
    }
}

impl KeyRing {
    /// Parses the key ring text; the error names the line and what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = BTreeMap::new();
        let mut send = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |m: String| format!("line {}: {m}", n + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["send", index] => {
                    if send.is_some() {
                        return Err(at("a second `send` line".into()));
                    }
                    send = Some(parse_index(index).map_err(at)?);
                }
                [index, secret] => {
                    let index = parse_index(index).map_err(at)?;
                    let psk = match *secret {
                        "-" => None,
                        b64 => {
                            let bytes = STANDARD
                                .decode(b64)
                                .map_err(|_| at("the PSK is not valid base64".into()))?;
                            if bytes.len() < MIN_PSK_LEN {
                                return Err(at(format!(
                                    "the PSK has {} bytes; use at least {MIN_PSK_LEN} \
                                     (e.g. `head -c 32 /dev/urandom | base64`)",
                                    bytes.len()
                                )));
                            }
                            Some(bytes)
                        }
                    };
                    if keys.insert(index, psk).is_some() {
                        return Err(at(format!("index {index} appears twice")));
                    }
                }
                _ => {
                    return Err(at(
                        "expected `<index> <base64 PSK or ->` or `send <index>`".into()
                    ));
                }
            }
        }
        let Some(&lowest) = keys.keys().next() else {
            return Err("no key index (a line `<index> <base64 PSK or ->`)".into());
        };
        let send = send.unwrap_or(lowest);
        if !keys.contains_key(&send) {
            return Err(format!(
                "`send {send}` names an index that is not in the file"
            ));
        }
        Ok(Self { keys, send })
    }

    /// Reads and parses a key ring file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("IPsec key file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("IPsec key file {}: {e}", path.display()))
    }

    /// The index outbound SAs use.
    pub fn send(&self) -> u8 {
        self.send
    }

    /// Every index, ascending.
    pub fn indices(&self) -> impl Iterator<Item = u8> + '_ {
        self.keys.keys().copied()
    }

    fn psk(&self, index: u8) -> &[u8] {
        self.keys
            .get(&index)
            .and_then(|p| p.as_deref())
            .unwrap_or(&[])
    }
}

fn parse_index(text: &str) -> Result<u8, String> {
    match text.parse::<u8>() {
        Ok(i) if i <= MAX_INDEX => Ok(i),
        _ => Err(format!(
            "key index {text:?} is not a number 0..={MAX_INDEX}"
        )),
    }
}

/// The secret shared by one pair, before index and direction are mixed in.
#[derive(Clone)]
pub struct PairSecret {
    shared: [u8; 32],
    own: [u8; 32],
    peer: [u8; 32],
}

impl fmt::Debug for PairSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairSecret(..)")
    }
}

/// Why no pair secret exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairError {
    /// The peer's public key is a low-order point: the shared secret would be all zeros and
    /// known to everyone.
    NonContributory,
}

impl PairSecret {
    /// X25519 between our private key and the peer's public key.
    pub fn new(own: &StaticSecret, peer: &[u8; 32]) -> Result<Self, PairError> {
        let peer_key = PublicKey::from(*peer);
        let shared = own.diffie_hellman(&peer_key);
        if !shared.was_contributory() {
            return Err(PairError::NonContributory);
        }
        Ok(Self {
            shared: *shared.as_bytes(),
            own: *PublicKey::from(own).as_bytes(),
            peer: *peer,
        })
    }

    /// Key and SPI of our outbound SA (us → peer) for `index`.
    pub fn outbound(&self, ring: &KeyRing, index: u8) -> (AeadKey, u32) {
        derive(&self.shared, ring.psk(index), &self.own, &self.peer, index)
    }

    /// Key and SPI of our inbound SA (peer → us) for `index`: the peer's outbound.
    pub fn inbound(&self, ring: &KeyRing, index: u8) -> (AeadKey, u32) {
        derive(&self.shared, ring.psk(index), &self.peer, &self.own, index)
    }
}

/// Fixed-length output for ring's HKDF-Expand.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// The derivation of the module doc.
pub fn derive(
    shared: &[u8; 32],
    psk: &[u8],
    src: &[u8; 32],
    dst: &[u8; 32],
    index: u8,
) -> (AeadKey, u32) {
    let mut salt = b"raven-ipsec-v1".to_vec();
    salt.extend_from_slice(psk);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(shared);
    let idx = [index];
    let info: [&[u8]; 4] = [b"raven esp", src, dst, &idx];
    let mut okm = [0u8; AEAD_KEY_LEN + 4];
    prk.expand(&info, Len(okm.len()))
        .and_then(|o| o.fill(&mut okm))
        .expect("40 bytes is far below HKDF-SHA256's 8160-byte limit");
    let mut key = [0u8; AEAD_KEY_LEN];
    key.copy_from_slice(&okm[..AEAD_KEY_LEN]);
    let word = u32::from_be_bytes([okm[36], okm[37], okm[38], okm[39]]);
    (AeadKey(key), spi(word, index))
}

/// Builds an SPI from 28 derived bits and the key index in the low nibble, avoiding the
/// reserved range.
pub fn spi(derived: u32, index: u8) -> u32 {
    let mut spi = (derived & 0xffff_fff0) | u32::from(index & MAX_INDEX);
    if spi < MIN_SPI {
        spi |= 0x8000_0000;
    }
    spi
}

/// The key index encoded in an SPI.
pub fn index_of(spi: u32) -> u8 {
    (spi & u32::from(MAX_INDEX)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> StaticSecret {
        StaticSecret::from([byte; 32])
    }

    fn public(s: &StaticSecret) -> [u8; 32] {
        *PublicKey::from(s).as_bytes()
    }

    #[test]
    fn both_sides_derive_the_same_keys_per_direction() {
        let (a, b) = (secret(1), secret(2));
        let ab = PairSecret::new(&a, &public(&b)).expect("a");
        let ba = PairSecret::new(&b, &public(&a)).expect("b");
        let ring = KeyRing::default();
        assert_eq!(ab.outbound(&ring, 0), ba.inbound(&ring, 0));
        assert_eq!(ab.inbound(&ring, 0), ba.outbound(&ring, 0));
        // The two directions differ in key and SPI.
        let (k1, s1) = ab.outbound(&ring, 0);
        let (k2, s2) = ab.inbound(&ring, 0);
        assert_ne!(k1, k2);
        assert_ne!(s1, s2);
    }

    #[test]
    fn keys_are_unique_per_pair_index_and_psk() {
        let (a, b, c) = (secret(1), secret(2), secret(3));
        let ring = KeyRing::parse("0 -\n1 -\n").expect("ring");
        let psk = KeyRing::parse(&format!("0 {}\n", STANDARD.encode([9u8; 32]))).expect("psk");
        let ab = PairSecret::new(&a, &public(&b)).expect("ab");
        let ac = PairSecret::new(&a, &public(&c)).expect("ac");
        let cases = [
            ab.outbound(&ring, 0),
            ab.outbound(&ring, 1),
            ac.outbound(&ring, 0),
            ab.outbound(&psk, 0),
            ab.inbound(&ring, 0),
        ];
        for (i, x) in cases.iter().enumerate() {
            for y in &cases[i + 1..] {
                assert_ne!(x.0, y.0, "keys must differ");
            }
        }
        // Same PSK bytes at index 0 vs none changes the key but keeps the index nibble.
        assert_eq!(index_of(cases[0].1), 0);
        assert_eq!(index_of(cases[1].1), 1);
        assert_eq!(index_of(cases[3].1), 0);
    }

    #[test]
    fn known_vector_is_stable() {
        // Pinned so a refactor cannot silently change what peers on the wire compute; the
        // values come from an independent HKDF-SHA256 (Python's hmac/hashlib) of the same
        // inputs.
        let (key, spi) = derive(&[7u8; 32], b"", &[1u8; 32], &[2u8; 32], 3);
        let hex: String = key.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "67c339c87a549d93f9f1321496ccf5c8d2cb9adec41210f480815efe3aac0c73f6bbdbf8"
        );
        assert_eq!(spi, 0xafee_1633);
        assert_eq!(index_of(spi), 3);
    }

    #[test]
    fn spi_encoding() {
        let cases = [
            (0x1234_5678, 0, 0x1234_5670),
            (0x1234_5678, 15, 0x1234_567f),
            (0xffff_ffff, 2, 0xffff_fff2),
            (0x0000_0000, 1, 0x8000_0001),
            (0x0000_00ff, 4, 0x8000_00f4),
            (0x0000_0100, 4, 0x0000_0104),
        ];
        for (derived, index, want) in cases {
            let got = spi(derived, index);
            assert_eq!(got, want, "{derived:#x} {index}");
            assert_eq!(index_of(got), index);
            assert!(got >= MIN_SPI);
        }
    }

    #[test]
    fn low_order_peer_key_is_refused() {
        assert_eq!(
            PairSecret::new(&secret(1), &[0u8; 32]).map(|_| ()),
            Err(PairError::NonContributory)
        );
    }

    #[test]
    fn ring_parsing() {
        let psk = STANDARD.encode([5u8; 32]);
        let ring = KeyRing::parse(&format!("# keys\n1 {psk}\n2 -  # new\n\nsend 2\n")).expect("ok");
        assert_eq!(ring.indices().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(ring.send(), 2);
        assert_eq!(ring.psk(1), &[5u8; 32]);
        assert_eq!(ring.psk(2), b"");
        // Default send: the lowest index.
        assert_eq!(KeyRing::parse("7 -\n3 -\n").expect("ok").send(), 3);
        // Debug never shows the PSK.
        assert!(!format!("{ring:?}").contains(&psk));

        let short = STANDARD.encode([1u8; 8]);
        let bad = [
            ("", "no key index"),
            ("# only\n", "no key index"),
            ("16 -\n", "line 1: key index \"16\""),
            ("x -\n", "not a number"),
            ("1 -\n1 -\n", "line 2: index 1 appears twice"),
            ("1 !!!\n", "not valid base64"),
            (&format!("1 {short}\n"), "at least 16"),
            ("1 -\nsend 2\n", "`send 2` names an index"),
            ("1 -\nsend 1\nsend 1\n", "a second `send`"),
            ("1 - extra\n", "expected"),
        ];
        for (text, want) in bad {
            let err = KeyRing::parse(text).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
