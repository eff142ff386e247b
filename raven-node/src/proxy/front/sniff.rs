//! A read-side tap between the caller's connection and hyper that scans every raw request
//! head with [`head::scan_raw_head`] before hyper parses it, and queues one [`Verdict`] per
//! head for the request handler (hyper calls the handler in the order the heads arrive).
//!
//! The tap never changes bytes. It follows the connection through bodiless requests only:
//! after a head announcing a body or a protocol switch it stops scanning and the verdict asks
//! the handler to close the connection after the response, so it never has to re-implement
//! body framing. Requests with bodies are rare on kubelet ports (`/run`, `/checkpoint`).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::head::{self, RawHead, Rejection};

/// What the raw scan says about one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// A refusal the parsed view cannot show.
    pub problem: Option<Rejection>,
    /// Close the connection after this response (the scan stopped here).
    pub close_after: bool,
}

/// Verdicts in arrival order, shared with the handler.
pub type Verdicts = Arc<Mutex<VecDeque<Verdict>>>;

/// The tap.
#[derive(Debug)]
pub struct Sniff<I> {
    inner: I,
    pending: Vec<u8>,
    scanning: bool,
    verdicts: Verdicts,
}

impl<I> Sniff<I> {
    /// Wraps `inner`; verdicts go to `verdicts`.
    pub fn new(inner: I, verdicts: Verdicts) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            scanning: true,
            verdicts,
        }
    }

    fn push(&self, verdict: Verdict) {
        if let Ok(mut q) = self.verdicts.lock() {
            q.push_back(verdict);
        }
    }

    fn scan(&mut self, fresh: &[u8]) {
        if !self.scanning {
            return;
        }
        self.pending.extend_from_slice(fresh);
        loop {
            match head::scan_raw_head(&self.pending) {
                RawHead::Partial => return,
                RawHead::Invalid(rejection) => {
                    self.push(Verdict {
                        problem: Some(rejection),
                        close_after: true,
                    });
                    self.stop();
                    return;
                }
                RawHead::Complete {
                    len,
                    problem,
                    ends_scan,
                } => {
                    self.push(Verdict {
                        problem,
                        close_after: ends_scan,
                    });
                    if ends_scan {
                        self.stop();
                        return;
                    }
                    self.pending.drain(..len);
                    if self.pending.is_empty() {
                        return;
                    }
                }
            }
        }
    }

    fn stop(&mut self) {
        self.scanning = false;
        self.pending = Vec::new();
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Sniff<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let fresh = &buf.filled()[before..];
            if !fresh.is_empty() {
                this.scan(fresh);
            }
        }
        poll
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Sniff<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(chunks: &[&[u8]]) -> Vec<Verdict> {
        let verdicts = Verdicts::default();
        let mut s = Sniff::new((), verdicts.clone());
        for c in chunks {
            s.scan(c);
        }
        verdicts.lock().unwrap().iter().cloned().collect()
    }

    #[test]
    fn follows_pipelined_bodiless_requests_split_anywhere() {
        let two = b"GET /a HTTP/1.1\r\nHost: n:1\r\n\r\nGET /b HTTP/1.1\r\nHost: n:1\r\n\r\n";
        for split in 0..two.len() {
            let v = scan_all(&[&two[..split], &two[split..]]);
            assert_eq!(v.len(), 2, "split at {split}");
            assert!(v.iter().all(|v| v.problem.is_none() && !v.close_after));
        }
    }

    #[test]
    fn stops_after_a_body_and_flags_cl_with_te() {
        let v = scan_all(&[b"POST / HTTP/1.1\r\nHost: n:1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n"]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].problem.as_ref().map(|p| p.status.as_u16()), Some(400));
        assert!(v[0].close_after);
        let v = scan_all(&[
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
        ]);
        assert_eq!(v[0].problem.as_ref().map(|p| p.status.as_u16()), Some(400));
        let v =
            scan_all(&[b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n"]);
        assert_eq!(
            v,
            [Verdict {
                problem: None,
                close_after: true
            }]
        );
    }

    #[test]
    fn obs_fold_is_invalid() {
        let v = scan_all(&[b"GET / HTTP/1.1\r\nHost: n:1\r\nX: a\r\n b\r\n\r\n"]);
        assert_eq!(v.len(), 1);
        assert!(v[0].problem.is_some() && v[0].close_after);
    }
}
