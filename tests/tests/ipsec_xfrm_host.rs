//! The IPsec driver's netlink half that this machine's kernel supports: xfrm policies (the host
//! kernel has `xfrm_user` but no ESP and no `xfrm` interfaces, so SAs and the interface are
//! proven in the kernel tier, `tests/src/kernel_scenarios/ipsec.rs`).
//!
//! Real netlink in a fresh namespace: our policies are created, read back through the dump
//! filter, updated atomically and deleted, and `cleanup` of a fresh driver removes only ours
//! while seeded foreign policies (global and with another `if_id`) stay byte for byte.

use raven_node::tunnel::ipsec::netlink::{self, Nl};
use raven_node::tunnel::ipsec::plan::{Policy, PolicyDir, PolicyId};
use raven_node::tunnel::ipsec::{IF_ID, Ipsec};
use raven_node::tunnel::{DriverOptions, TunnelDriver};
use raven_tests::netns::Netns;
use raven_tests::require::require_root;
use raven_tests::xfrm::{self, argv};

/// A fresh namespace for one test (root required: fails, never skips).
fn namespace(tag: &str) -> Netns {
    require_root();
    Netns::new(tag).expect("netns")
}

/// `ip -n <ns> ...`, panicking with the command's error.
fn ip(ns: &Netns, args: &[&str]) -> String {
    ns.ip(args).unwrap_or_else(|e| panic!("ip {args:?}: {e}"))
}

/// Runs `f` in a thread inside `ns`.
fn in_ns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    ns.run_in(f).expect("entering the namespace")
}

fn policy(dir: PolicyDir, src: &str, dst: &str, reqid: u32) -> Policy {
    let (tmpl_src, tmpl_dst) = match dir {
        PolicyDir::Out => ("192.168.0.1", "203.0.113.9"),
        _ => ("203.0.113.9", "192.168.0.1"),
    };
    Policy {
        id: PolicyId {
            dir,
            src: src.parse().expect("prefix"),
            dst: dst.parse().expect("prefix"),
        },
        tmpl_src: tmpl_src.parse().expect("ip"),
        tmpl_dst: tmpl_dst.parse().expect("ip"),
        reqid,
        priority: 0x5200 + 112,
    }
}

/// `ip xfrm policy` blocks that are not ours.
fn foreign(ns: &Netns) -> Vec<String> {
    xfrm::foreign(xfrm::blocks(&ip(ns, &["xfrm", "policy"])))
}

/// A global policy, one with our selector but another `if_id`, and a global `fwd` policy.
fn seed_foreign(ns: &Netns) {
    for args in [
        xfrm::policy_add(
            "10.99.0.0/16",
            "10.98.0.0/16",
            "out",
            "192.0.2.1",
            "192.0.2.2",
            7,
            None,
        ),
        // Same selector as one of ours, another if_id: must stay distinct.
        xfrm::policy_add(
            "0.0.0.0/0",
            "10.2.0.0/16",
            "out",
            "192.0.2.1",
            "192.0.2.3",
            8,
            Some(99),
        ),
        xfrm::policy_add(
            "10.2.0.0/16",
            "0.0.0.0/0",
            "fwd",
            "192.0.2.3",
            "192.0.2.1",
            0,
            None,
        ),
    ] {
        ip(ns, &argv(&args));
    }
}

#[test]
fn policies_round_trip_update_and_only_ours_are_touched() {
    let ns = namespace("ipsecpol");
    seed_foreign(&ns);
    let before = foreign(&ns);
    assert_eq!(before.len(), 3, "{before:?}");

    let ours = vec![
        policy(PolicyDir::Out, "0.0.0.0/0", "10.2.0.0/16", 0x1234_5671),
        policy(PolicyDir::In, "10.2.0.0/16", "0.0.0.0/0", 0),
        policy(PolicyDir::Fwd, "10.2.0.0/16", "0.0.0.0/0", 0),
    ];
    let put = ours.clone();
    let dumped = in_ns(&ns, move || {
        let mut nl = Nl::xfrm().expect("xfrm socket");
        assert!(
            netlink::dump_policies(&mut nl, IF_ID)
                .expect("dump")
                .is_empty()
        );
        for p in &put {
            netlink::put_policy(&mut nl, p, IF_ID).expect("put");
        }
        // Idempotent: putting again changes nothing.
        for p in &put {
            netlink::put_policy(&mut nl, p, IF_ID).expect("put again");
        }
        netlink::dump_policies(&mut nl, IF_ID).expect("dump")
    });
    let mut dumped_sorted = dumped.clone();
    dumped_sorted.sort_by_key(|p| p.id);
    let mut want = ours.clone();
    want.sort_by_key(|p| p.id);
    assert_eq!(dumped_sorted, want, "the dump filter returns exactly ours");
    assert_eq!(foreign(&ns), before);

    // Switching the out policy to another reqid (a rotation's step 2) is one update.
    let switched = policy(PolicyDir::Out, "0.0.0.0/0", "10.2.0.0/16", 0x1234_5672);
    let s = switched.clone();
    let after = in_ns(&ns, move || {
        let mut nl = Nl::xfrm().expect("xfrm socket");
        netlink::put_policy(&mut nl, &s, IF_ID).expect("update");
        netlink::dump_policies(&mut nl, IF_ID).expect("dump")
    });
    assert_eq!(after.len(), 3);
    assert!(after.contains(&switched), "{after:?}");
    let text = ip(&ns, &["xfrm", "policy"]);
    assert!(
        text.contains(&format!("reqid {}", 0x1234_5672u32)),
        "{text}"
    );
    assert_eq!(foreign(&ns), before);

    // Cleanup from a fresh driver (as `raven-node cleanup` does): ours go, foreign stay.
    let state = tempfile::tempdir().expect("tempdir");
    let mut options = DriverOptions::new(state.path());
    options.device = "raven-ipsec0".into();
    let left = in_ns(&ns, move || {
        let mut driver = Ipsec::new(options).expect("driver");
        driver.cleanup().expect("cleanup");
        // Twice: idempotent.
        driver.cleanup().expect("cleanup again");
        let mut nl = Nl::xfrm().expect("xfrm socket");
        netlink::dump_policies(&mut nl, IF_ID).expect("dump")
    });
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(foreign(&ns), before, "foreign policies untouched");
}

#[test]
fn cleanup_refuses_nothing_and_keeps_a_foreign_link_of_our_name() {
    // A non-xfrm link called like our device is not ours: cleanup leaves it.
    let ns = namespace("ipsecdev");
    ip(
        &ns,
        &[
            "link",
            "add",
            "raven-ipsec0",
            "type",
            "veth",
            "peer",
            "name",
            "x0",
        ],
    );
    let state = tempfile::tempdir().expect("tempdir");
    let mut options = DriverOptions::new(state.path());
    options.device = "raven-ipsec0".into();
    in_ns(&ns, move || {
        let mut driver = Ipsec::new(options).expect("driver");
        driver.cleanup().expect("cleanup");
    });
    assert!(
        ns.ip(&["link", "show", "dev", "raven-ipsec0"]).is_ok(),
        "foreign link kept"
    );
}
