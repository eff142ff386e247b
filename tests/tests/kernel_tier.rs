//! The kernel tier: one QEMU boot of Debian's kernel runs every registered kernel scenario
//! (`raven_tests::kernel_scenarios::ALL`, or `RAVEN_KERNEL_SCENARIOS=a,b`), and this test fails
//! listing every scenario that failed or never reported. Contract: `raven_tests::vm`.

use std::path::Path;

use raven_tests::{kernel_scenarios, require_root, vm};

#[test]
fn every_kernel_scenario_passes_in_debians_kernel() {
    require_root();
    let names = kernel_scenarios::selected();
    let runner = Path::new(env!("CARGO_BIN_EXE_raven-kernel-scenarios"));
    let report = vm::run_scenarios(runner, &names)
        .unwrap_or_else(|e| panic!("the kernel tier could not boot its VM: {e}"));
    let summary = report.summary();
    eprintln!("{summary}");
    assert!(
        report.run.boot.is_some(),
        "the VM never booted:\n{}",
        report.run.console_tail(40)
    );
    assert!(report.all_passed(), "{summary}");
}
