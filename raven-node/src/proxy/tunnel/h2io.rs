//! One HTTP/2 stream as a byte stream ([`tokio::io::AsyncRead`] + [`tokio::io::AsyncWrite`]),
//! with flow control done right: received bytes are credited back to the peer only when the
//! reader consumed them, and writes wait for send capacity. A reader that stops reading
//! therefore stalls only its own stream (its window closes), never the connection.
//!
//! A stream may be handed out before the far end has answered its `CONNECT` ([`H2Io::early`]):
//! the caller's first bytes then travel with the request instead of one round trip later (the
//! edge buffers them in the stream's window while it dials), and the first read waits for the
//! answer. A refused dial surfaces as an I/O error carrying the [`DialError`], so callers can
//! still tell "unknown port" from "timed out" ([`DialError::in_chain`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::proxy::DialError;

/// The far end's answer to an early stream's `CONNECT`: its body, or why the dial failed.
pub type Answer = Pin<Box<dyn Future<Output = Result<RecvStream, DialError>> + Send>>;

/// The receiving half.
enum Recv {
    /// Answered: the body.
    Open(RecvStream),
    /// Not answered yet (an early stream); writes already flow.
    Awaiting(Answer),
    /// The answer was a refusal: every later read or write reports it.
    Refused(DialError),
}

/// Largest chunk handed to h2 per write (h2 splits it into frames).
const MAX_WRITE: usize = 256 * 1024;

/// An h2 stream as a byte stream.
pub struct H2Io {
    send: SendStream<Bytes>,
    recv: Recv,
    pending: Bytes,
}

impl std::fmt::Debug for H2Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Io")
            .field("stream", &self.send.stream_id())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl H2Io {
    /// Wraps the two halves of one stream.
    pub fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        Self {
            send,
            recv: Recv::Open(recv),
            pending: Bytes::new(),
        }
    }

    /// A stream whose `CONNECT` is still unanswered: writes go out at once, reads wait for
    /// `answer`.
    pub fn early(send: SendStream<Bytes>, answer: Answer) -> Self {
        Self {
            send,
            recv: Recv::Awaiting(answer),
            pending: Bytes::new(),
        }
    }

    /// Drives an awaited answer: `Ready(Ok)` once the body is there, `Ready(Err)` carrying
    /// the refusal (every time it is asked).
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.recv {
            Recv::Open(_) => Poll::Ready(Ok(())),
            Recv::Refused(e) => Poll::Ready(Err(io::Error::other(e.clone()))),
            Recv::Awaiting(answer) => match ready!(answer.as_mut().poll(cx)) {
                Ok(body) => {
                    self.recv = Recv::Open(body);
                    Poll::Ready(Ok(()))
                }
                Err(e) => {
                    let err = io::Error::other(e.clone());
                    self.recv = Recv::Refused(e);
                    Poll::Ready(Err(err))
                }
            },
        }
    }
}

/// An h2 error as the I/O error a byte-stream user expects (EOF for a clean close).
pub fn h2_err(e: h2::Error) -> io::Error {
    if e.is_io() {
        e.into_io()
            .unwrap_or_else(|| io::Error::other("h2 I/O error"))
    } else if e.reason() == Some(h2::Reason::NO_ERROR) {
        io::Error::new(io::ErrorKind::UnexpectedEof, "stream closed")
    } else {
        io::Error::new(io::ErrorKind::ConnectionReset, e)
    }
}

impl AsyncRead for H2Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_answer(cx))?;
        let me = &mut *self;
        let Recv::Open(recv) = &mut me.recv else {
            unreachable!("poll_answer returned Ok: the body is there");
        };
        loop {
            if !me.pending.is_empty() {
                let n = me.pending.len().min(buf.remaining());
                buf.put_slice(&me.pending[..n]);
                me.pending.advance(n);
                // Credit the peer only now: the bytes left h2's buffer.
                let _ = recv.flow_control().release_capacity(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(recv.poll_data(cx)) {
                Some(Ok(data)) => me.pending = data,
                Some(Err(e)) => return Poll::Ready(Err(h2_err(e))),
                None => return Poll::Ready(Ok(())), // EOF
            }
        }
    }
}

impl H2Io {
    /// A failed write on an early stream usually means the far end refused the `CONNECT`
    /// (its answer arrives before its reset on the same connection): report the refusal
    /// rather than a bare broken pipe.
    fn write_error(&mut self, cx: &mut Context<'_>, e: io::Error) -> io::Error {
        if matches!(self.recv, Recv::Awaiting(_) | Recv::Refused(_))
            && let Poll::Ready(Err(refusal)) = self.poll_answer(cx)
        {
            return refusal;
        }
        e
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let want = buf.len().min(MAX_WRITE);
        self.send.reserve_capacity(want);
        loop {
            // Capacity already assigned is used at once: poll_capacity only reports increases.
            let cap = self.send.capacity();
            if cap > 0 {
                let n = cap.min(want);
                return match self
                    .send
                    .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                {
                    Ok(()) => Poll::Ready(Ok(n)),
                    Err(e) => Poll::Ready(Err(self.write_error(cx, h2_err(e)))),
                };
            }
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Poll::Ready(Err(self.write_error(cx, h2_err(e)))),
                None => {
                    let closed =
                        io::Error::new(io::ErrorKind::BrokenPipe, "stream closed by the peer");
                    return Poll::Ready(Err(self.write_error(cx, closed)));
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // h2 sends buffered data as soon as the connection task runs.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Half-close: END_STREAM; reading continues until the peer ends its side.
        self.send.reserve_capacity(0);
        match self.send.send_data(Bytes::new(), true) {
            Ok(()) => Poll::Ready(Ok(())),
            // Already closed: shutdown is idempotent.
            Err(_) => Poll::Ready(Ok(())),
        }
    }
}
