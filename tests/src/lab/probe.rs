//! Observing the running lab: the daemons' HTTP endpoints and metrics, and waiting for a
//! condition.

use std::time::{Duration, Instant};

use super::{Lab, METRICS_ADDR};
use crate::error::{Error, Result};

impl Lab {
    /// GET `path` from node `i`'s daemon (status code and body), with curl in the node netns.
    pub fn http_get(&self, i: usize, path: &str) -> Result<(u16, String)> {
        let url = format!("http://{METRICS_ADDR}{path}");
        let out = self.nodes[i].netns.exec_output(&[
            "curl",
            "-s",
            "-m",
            "2",
            "-w",
            "\n%{http_code}",
            &url,
        ])?;
        let text = out.stdout;
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        Ok((code.trim().parse().unwrap_or(0), body.to_string()))
    }

    /// One metric value (first sample whose line starts with `prefix`) of node `i`.
    pub fn metric(&self, i: usize, prefix: &str) -> Result<Option<f64>> {
        let (code, body) = self.http_get(i, "/metrics")?;
        if code != 200 {
            return Err(Error::new(format!("/metrics answered {code}: {body}")));
        }
        Ok(body
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok()))
    }

    /// Waits until `f` returns true, polling every 100 ms; the error says what was awaited.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> bool,
    ) -> Result<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f() {
                return Ok(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(Error::new(format!(
            "timed out after {timeout:?} waiting for {what}\n{}",
            self.logs()
        )))
    }
}
