//! `raven-kernel-scenarios`: the in-VM runner of the kernel tier (see `raven_tests::vm`).
//!
//! `raven-kernel-scenarios list` prints the registered scenarios;
//! `raven-kernel-scenarios run --out DIR [NAME...]` runs the named ones (all when none) and
//! reports each as a `RAVEN-SCENARIO <name> PASS|FAIL <millis>` line in `DIR/results.txt`.
//! It can also run on any root shell whose kernel has the modules, without the VM.

use std::path::PathBuf;

use raven_tests::kernel_scenarios::{ALL, run_all};

const USAGE: &str = "usage: raven-kernel-scenarios list
       raven-kernel-scenarios run --out DIR [NAME...]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("list") => {
            for s in ALL {
                println!("{:<32} {}", s.name, s.about);
            }
            0
        }
        Some("run") if args.get(1).map(String::as_str) == Some("--out") && args.len() >= 3 => {
            let out = PathBuf::from(&args[2]);
            let mut names: Vec<String> = args[3..].to_vec();
            if names.is_empty() {
                names = ALL.iter().map(|s| s.name.to_string()).collect();
            }
            match run_all(&names, &out) {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(e) => {
                    eprintln!("raven-kernel-scenarios: {e}");
                    2
                }
            }
        }
        _ => {
            eprintln!("{USAGE}");
            2
        }
    };
    std::process::exit(code);
}
