//! The TCP connection under a tunnel's TLS session, tuned for throughput.
//!
//! Why a read buffer under rustls: rustls pulls ciphertext from its transport at most 4 KiB
//! per call (`read_tls`), so reading straight from the socket costs four or more `recv`
//! system calls per 16 KiB TLS record. A [`BufReader`] of [`READ_BUFFER`] turns them into one
//! `recv` per socket-buffer's worth and a memcpy per record. Writes pass straight through.
//!
//! Why a larger rustls send buffer: with the default 64 KiB limit a 256 KiB HTTP/2 DATA
//! frame is encrypted and written in four rounds (four `writev`s and four wakeups); with
//! [`TLS_SEND_BUFFER`] it is one. The buffer is per tunnel, not per stream, so it is bounded.

use tokio::io::BufReader;
use tokio::net::TcpStream;

/// Ciphertext read buffer per tunnel (one per TCP connection, both ends).
pub const READ_BUFFER: usize = 256 << 10;
/// Encrypted bytes rustls may queue for the socket per tunnel (default 64 KiB).
pub const TLS_SEND_BUFFER: usize = 512 << 10;

/// The byte stream TLS runs over.
pub type Transport = BufReader<TcpStream>;

/// Wraps a connected tunnel socket: `TCP_NODELAY` (HTTP/2 frames and PINGs must not wait for
/// Nagle) and the read buffer.
pub fn wrap(tcp: TcpStream) -> Transport {
    let _ = tcp.set_nodelay(true);
    BufReader::with_capacity(READ_BUFFER, tcp)
}

/// Raises the send buffer limit of an established session.
pub fn tune<D>(conn: &mut rustls::ConnectionCommon<D>) {
    conn.set_buffer_limit(Some(TLS_SEND_BUFFER));
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The buffered transport is transparent both ways (what goes in comes out, in order),
    /// also for reads smaller than the buffer as rustls makes them.
    #[tokio::test]
    async fn wrapped_socket_is_transparent() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        let peer = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            s.write_all(&data).await.expect("write");
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.expect("read back");
            back
        });
        let mut t = wrap(TcpStream::connect(addr).await.expect("connect"));
        let mut got = vec![0u8; expect.len()];
        let mut off = 0;
        while off < got.len() {
            let end = (off + 4096).min(got.len());
            let n = t.read(&mut got[off..end]).await.expect("read");
            assert!(n > 0, "early EOF at {off}");
            off += n;
        }
        assert_eq!(got, expect);
        t.write_all(b"pong").await.expect("write through");
        t.shutdown().await.expect("shutdown");
        assert_eq!(peer.await.expect("peer"), b"pong");
    }
}
