//! The edge's relay between one HTTP/2 stream and the TCP connection it dialed, without the
//! intermediate copies of a generic `copy_bidirectional` over [`super::h2io::H2Io`]:
//! - TCP → stream: once the socket has bytes and h2 granted send capacity, at most that much
//!   is read into a buffer of that size and handed to h2 as is (no copy into a second buffer);
//! - stream → TCP: each received DATA chunk is written to the socket as is, and only then
//!   credited back to the peer, so a target that stops reading closes this stream's window
//!   (and only this stream's).
//!
//! Half-close passes through both ways (END_STREAM ↔ FIN); an error on either side ends both
//! (dropping the stream resets it).

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::h2io::h2_err;

/// Bytes read from the socket per call at most (also the largest chunk handed to h2 at once).
pub const READ_CHUNK: usize = 256 << 10;
/// Smallest read size the budget shrinks to (one TLS record's worth of payload).
pub const MIN_CHUNK: usize = 16 << 10;
/// What the receiving side of a tunnel may have to hold in partly consumed frames, spread
/// over the tunnel's active streams.
///
/// Why: a received DATA frame stays in memory whole until its last byte is consumed, so a
/// receiver holds up to one frame per stream whatever the flow-control windows say. 1,000
/// streams of 256 KiB frames made the cloud hold ≈ 250 MiB; with the frame size following
/// this budget it holds ≈ 16 MiB, while a single stream still gets 256 KiB frames.
pub const PINNED_BUDGET: usize = 16 << 20;

/// The largest chunk (hence frame) one stream sends while `active` streams share the tunnel.
pub fn chunk_size(active: usize) -> usize {
    (PINNED_BUDGET / active.max(1)).clamp(MIN_CHUNK, READ_CHUNK)
}

/// Counts the streams of one tunnel, so each can size its chunks by [`chunk_size`].
#[derive(Clone, Debug, Default)]
pub struct StreamCount(Arc<AtomicUsize>);

/// One counted stream; dropping it uncounts it.
#[derive(Debug)]
pub struct Counted(Arc<AtomicUsize>);

impl StreamCount {
    /// Counts one more stream for as long as the guard lives.
    pub fn enter(&self) -> Counted {
        self.0.fetch_add(1, Ordering::Relaxed);
        Counted(self.0.clone())
    }
}

impl Counted {
    /// The chunk size for the current number of streams.
    fn chunk(&self) -> usize {
        chunk_size(self.0.load(Ordering::Relaxed))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Relays until both directions ended (or one failed).
pub async fn relay(
    send: SendStream<Bytes>,
    recv: RecvStream,
    tcp: TcpStream,
    counted: Counted,
) -> io::Result<()> {
    let (rd, wr) = tcp.into_split();
    tokio::try_join!(stream_to_tcp(recv, wr), tcp_to_stream(rd, send, &counted)).map(|_| ())
}

async fn stream_to_tcp(mut recv: RecvStream, mut wr: OwnedWriteHalf) -> io::Result<()> {
    while let Some(chunk) = recv.data().await {
        let data = chunk.map_err(h2_err)?;
        wr.write_all(&data).await?;
        // Credit the peer only once the target took the bytes.
        let _ = recv.flow_control().release_capacity(data.len());
    }
    wr.shutdown().await
}

/// Socket → stream, holding memory only for bytes that can be sent now.
///
/// Order per round: wait until the socket has bytes (or EOF), *then* ask h2 for send
/// capacity, then read at most that much into a buffer of exactly that size. Asking only
/// when bytes wait means an idle stream (a quiet `logs -f`) holds none of the connection's
/// send window; reading only what may be sent means a stream whose window is closed holds no
/// read buffer, so memory follows the flow-control windows, not the number of streams (a
/// fixed 256 KiB buffer per stream made 1,000 busy streams cost ≈ 250 MiB).
async fn tcp_to_stream(
    rd: OwnedReadHalf,
    mut send: SendStream<Bytes>,
    counted: &Counted,
) -> io::Result<()> {
    loop {
        rd.readable().await?;
        let chunk = counted.chunk();
        send.reserve_capacity(chunk);
        let cap = wait_for_capacity(&mut send).await?;
        let mut buf = BytesMut::with_capacity(cap.min(chunk));
        match rd.try_read_buf(&mut buf) {
            Ok(0) => {
                send.reserve_capacity(0);
                return send.send_data(Bytes::new(), true).map_err(h2_err);
            }
            Ok(_) => {
                send.send_data(buf.freeze(), false).map_err(h2_err)?;
                // Keep capacity for the queued bytes only; the rest goes back to the
                // connection for other streams.
                send.reserve_capacity(0);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => send.reserve_capacity(0),
            Err(e) => return Err(e),
        }
    }
}

/// Waits until the stream has send capacity assigned (after a `reserve_capacity`).
async fn wait_for_capacity(send: &mut SendStream<Bytes>) -> io::Result<usize> {
    // Capacity already assigned is used at once: poll_capacity only reports increases.
    let mut cap = send.capacity();
    while cap == 0 {
        match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(_)) => cap = send.capacity(),
            Some(Err(e)) => return Err(h2_err(e)),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "stream closed by the peer",
                ));
            }
        }
    }
    Ok(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::tunnel::h2io::H2Io;
    use http::{Method, Request, Response};
    use tokio::io::AsyncReadExt;

    /// The chunk size per number of active streams: full size while few streams share the
    /// tunnel, then the budget split evenly, never below one TLS record.
    #[test]
    fn chunk_size_follows_the_number_of_streams() {
        for (active, want) in [
            (0, READ_CHUNK),
            (1, READ_CHUNK),
            (64, READ_CHUNK),
            (65, PINNED_BUDGET / 65),
            (256, 64 << 10),
            (1000, PINNED_BUDGET / 1000),
            (1025, MIN_CHUNK),
            (100_000, MIN_CHUNK),
        ] {
            assert_eq!(chunk_size(active), want, "{active} streams");
        }
    }

    /// The count follows the guards: entering adds one, dropping a guard removes it.
    #[test]
    fn stream_count_follows_guards() {
        let count = StreamCount::default();
        let a = count.enter();
        let b = count.enter();
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        drop(a);
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert_eq!(b.chunk(), READ_CHUNK);
        drop(b);
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
    }

    /// An h2 client stream relayed by [`relay`] to a TCP echo server: bytes come back intact
    /// in order, in chunks larger than one read, and half-close (END_STREAM → FIN → EOF →
    /// END_STREAM) ends the exchange cleanly.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relays_both_ways_and_passes_half_close_on() {
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let echo_addr = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.expect("accept");
            let (mut r, mut w) = s.split();
            tokio::io::copy(&mut r, &mut w).await.expect("echo");
            w.shutdown().await.expect("FIN");
        });
        let (a, b) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            let mut conn = h2::server::handshake(b).await.expect("server handshake");
            let (req, mut respond) = conn.accept().await.expect("a stream").expect("ok");
            tokio::spawn(async move { while conn.accept().await.is_some() {} });
            let send = respond
                .send_response(Response::new(()), false)
                .expect("200");
            let tcp = TcpStream::connect(echo_addr).await.expect("dial");
            let count = StreamCount::default();
            relay(send, req.into_body(), tcp, count.enter())
                .await
                .expect("relay");
        });
        let (client, conn) = h2::client::handshake(a).await.expect("client handshake");
        tokio::spawn(conn);
        let mut client = client.ready().await.expect("ready");
        let req = Request::builder()
            .method(Method::CONNECT)
            .uri("n:1")
            .body(())
            .expect("request");
        let (resp, send) = client.send_request(req, false).expect("send");
        let resp = resp.await.expect("response");
        let mut io = H2Io::new(send, resp.into_body());
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let (mut rd, mut wr) = tokio::io::split(&mut io);
        let expect = data.clone();
        let writer = async move {
            wr.write_all(&data).await.expect("write");
            wr.shutdown().await.expect("END_STREAM");
        };
        let reader = async move {
            let mut back = Vec::new();
            rd.read_to_end(&mut back).await.expect("read to EOF");
            back
        };
        let ((), back) = tokio::join!(writer, reader);
        assert_eq!(back.len(), expect.len());
        assert!(back == expect, "echoed bytes differ");
    }
}
