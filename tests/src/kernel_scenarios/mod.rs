//! Scenarios that run inside the kernel tier's VM (see [`crate::vm`] for the contract), and
//! the in-VM runner's result format.
//!
//! The registry [`ALL`] is the only list: the in-VM binary `raven-kernel-scenarios` dispatches
//! by name from it, and the host test `tests/tests/kernel_tier.rs` expects one result per entry.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::error::{Context, Error, Result};
use crate::lab::{Lab, LabOptions};

pub mod common;
pub mod driver_auto;
pub mod ipsec;
pub mod kernel_features;
pub mod wg_kernel;

/// Tag of a result line.
pub const RESULT_TAG: &str = "RAVEN-SCENARIO";

/// One scenario.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Unique name (`[a-z0-9-]`), used on the command line and in result lines.
    pub name: &'static str,
    /// One line saying what it proves.
    pub about: &'static str,
    /// The scenario; `Err` or a panic is a failure.
    pub run: fn(&mut Ctx) -> Result<()>,
}

/// Every scenario, in run order. Add yours here (one line) and a `pub mod` above.
pub const ALL: &[Scenario] = &[
    kernel_features::SCENARIO,
    driver_auto::SCENARIO,
    wg_kernel::TCP,
    wg_kernel::WIRE,
    wg_kernel::RESTART,
    wg_kernel::SWITCH,
    wg_kernel::CLEANUP,
    ipsec::POD_TO_POD,
    ipsec::ROTATION,
    ipsec::RESTART,
    ipsec::CLEANUP,
];

/// Looks a scenario up by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

/// Scenario names selected by `RAVEN_KERNEL_SCENARIOS` (comma-separated), or all of them.
pub fn selected() -> Vec<&'static str> {
    match std::env::var("RAVEN_KERNEL_SCENARIOS") {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                find(s).map(|sc| sc.name).unwrap_or_else(|| {
                    panic!(
                        "RAVEN_KERNEL_SCENARIOS names unknown scenario {s:?}; known: {}",
                        ALL.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                    )
                })
            })
            .collect(),
        _ => ALL.iter().map(|s| s.name).collect(),
    }
}

/// State shared by the scenarios of one VM run: labs built once per option set.
#[derive(Debug, Default)]
pub struct Ctx {
    labs: Vec<(LabOptions, Lab)>,
}

impl Ctx {
    /// The lab built with `options` (daemons started), building it on first use.
    pub fn lab(&mut self, options: &LabOptions) -> Result<&mut Lab> {
        if let Some(i) = self.labs.iter().position(|(o, _)| o == options) {
            return Ok(&mut self.labs[i].1);
        }
        let mut lab = Lab::build_with(options.clone())?;
        lab.start_daemons()?;
        self.labs.push((options.clone(), lab));
        let last = self.labs.len() - 1;
        Ok(&mut self.labs[last].1)
    }

    /// Drops (tears down) the lab built with `options`, if any.
    pub fn discard_lab(&mut self, options: &LabOptions) {
        self.labs.retain(|(o, _)| o != options);
    }
}

/// Runs the named scenarios in order, appending a result line per scenario to
/// `<out>/results.txt` (and stdout) and the failure message to `<out>/<name>.log`. Returns
/// whether all passed.
pub fn run_all(names: &[String], out: &Path) -> Result<bool> {
    std::fs::create_dir_all(out).context(|| format!("creating {}", out.display()))?;
    let mut ctx = Ctx::default();
    let mut all = true;
    for name in names {
        let scenario = find(name).ok_or_else(|| Error::new(format!("unknown scenario {name}")))?;
        println!("=== {} ({})", scenario.name, scenario.about);
        let start = Instant::now();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (scenario.run)(&mut ctx)));
        let millis = start.elapsed().as_millis();
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(panic) => Some(format!(
                "panicked: {}",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        };
        if let Some(msg) = &failure {
            all = false;
            println!("{msg}");
            std::fs::write(out.join(format!("{name}.log")), msg)
                .context(|| format!("writing {name}.log"))?;
        }
        let line = format!(
            "{RESULT_TAG} {name} {} {millis}\n",
            if failure.is_none() { "PASS" } else { "FAIL" }
        );
        print!("{line}");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out.join("results.txt"))
            .context(|| "opening results.txt".to_string())?;
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_all())
            .context(|| "writing results.txt".to_string())?;
    }
    Ok(all)
}
