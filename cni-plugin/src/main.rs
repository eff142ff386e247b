//! The `raven-cni` binary: environment and stdin in, one JSON document out.

use std::io::{Read, Write};
use std::process::ExitCode;

use raven_cni::{
    Outcome,
    env::Env,
    error::{CniError, code},
};

/// Largest configuration we read; real ones are a few KiB.
const MAX_STDIN: u64 = 4 << 20;

fn main() -> ExitCode {
    let env = Env::from_process();
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().take(MAX_STDIN).read_to_end(&mut stdin) {
        Ok(_) => raven_cni::run(&env, &stdin),
        Err(e) => Outcome::Failure(
            CniError::new(code::IO, "failed to read stdin", e.to_string()).to_json(None),
        ),
    };
    let (text, status) = match outcome {
        Outcome::Success(text) => (text, ExitCode::SUCCESS),
        Outcome::Failure(text) => (text, ExitCode::FAILURE),
    };
    let mut stdout = std::io::stdout().lock();
    if !text.is_empty()
        && writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .is_err()
    {
        return ExitCode::FAILURE;
    }
    status
}
