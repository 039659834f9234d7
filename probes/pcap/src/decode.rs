//! Frame → TCP segment: link layer, VLAN tags, IPv4 / IPv6 (extension headers), TCP.
//!
//! Checksums are not verified: loopback and offloaded captures carry wrong ones.
//! IP fragments are not reassembled (TCP with path MTU discovery does not fragment).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

// LINKTYPE_* values (tcpdump.org/linktypes.html); DLT_RAW differs between platforms.
pub const LINKTYPE_NULL: i32 = 0;
pub const LINKTYPE_ETHERNET: i32 = 1;
pub const LINKTYPE_RAW: i32 = 101;
pub const DLT_RAW_BSD: i32 = 12;
pub const DLT_RAW_OPENBSD: i32 = 14;
pub const LINKTYPE_LOOP: i32 = 108;
pub const LINKTYPE_LINUX_SLL: i32 = 113;
pub const LINKTYPE_IPV4: i32 = 228;
pub const LINKTYPE_IPV6: i32 = 229;
pub const LINKTYPE_LINUX_SLL2: i32 = 276;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

const IPPROTO_TCP: u8 = 6;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// A TCP segment borrowed from a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub flags: u8,
    /// Captured payload.
    pub payload: &'a [u8],
    /// Payload bytes the IP header announces beyond the captured ones (snaplen cut).
    pub missing: u32,
}

impl TcpSegment<'_> {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Why a frame gave no TCP segment; the label of the skip counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    /// A link type this reader does not decode.
    UnsupportedLink,
    /// Not IPv4/IPv6, or IP but not TCP.
    NotTcp,
    /// A non-first IP fragment, or a first fragment (not reassembled).
    Fragment,
    /// Headers shorter than they claim, bad versions, bad lengths.
    Malformed,
}

impl Skip {
    pub const ALL: [Skip; 4] = [Skip::UnsupportedLink, Skip::NotTcp, Skip::Fragment, Skip::Malformed];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::UnsupportedLink => "unsupported_link_type",
            Skip::NotTcp => "not_tcp",
            Skip::Fragment => "ip_fragment",
            Skip::Malformed => "malformed",
        }
    }
}

/// Decode one captured frame of link type `linktype`.
pub fn decode(linktype: i32, frame: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    let (ethertype, l3) = match linktype {
        LINKTYPE_ETHERNET => {
            let et = be16(frame, 12).ok_or(Skip::Malformed)?;
            (et, frame.get(14..).ok_or(Skip::Malformed)?)
        }
        LINKTYPE_LINUX_SLL => {
            let et = be16(frame, 14).ok_or(Skip::Malformed)?;
            (et, frame.get(16..).ok_or(Skip::Malformed)?)
        }
        LINKTYPE_LINUX_SLL2 => {
            let et = be16(frame, 0).ok_or(Skip::Malformed)?;
            (et, frame.get(20..).ok_or(Skip::Malformed)?)
        }
        // BSD loopback: the address family in host byte order (NULL) or network order (LOOP).
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let raw: [u8; 4] = frame
                .get(..4)
                .ok_or(Skip::Malformed)?
                .try_into()
                .map_err(|_| Skip::Malformed)?;
            // NULL is in the writer's byte order: small values with zero high bytes are big endian.
            let big_endian = linktype == LINKTYPE_LOOP || (raw[0] == 0 && raw[1] == 0);
            let family = if big_endian {
                u32::from_be_bytes(raw)
            } else {
                u32::from_le_bytes(raw)
            };
            let et = match family {
                2 => ETHERTYPE_IPV4,
                // AF_INET6: 10 Linux, 24 NetBSD/OpenBSD, 28 FreeBSD, 30 macOS.
                10 | 24 | 28 | 30 => ETHERTYPE_IPV6,
                _ => return Err(Skip::NotTcp),
            };
            (et, &frame[4..])
        }
        LINKTYPE_RAW | DLT_RAW_BSD | DLT_RAW_OPENBSD => match frame.first().map(|b| b >> 4) {
            Some(4) => (ETHERTYPE_IPV4, frame),
            Some(6) => (ETHERTYPE_IPV6, frame),
            Some(_) => return Err(Skip::NotTcp),
            None => return Err(Skip::Malformed),
        },
        LINKTYPE_IPV4 => (ETHERTYPE_IPV4, frame),
        LINKTYPE_IPV6 => (ETHERTYPE_IPV6, frame),
        _ => return Err(Skip::UnsupportedLink),
    };
    let (ethertype, l3) = strip_vlan(ethertype, l3)?;
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(l3),
        ETHERTYPE_IPV6 => ipv6(l3),
        _ => Err(Skip::NotTcp),
    }
}

/// 802.1Q / 802.1ad tags (any depth) between the link header and IP.
fn strip_vlan(mut ethertype: u16, mut l3: &[u8]) -> Result<(u16, &[u8]), Skip> {
    while matches!(ethertype, ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD) {
        ethertype = be16(l3, 2).ok_or(Skip::Malformed)?;
        l3 = &l3[4..];
    }
    Ok((ethertype, l3))
}

fn ipv4(p: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    let first = *p.first().ok_or(Skip::Malformed)?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || p.len() < ihl {
        return Err(Skip::Malformed);
    }
    let total = usize::from(be16(p, 2).ok_or(Skip::Malformed)?);
    let frag = be16(p, 6).ok_or(Skip::Malformed)?;
    if frag & 0x3fff != 0 {
        return Err(Skip::Fragment); // MF set or a non-zero offset
    }
    if p[9] != IPPROTO_TCP {
        return Err(Skip::NotTcp);
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    // total = 0 happens on captures of TSO-offloaded sends: trust the captured length then.
    let wire_len = if total == 0 { p.len() } else { total };
    if wire_len < ihl {
        return Err(Skip::Malformed);
    }
    tcp(IpAddr::V4(src), IpAddr::V4(dst), &p[ihl..], wire_len - ihl)
}

fn ipv6(p: &[u8]) -> Result<TcpSegment<'_>, Skip> {
    if p.len() < 40 || p[0] >> 4 != 6 {
        return Err(Skip::Malformed);
    }
    let payload_len = usize::from(be16(p, 4).ok_or(Skip::Malformed)?);
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).map_err(|_| Skip::Malformed)?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).map_err(|_| Skip::Malformed)?);
    // Payload length 0: a jumbogram (hop-by-hop option) or TSO; use what was captured.
    let mut wire_left = if payload_len == 0 { p.len() - 40 } else { payload_len };
    let mut next = p[6];
    let mut rest = &p[40..];
    loop {
        match next {
            IPPROTO_TCP => break,
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6: (len + 1) * 8.
            0 | 43 | 60 | 135 | 139 | 140 => {
                let len = (usize::from(*rest.get(1).ok_or(Skip::Malformed)?) + 1) * 8;
                next = rest[0];
                rest = rest.get(len..).ok_or(Skip::Malformed)?;
                wire_left = wire_left.checked_sub(len).ok_or(Skip::Malformed)?;
            }
            // Fragment header: 8 bytes; only an unfragmented "atomic fragment" is usable.
            44 => {
                let off_m = be16(rest, 2).ok_or(Skip::Malformed)?;
                if off_m & 0xfff9 != 0 {
                    return Err(Skip::Fragment);
                }
                next = rest[0];
                rest = rest.get(8..).ok_or(Skip::Malformed)?;
                wire_left = wire_left.checked_sub(8).ok_or(Skip::Malformed)?;
            }
            // Authentication header: (len + 2) * 4.
            51 => {
                let len = (usize::from(*rest.get(1).ok_or(Skip::Malformed)?) + 2) * 4;
                next = rest[0];
                rest = rest.get(len..).ok_or(Skip::Malformed)?;
                wire_left = wire_left.checked_sub(len).ok_or(Skip::Malformed)?;
            }
            // ESP (encrypted), no next header, anything else.
            _ => return Err(Skip::NotTcp),
        }
    }
    tcp(IpAddr::V6(src), IpAddr::V6(dst), rest, wire_left)
}

/// `p`: captured TCP header + payload; `wire_len`: their length on the wire per the IP header.
fn tcp(src: IpAddr, dst: IpAddr, p: &[u8], wire_len: usize) -> Result<TcpSegment<'_>, Skip> {
    if p.len() < 20 {
        return Err(Skip::Malformed);
    }
    let data_off = usize::from(p[12] >> 4) * 4;
    if data_off < 20 || p.len() < data_off || wire_len < data_off {
        return Err(Skip::Malformed);
    }
    let sport = be16(p, 0).ok_or(Skip::Malformed)?;
    let dport = be16(p, 2).ok_or(Skip::Malformed)?;
    let seq = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    let wire_payload = wire_len - data_off;
    // Ethernet pads short frames: the IP length, not the frame, says where the payload ends.
    let captured = &p[data_off..];
    let payload = &captured[..captured.len().min(wire_payload)];
    let missing = u32::try_from(wire_payload - payload.len()).unwrap_or(u32::MAX);
    Ok(TcpSegment {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        seq,
        flags: p[13],
        payload,
        missing,
    })
}

fn be16(p: &[u8], at: usize) -> Option<u16> {
    let b = p.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}
