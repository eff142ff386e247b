//! Synchronous netlink for the IPsec driver: xfrm SAs and policies (`NETLINK_XFRM`, messages
//! from the rust-netlink `netlink-packet-xfrm` crate, which builds on our netlink-packet-core
//! 0.9) and the `xfrm` interface (`NETLINK_ROUTE`).
//!
//! Observation dumps every SA and policy (the kernel cannot filter dumps by `if_id`) and keeps
//! only those carrying our `if_id`; every write names one object. Nothing here ever sends a
//! flush.

use std::fmt::Debug;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use ipnetwork::IpNetwork;
use netlink_packet_core::{
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NetlinkDeserializable, NetlinkSerializable,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoXfrm, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_xfrm::constants::{
    AF_INET, AF_INET6, IPPROTO_ESP, UDP_ENCAP_ESPINUDP, XFRM_MODE_TUNNEL, XFRM_POLICY_ALLOW,
    XFRM_POLICY_FWD, XFRM_POLICY_IN, XFRM_POLICY_OUT, XFRM_STATE_AF_UNSPEC, XFRM_STATE_ESN,
};
use netlink_packet_xfrm::policy::{DelGetMessage as PolicyId_, ModifyMessage as PolicyMod};
use netlink_packet_xfrm::state::{DelGetMessage as SaDelGet, GetDumpMessage, ModifyMessage};
use netlink_packet_xfrm::{
    Address, AlgAead, EncapTmpl, Id, ReplayEsn, Selector, UserPolicyId, UserPolicyInfo, UserSaId,
    UserSaInfo, UserTemplate, XfrmAttrs, XfrmMessage,
};
use netlink_sys::protocols;

use super::keys::{AEAD_KEY_LEN, AeadKey};
use super::plan::{Policy, PolicyDir, PolicyId, Sa, SaId};
use crate::tunnel::nlsock::NlSocket;

/// The AEAD: AES-256-GCM with a 16-byte ICV, as RFC 4106 ESP.
const AEAD_NAME: &str = "rfc4106(gcm(aes))";
/// ICV length in bits.
const ICV_BITS: u32 = 128;
/// Anti-replay window in packets (ESN bitmap of 4 × 32 bits).
pub const REPLAY_WINDOW: u32 = 128;

/// An open netlink socket of one family in the caller's network namespace.
#[derive(Debug)]
pub struct Nl {
    socket: NlSocket,
}

impl Nl {
    fn open(protocol: isize) -> io::Result<Self> {
        Ok(Self {
            socket: NlSocket::open(protocol)?,
        })
    }

    /// `NETLINK_XFRM`.
    pub fn xfrm() -> io::Result<Self> {
        Self::open(protocols::NETLINK_XFRM)
    }

    /// `NETLINK_ROUTE`.
    pub fn route() -> io::Result<Self> {
        Self::open(protocols::NETLINK_ROUTE)
    }

    /// Sends one request and collects the answers until the ack (or `NLMSG_DONE` for a dump).
    fn request<I>(&mut self, payload: I, flags: u16) -> io::Result<Vec<I>>
    where
        I: NetlinkSerializable + NetlinkDeserializable + Debug,
    {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        self.socket.request(payload, flags & !NLM_F_DUMP, dump)
    }

    /// Sends a request that expects only an ack.
    fn ack<I>(&mut self, payload: I, flags: u16) -> io::Result<()>
    where
        I: NetlinkSerializable + NetlinkDeserializable + Debug,
    {
        self.request(payload, flags).map(|_| ())
    }
}

fn address(ip: IpAddr) -> Address {
    Address::from_ip(&ip)
}

fn family(ip: IpAddr) -> u16 {
    if ip.is_ipv4() { AF_INET } else { AF_INET6 }
}

fn ip_of(addr: &Address, family: u16) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(addr.to_ipv4())),
        AF_INET6 => Some(IpAddr::V6(addr.to_ipv6())),
        _ => None,
    }
}

/// An SA as observed, with the counters the driver reports.
#[derive(Clone, Debug)]
pub struct ObservedSa {
    /// The SA in the planner's terms.
    pub sa: Sa,
    /// Bytes processed (payload before encryption / after decryption).
    pub bytes: u64,
    /// Packets processed.
    pub packets: u64,
    /// Packets dropped by the anti-replay check or the ICV check (replay, outside the
    /// window, integrity failure).
    pub drops: u64,
    /// When it was added.
    pub added: Option<SystemTime>,
}

/// An SA message of the kernel that carries `if_id`, in our terms; `None` for foreign ones
/// and for anything we would never have created (not ESP tunnel mode).
fn parse_sa(msg: &ModifyMessage, if_id: u32) -> Option<ObservedSa> {
    let mut ours = false;
    let mut key = None;
    let mut sport = 0;
    let mut dport = 0;
    for nla in &msg.nlas {
        match nla {
            XfrmAttrs::IfId(id) => ours = *id == if_id,
            XfrmAttrs::EncryptionAlgAead(a) if a.alg_key.len() == AEAD_KEY_LEN => {
                let mut k = [0u8; AEAD_KEY_LEN];
                k.copy_from_slice(&a.alg_key);
                // An all-zero key is how a redacting kernel answers.
                key = (k != [0u8; AEAD_KEY_LEN]).then_some(AeadKey(k));
            }
            XfrmAttrs::EncapsulationTemplate(e) => {
                sport = e.encap_sport;
                dport = e.encap_dport;
            }
            _ => {}
        }
    }
    let info = &msg.user_sa_info;
    if !ours || info.id.proto != IPPROTO_ESP || info.mode != XFRM_MODE_TUNNEL {
        return None;
    }
    let dst = ip_of(&info.id.daddr, info.family)?;
    let src = ip_of(&info.saddr, info.family)?;
    Some(ObservedSa {
        sa: Sa {
            id: SaId {
                dst,
                spi: info.id.spi,
            },
            src,
            reqid: info.reqid,
            sport,
            dport,
            key,
        },
        bytes: info.lifetime_cur.bytes,
        packets: info.lifetime_cur.packets,
        drops: u64::from(info.stats.replay)
            + u64::from(info.stats.replay_window)
            + u64::from(info.stats.integrity_failed),
        added: (info.lifetime_cur.add_time > 0)
            .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(info.lifetime_cur.add_time)),
    })
}

fn prefix_of(addr: &Address, len: u8, family: u16) -> Option<IpNetwork> {
    IpNetwork::new(ip_of(addr, family)?, len).ok()
}

fn parse_policy(msg: &PolicyMod, if_id: u32) -> Option<Policy> {
    let mut ours = false;
    let mut tmpl = None;
    for nla in &msg.nlas {
        match nla {
            XfrmAttrs::IfId(id) => ours = *id == if_id,
            XfrmAttrs::Template(t) if t.len() == 1 => tmpl = Some(t[0]),
            _ => {}
        }
    }
    if !ours {
        return None;
    }
    let info = &msg.user_policy_info;
    let dir = match info.direction {
        XFRM_POLICY_IN => PolicyDir::In,
        XFRM_POLICY_OUT => PolicyDir::Out,
        XFRM_POLICY_FWD => PolicyDir::Fwd,
        _ => return None,
    };
    let sel = &info.selector;
    let id = PolicyId {
        dir,
        src: prefix_of(&sel.saddr, sel.prefixlen_s, sel.family)?,
        dst: prefix_of(&sel.daddr, sel.prefixlen_d, sel.family)?,
    };
    // A policy of ours without exactly one template is stale; report it with an unspecified
    // template so the diff rewrites it.
    let unspecified = if id.src.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    let (tmpl_src, tmpl_dst, reqid) = match tmpl {
        Some(t) => (
            ip_of(&t.saddr, t.family).unwrap_or(unspecified),
            ip_of(&t.id.daddr, t.family).unwrap_or(unspecified),
            t.reqid,
        ),
        None => (unspecified, unspecified, u32::MAX),
    };
    Some(Policy {
        id,
        tmpl_src,
        tmpl_dst,
        reqid,
        priority: info.priority,
    })
}

/// Our SAs (by `if_id`).
pub fn dump_sas(nl: &mut Nl, if_id: u32) -> io::Result<Vec<ObservedSa>> {
    let replies = nl.request(
        XfrmMessage::GetDumpSa(GetDumpMessage::default()),
        NLM_F_DUMP,
    )?;
    Ok(replies
        .iter()
        .filter_map(|m| match m {
            XfrmMessage::AddSa(sa) => parse_sa(sa, if_id),
            _ => None,
        })
        .collect())
}

/// Our policies (by `if_id`).
pub fn dump_policies(nl: &mut Nl, if_id: u32) -> io::Result<Vec<Policy>> {
    let replies = nl.request(XfrmMessage::GetPolicy(PolicyId_::default()), NLM_F_DUMP)?;
    Ok(replies
        .iter()
        .filter_map(|m| match m {
            XfrmMessage::AddPolicy(p) => parse_policy(p, if_id),
            _ => None,
        })
        .collect())
}

/// Adds one SA: ESP tunnel mode, ESN with a [`REPLAY_WINDOW`] window, AES-GCM, ESP-in-UDP,
/// any inner family, our `if_id`.
pub fn add_sa(nl: &mut Nl, sa: &Sa, if_id: u32) -> io::Result<()> {
    let key = sa
        .key
        .as_ref()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "an SA to add needs its key"))?;
    let mut name = [0u8; 64];
    name[..AEAD_NAME.len()].copy_from_slice(AEAD_NAME.as_bytes());
    let info = UserSaInfo {
        selector: Selector::default(),
        id: Id {
            daddr: address(sa.id.dst),
            spi: sa.id.spi,
            proto: IPPROTO_ESP,
        },
        saddr: address(sa.src),
        reqid: sa.reqid,
        family: family(sa.id.dst),
        mode: XFRM_MODE_TUNNEL,
        replay_window: 0,
        flags: XFRM_STATE_ESN | XFRM_STATE_AF_UNSPEC,
        ..UserSaInfo::default()
    };
    let nlas = vec![
        XfrmAttrs::EncryptionAlgAead(AlgAead {
            alg_name: name,
            alg_key_len: (AEAD_KEY_LEN * 8) as u32,
            alg_icv_len: ICV_BITS,
            alg_key: key.0.to_vec(),
        }),
        XfrmAttrs::EncapsulationTemplate(EncapTmpl {
            encap_type: UDP_ENCAP_ESPINUDP,
            encap_sport: sa.sport,
            encap_dport: sa.dport,
            encap_oa: Address::default(),
        }),
        XfrmAttrs::ReplayStateEsn(ReplayEsn {
            bmp_len: REPLAY_WINDOW / 32,
            replay_window: REPLAY_WINDOW,
            bmp: vec![0; (REPLAY_WINDOW / 32) as usize],
            ..ReplayEsn::default()
        }),
        XfrmAttrs::IfId(if_id),
    ];
    nl.ack(
        XfrmMessage::AddSa(ModifyMessage {
            user_sa_info: info,
            nlas,
        }),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Deletes one SA (ESRCH, already gone, is success).
pub fn del_sa(nl: &mut Nl, id: &SaId, if_id: u32) -> io::Result<()> {
    let msg = XfrmMessage::DeleteSa(SaDelGet {
        user_sa_id: UserSaId {
            daddr: address(id.dst),
            spi: id.spi,
            family: family(id.dst),
            proto: IPPROTO_ESP,
        },
        nlas: vec![XfrmAttrs::IfId(if_id)],
    });
    match nl.ack(msg, 0) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other,
    }
}

fn selector(id: &PolicyId) -> Selector {
    let mut sel = Selector::default();
    sel.source_prefix(&id.src.network(), id.src.prefix());
    sel.destination_prefix(&id.dst.network(), id.dst.prefix());
    sel.family = family(id.src.ip());
    sel
}

fn direction(dir: PolicyDir) -> u8 {
    match dir {
        PolicyDir::In => XFRM_POLICY_IN,
        PolicyDir::Out => XFRM_POLICY_OUT,
        PolicyDir::Fwd => XFRM_POLICY_FWD,
    }
}

/// Creates or atomically replaces one policy (`XFRM_MSG_UPDPOLICY`).
pub fn put_policy(nl: &mut Nl, p: &Policy, if_id: u32) -> io::Result<()> {
    let info = UserPolicyInfo {
        selector: selector(&p.id),
        priority: p.priority,
        direction: direction(p.id.dir),
        action: XFRM_POLICY_ALLOW,
        ..UserPolicyInfo::default()
    };
    let mut tmpl = UserTemplate::default();
    tmpl.source(&p.tmpl_src);
    tmpl.destination(&p.tmpl_dst);
    tmpl.protocol(IPPROTO_ESP);
    tmpl.mode(XFRM_MODE_TUNNEL);
    tmpl.reqid(p.reqid);
    tmpl.family = family(p.tmpl_dst);
    tmpl.aalgos = u32::MAX;
    tmpl.ealgos = u32::MAX;
    tmpl.calgos = u32::MAX;
    let msg = XfrmMessage::UpdatePolicy(PolicyMod {
        user_policy_info: info,
        nlas: vec![XfrmAttrs::Template(vec![tmpl]), XfrmAttrs::IfId(if_id)],
    });
    nl.ack(msg, 0)
}

/// Deletes one policy by selector, direction and our `if_id` (ENOENT is success).
pub fn del_policy(nl: &mut Nl, id: &PolicyId, if_id: u32) -> io::Result<()> {
    let msg = XfrmMessage::DeletePolicy(PolicyId_ {
        user_policy_id: UserPolicyId {
            selector: selector(id),
            index: 0,
            direction: direction(id.dir),
        },
        nlas: vec![XfrmAttrs::IfId(if_id)],
    });
    match nl.ack(msg, 0) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// A link as far as the driver cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Kind (`"xfrm"` for ours).
    pub kind: Option<String>,
    /// `IFLA_XFRM_IF_ID` for xfrm links.
    pub if_id: Option<u32>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
}

fn parse_link(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        kind: None,
        if_id: None,
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Xfrm(data)) => {
                            for d in data {
                                if let InfoXfrm::IfId(id) = d {
                                    link.if_id = Some(*id);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// The link called `name`, if any.
pub fn get_link(nl: &mut Nl, name: &str) -> io::Result<Option<Link>> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    match nl.request(RouteNetlinkMessage::GetLink(msg), 0) {
        Ok(replies) => Ok(replies.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(parse_link(l)),
            _ => None,
        })),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates the `xfrm` interface (fails if the name or the `if_id` is taken).
pub fn create_xfrm_link(nl: &mut Nl, name: &str, if_id: u32, mtu: u32) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    msg.attributes.push(LinkAttribute::Mtu(mtu));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Xfrm),
        LinkInfo::Data(InfoData::Xfrm(vec![InfoXfrm::IfId(if_id)])),
    ]));
    nl.ack(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
}

/// Sets MTU and brings the link up.
pub fn set_link(nl: &mut Nl, index: u32, mtu: u32) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes.push(LinkAttribute::Mtu(mtu));
    nl.ack(RouteNetlinkMessage::SetLink(msg), 0)
}

/// Deletes a link by index (ENODEV is success).
pub fn del_link(nl: &mut Nl, index: u32) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    match nl.ack(RouteNetlinkMessage::DelLink(msg), 0) {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, Parseable};

    fn sa() -> Sa {
        Sa {
            id: SaId {
                dst: "203.0.113.9".parse().expect("ip"),
                spi: 0x1234_5671,
            },
            src: "192.168.0.1".parse().expect("ip"),
            reqid: 0x1234_5671,
            sport: 4500,
            dport: 4501,
            key: Some(AeadKey([7u8; AEAD_KEY_LEN])),
        }
    }

    /// What the kernel sends back for an SA we add parses into the same SA (the dump reply
    /// uses the NEWSA layout we emit).
    #[test]
    fn sa_round_trip_and_ownership() {
        let want = sa();
        let if_id = 0x5241;
        let mut nl_buf = Vec::new();
        let build = |if_id: u32| {
            let mut name = [0u8; 64];
            name[..AEAD_NAME.len()].copy_from_slice(AEAD_NAME.as_bytes());
            ModifyMessage {
                user_sa_info: UserSaInfo {
                    id: Id {
                        daddr: address(want.id.dst),
                        spi: want.id.spi,
                        proto: IPPROTO_ESP,
                    },
                    saddr: address(want.src),
                    reqid: want.reqid,
                    family: AF_INET,
                    mode: XFRM_MODE_TUNNEL,
                    ..UserSaInfo::default()
                },
                nlas: vec![
                    XfrmAttrs::EncryptionAlgAead(AlgAead {
                        alg_name: name,
                        alg_key_len: 288,
                        alg_icv_len: 128,
                        alg_key: vec![7u8; AEAD_KEY_LEN],
                    }),
                    XfrmAttrs::EncapsulationTemplate(EncapTmpl {
                        encap_type: UDP_ENCAP_ESPINUDP,
                        encap_sport: 4500,
                        encap_dport: 4501,
                        encap_oa: Address::default(),
                    }),
                    XfrmAttrs::IfId(if_id),
                ],
            }
        };
        let msg = build(if_id);
        nl_buf.resize(msg.buffer_len(), 0);
        msg.emit(&mut nl_buf);
        let parsed = ModifyMessage::parse(&nl_buf[..]).expect("parse");
        let got = parse_sa(&parsed, if_id).expect("ours");
        assert_eq!(got.sa, want);
        assert!(
            parse_sa(&parsed, if_id + 1).is_none(),
            "another if_id is foreign"
        );
        let mut foreign = build(if_id);
        foreign.nlas.retain(|n| !matches!(n, XfrmAttrs::IfId(_)));
        assert!(parse_sa(&foreign, if_id).is_none(), "no if_id is foreign");
    }

    #[test]
    fn policy_round_trip() {
        let p = Policy {
            id: PolicyId {
                dir: PolicyDir::Fwd,
                src: "10.2.0.0/16".parse().expect("p"),
                dst: "0.0.0.0/0".parse().expect("p"),
            },
            tmpl_src: "203.0.113.9".parse().expect("ip"),
            tmpl_dst: "192.168.0.1".parse().expect("ip"),
            reqid: 0,
            priority: 0x5200 + 112,
        };
        let mut tmpl = UserTemplate::default();
        tmpl.source(&p.tmpl_src);
        tmpl.destination(&p.tmpl_dst);
        tmpl.reqid(p.reqid);
        tmpl.family = AF_INET;
        let msg = PolicyMod {
            user_policy_info: UserPolicyInfo {
                selector: selector(&p.id),
                priority: p.priority,
                direction: XFRM_POLICY_FWD,
                ..UserPolicyInfo::default()
            },
            nlas: vec![XfrmAttrs::Template(vec![tmpl]), XfrmAttrs::IfId(9)],
        };
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        let parsed = PolicyMod::parse(&buf[..]).expect("parse");
        assert_eq!(parse_policy(&parsed, 9), Some(p));
        assert_eq!(parse_policy(&parsed, 10), None);
    }
}
