//! Reading and seeding kernel xfrm state with `ip xfrm`, for the IPsec driver's tests (the host
//! policy test and the kernel-tier scenarios).
//!
//! The tests look at xfrm state the way an operator would (`ip xfrm state|policy`), independent
//! of the driver's own netlink code, and seed "foreign" objects (global ones and ones with
//! another `if_id`) that the driver must never touch. The builders keep each seed one line long
//! instead of a twenty-line argument list.

/// `if_id` of the driver (`raven_node::tunnel::ipsec::IF_ID`) as `ip xfrm` prints it.
pub const OUR_IF_ID: &str = "if_id 0x524156";

/// An AES-GCM (rfc4106) key for seeded states: 32 bytes of key + 4 bytes of salt, hex.
pub const SEED_AEAD_KEY: &str = "0x0102030405060708090a0b0c0d0e0f1011121314";

/// Splits `ip xfrm state|policy` output into objects: a block starts at an unindented line.
/// Trailing spaces are trimmed so blocks compare stably.
pub fn blocks(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if !line.starts_with([' ', '\t']) || out.is_empty() {
            out.push(String::new());
        }
        let last = out.last_mut().expect("pushed above");
        last.push_str(line.trim_end());
        last.push('\n');
    }
    out
}

/// Blocks that carry our `if_id`.
pub fn ours(blocks: &[String]) -> Vec<&String> {
    blocks.iter().filter(|b| b.contains(OUR_IF_ID)).collect()
}

/// Blocks that do not carry our `if_id`.
pub fn foreign(blocks: Vec<String>) -> Vec<String> {
    blocks
        .into_iter()
        .filter(|b| !b.contains(OUR_IF_ID))
        .collect()
}

/// `ip xfrm state add` arguments for an ESP tunnel-mode state with [`SEED_AEAD_KEY`].
/// `if_id`: `Some` for a route-based (interface) state, `None` for a global one; `encap`: ESP in
/// UDP on 4500 both ways.
pub fn state_add(
    src: &str,
    dst: &str,
    spi: u32,
    reqid: u32,
    if_id: Option<u32>,
    encap: bool,
) -> Vec<String> {
    let mut a = words(&format!(
        "xfrm state add src {src} dst {dst} proto esp spi {spi:#x} reqid {reqid} mode tunnel \
         aead rfc4106(gcm(aes)) {SEED_AEAD_KEY} 128"
    ));
    if encap {
        a.extend(words("encap espinudp 4500 4500 0.0.0.0"));
    }
    a.extend(if_id_words(if_id));
    a
}

/// `ip xfrm policy add` arguments: selector `sel_src` → `sel_dst` in direction `dir`
/// (`in`, `out`, `fwd`) with an ESP tunnel template `tmpl_src` → `tmpl_dst`; `reqid` 0 leaves
/// the template's reqid out.
pub fn policy_add(
    sel_src: &str,
    sel_dst: &str,
    dir: &str,
    tmpl_src: &str,
    tmpl_dst: &str,
    reqid: u32,
    if_id: Option<u32>,
) -> Vec<String> {
    let mut a = words(&format!(
        "xfrm policy add src {sel_src} dst {sel_dst} dir {dir} tmpl src {tmpl_src} dst {tmpl_dst} \
         proto esp"
    ));
    if reqid != 0 {
        a.extend(words(&format!("reqid {reqid}")));
    }
    a.extend(words("mode tunnel"));
    a.extend(if_id_words(if_id));
    a
}

/// Borrowed view of an argument vector, as `Netns::ip` takes it.
pub fn argv(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn if_id_words(if_id: Option<u32>) -> Vec<String> {
    if_id
        .map(|id| vec!["if_id".to_string(), id.to_string()])
        .unwrap_or_default()
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_split_at_unindented_lines() {
        let text =
            "src 1.1.1.1 dst 2.2.2.2  \n\tproto esp\nsrc 3.3.3.3 dst 4.4.4.4\n\tif_id 0x524156\n";
        let b = blocks(text);
        assert_eq!(
            b,
            vec![
                "src 1.1.1.1 dst 2.2.2.2\n\tproto esp\n".to_string(),
                "src 3.3.3.3 dst 4.4.4.4\n\tif_id 0x524156\n".to_string(),
            ]
        );
        assert_eq!(ours(&b), vec![&b[1]]);
        assert_eq!(foreign(b.clone()), vec![b[0].clone()]);
    }

    #[test]
    fn builders_produce_ip_xfrm_argument_lists() {
        assert_eq!(
            state_add("192.0.2.1", "192.0.2.2", 0x4242, 7, Some(99), true).join(" "),
            "xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x4242 reqid 7 mode tunnel \
             aead rfc4106(gcm(aes)) 0x0102030405060708090a0b0c0d0e0f1011121314 128 \
             encap espinudp 4500 4500 0.0.0.0 if_id 99"
        );
        assert_eq!(
            policy_add(
                "10.2.0.0/16",
                "0.0.0.0/0",
                "fwd",
                "192.0.2.3",
                "192.0.2.1",
                0,
                None
            )
            .join(" "),
            "xfrm policy add src 10.2.0.0/16 dst 0.0.0.0/0 dir fwd tmpl src 192.0.2.3 \
             dst 192.0.2.1 proto esp mode tunnel"
        );
        assert_eq!(
            policy_add("a", "b", "out", "c", "d", 8, Some(99)).join(" "),
            "xfrm policy add src a dst b dir out tmpl src c dst d proto esp reqid 8 mode tunnel \
             if_id 99"
        );
    }
}
