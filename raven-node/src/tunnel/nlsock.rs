//! A minimal synchronous netlink request/response helper over `netlink-sys`, shared by the
//! kernel tunnel drivers: rtnetlink and generic netlink for kernel WireGuard, rtnetlink and
//! `NETLINK_XFRM` for IPsec.
//!
//! The tunnel trait is synchronous and a request here is one round trip, so a blocking socket
//! per driver is simpler than an async connection on a runtime (and keeps the socket in the
//! namespace the driver was opened in).

use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable,
};
use netlink_sys::{Socket, SocketAddr};

/// A bound netlink socket of one protocol with a sequence counter.
#[derive(Debug)]
pub struct NlSocket {
    socket: Socket,
    seq: u32,
}

impl NlSocket {
    /// Opens and binds a socket of `protocol` (`NETLINK_ROUTE`, `NETLINK_GENERIC`,
    /// `NETLINK_XFRM`).
    pub fn open(protocol: isize) -> io::Result<Self> {
        let mut socket = Socket::new(protocol)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Extended acks make the kernel's error messages more specific where it has them.
        let _ = socket.set_ext_ack(true);
        Ok(Self { socket, seq: 0 })
    }

    /// Sends `payload` as a request (`dump` adds `NLM_F_DUMP`, otherwise `NLM_F_ACK`) and
    /// returns every inner message of the answer. A netlink error becomes an `io::Error`
    /// with the kernel's errno.
    pub fn request<T>(&mut self, payload: T, extra_flags: u16, dump: bool) -> io::Result<Vec<T>>
    where
        T: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
    {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        // Non-dump requests always ask for the ack: it ends the answer (a GET's reply alone
        // would leave us waiting).
        header.flags = NLM_F_REQUEST | extra_flags | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.socket.send(&buf, 0)?;

        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<T>::deserialize(&data[offset..]).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("netlink reply: {e}"))
                })?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "netlink reply of length 0",
                    ));
                }
                offset += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(_) => Err(e.to_io()),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    _ => {}
                }
            }
        }
    }
}
