//! The edge's relay between one HTTP/2 stream and the TCP connection it dialed, without the
//! intermediate copies of a generic `copy_bidirectional` over [`super::h2io::H2Io`]:
//! - TCP → stream: bytes are read into a [`BytesMut`] and handed to h2 as frozen [`Bytes`]
//!   slices of it (no copy into a second buffer);
//! - stream → TCP: each received DATA chunk is written to the socket as is, and only then
//!   credited back to the peer, so a target that stops reading closes this stream's window
//!   (and only this stream's).
//!
//! Half-close passes through both ways (END_STREAM ↔ FIN); an error on either side ends both
//! (dropping the stream resets it).

use std::future::poll_fn;
use std::io;

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::h2io::h2_err;

/// Bytes read from the socket per call at most (also the largest chunk handed to h2 at once).
pub const READ_CHUNK: usize = 256 << 10;
/// Below this much free space the read buffer is replaced rather than read into: tiny reads
/// would make tiny frames.
const MIN_FREE: usize = 16 << 10;

/// Relays until both directions ended (or one failed).
pub async fn relay(send: SendStream<Bytes>, recv: RecvStream, tcp: TcpStream) -> io::Result<()> {
    let (rd, wr) = tcp.into_split();
    tokio::try_join!(stream_to_tcp(recv, wr), tcp_to_stream(rd, send)).map(|_| ())
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

async fn tcp_to_stream(mut rd: OwnedReadHalf, mut send: SendStream<Bytes>) -> io::Result<()> {
    let mut buf = BytesMut::new();
    loop {
        if buf.capacity() - buf.len() < MIN_FREE {
            // The previous buffer's bytes are still owned by h2 (frozen slices); start a new one.
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
        if rd.read_buf(&mut buf).await? == 0 {
            send.reserve_capacity(0);
            return send.send_data(Bytes::new(), true).map_err(h2_err);
        }
        send_all(&mut send, buf.split().freeze()).await?;
    }
}

/// Sends `data` as the stream's window and the connection allow, without copying it.
pub async fn send_all(send: &mut SendStream<Bytes>, mut data: Bytes) -> io::Result<()> {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
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
        let chunk = data.split_to(cap.min(data.len()));
        send.send_data(chunk, false).map_err(h2_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::tunnel::h2io::H2Io;
    use http::{Method, Request, Response};

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
            relay(send, req.into_body(), tcp).await.expect("relay");
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
