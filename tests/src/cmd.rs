//! Running external commands (ip, raven-cnitool, plugins) with output captured.
//!
//! Every failure message carries the full command line, the exit status and both output
//! streams, because that is what one needs to understand a failing kernel-level test.

use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};

use crate::error::{Error, Result};

/// Captured result of a finished command.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub argv: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Turns a non-zero exit into an error that shows everything.
    pub fn into_ok(self) -> Result<Output> {
        if self.success() {
            Ok(self)
        } else {
            Err(Error::new(self.describe_failure()))
        }
    }

    /// A multi-line description of a failed command.
    pub fn describe_failure(&self) -> String {
        format!(
            "`{}` failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.argv,
            self.status,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Renders a command line for messages.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs `cmd` to completion, feeding `stdin` if given; a non-zero exit is NOT an error here.
pub fn run_command(mut cmd: Command, stdin: Option<&[u8]>) -> Result<Output> {
    let argv = describe(&cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::new(format!("cannot start `{argv}`: {e}")))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A program may exit without reading its input; its exit status tells what happened.
        match pipe.write_all(data) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(Error::new(format!("writing stdin of `{argv}`: {e}")));
            }
            _ => {}
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::new(format!("waiting for `{argv}`: {e}")))?;
    Ok(Output {
        argv,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Builds a `Command` from an argv slice.
pub fn command(argv: &[&str]) -> Result<Command> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::new("empty command line"))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    Ok(cmd)
}

/// Runs argv; returns the output whatever the exit status.
pub fn run(argv: &[&str]) -> Result<Output> {
    run_command(command(argv)?, None)
}

/// Runs argv and requires success; returns stdout.
pub fn run_ok(argv: &[&str]) -> Result<String> {
    Ok(run(argv)?.into_ok()?.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_and_status() {
        let out = run(&["sh", "-c", "echo hi; echo err >&2; exit 3"]).unwrap();
        assert_eq!(out.stdout, "hi\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
        let msg = out.into_ok().unwrap_err().to_string();
        assert!(msg.contains("sh -c") && msg.contains("err"), "{msg}");
    }

    #[test]
    fn feeds_stdin() {
        let out = run_command(command(&["cat"]).unwrap(), Some(b"abc")).unwrap();
        assert_eq!(out.stdout, "abc");
    }

    #[test]
    fn program_ignoring_stdin_is_fine() {
        let big = vec![b'x'; 1 << 20];
        let out = run_command(command(&["true"]).unwrap(), Some(&big)).unwrap();
        assert!(out.success());
    }

    #[test]
    fn missing_program_is_an_error() {
        assert!(run(&["/nonexistent/raven-test-binary"]).is_err());
        assert!(run(&[]).is_err());
    }
}
