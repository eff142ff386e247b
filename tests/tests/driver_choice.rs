//! Host side of the automatic driver choice (issue 7): on this machine's kernel (no WireGuard
//! module) `--tunnel-driver auto` must pick the userspace driver; on a kernel with WireGuard it
//! must pick the kernel one (the kernel tier proves that case in its VM).

use raven_tests::kernel_scenarios::driver_auto::observe_auto_choice;

#[test]
fn auto_picks_the_driver_the_kernel_supports() {
    raven_tests::require_root();
    raven_tests::require::require_tool("curl");
    let choice = observe_auto_choice().unwrap_or_else(|e| panic!("{e}"));
    let want = if choice.kernel_has_wireguard {
        "wireguard-kernel"
    } else {
        "wireguard-userspace"
    };
    assert_eq!(choice.driver, want, "{choice:?}");
}
