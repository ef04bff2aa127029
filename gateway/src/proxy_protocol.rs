//! The PROXY protocol, version 2 (HAProxy's `send-proxy-v2`): a load balancer in front of the
//! gateway begins each TCP connection with a binary header naming the client, so that the
//! per-source limits and the logs see the client and not the load balancer. Only connections
//! from the addresses in `http.proxy_protocol_from` are read this way; from them, a connection
//! without a valid header is closed (a client cannot reach them to forge one).
//!
//! The header (the PROXY protocol specification, section 2.2): a 12-byte signature, a
//! version/command byte (`0x21` PROXY, `0x20` LOCAL: the balancer's own health check), an
//! address family byte, the length of what follows (big-endian), then the source and
//! destination addresses and ports, then optional TLVs (ignored here).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use sip::{ConnectionSlots, Slot};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tracing::debug;

/// The signature every version 2 header starts with.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part: signature, version/command, family, length.
const FIXED: usize = 16;
/// The most address and TLV bytes taken after the fixed part (HAProxy sends a few dozen).
const MAX_REST: usize = 1024;
/// How long the balancer may take to send the header; it sends it at once.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the fixed part of a header: how many bytes of addresses and TLVs follow, or why it is
/// not a header.
pub(crate) fn parse_fixed(bytes: &[u8; FIXED]) -> Result<usize, &'static str> {
    if bytes[..12] != SIGNATURE {
        return Err("no PROXY protocol v2 signature");
    }
    if bytes[12] >> 4 != 2 {
        return Err("not PROXY protocol version 2");
    }
    let rest = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    if rest > MAX_REST {
        return Err("PROXY protocol header too long");
    }
    Ok(rest)
}

/// The client a complete header names: `None` for LOCAL (the balancer speaking for itself)
/// and for families other than TCP over IPv4 or IPv6 (which carry no usable address).
pub(crate) fn parse_addresses(
    command: u8,
    family: u8,
    rest: &[u8],
) -> Result<Option<SocketAddr>, &'static str> {
    match command & 0x0f {
        0 => return Ok(None),
        1 => {}
        _ => return Err("unknown PROXY protocol command"),
    }
    match family {
        0x11 => {
            let Some(addresses) = rest.get(..12) else {
                return Err("PROXY protocol IPv4 addresses cut short");
            };
            let ip = Ipv4Addr::new(addresses[0], addresses[1], addresses[2], addresses[3]);
            let port = u16::from_be_bytes([addresses[8], addresses[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        0x21 => {
            let Some(addresses) = rest.get(..36) else {
                return Err("PROXY protocol IPv6 addresses cut short");
            };
            let mut octets = [0; 16];
            octets.copy_from_slice(&addresses[..16]);
            let port = u16::from_be_bytes([addresses[32], addresses[33]]);
            Ok(Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                port,
            )))
        }
        _ => Ok(None),
    }
}

/// Reads the header at the start of `stream` (exactly its bytes: what follows is the client's)
/// and gives the client's address, or `peer` when the header names none.
async fn read_header(stream: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, String> {
    let mut fixed = [0; FIXED];
    stream
        .read_exact(&mut fixed)
        .await
        .map_err(|error| error.to_string())?;
    let length = parse_fixed(&fixed)?;
    let mut rest = vec![0; length];
    stream
        .read_exact(&mut rest)
        .await
        .map_err(|error| error.to_string())?;
    Ok(parse_addresses(fixed[12], fixed[13], &rest)?.unwrap_or(peer))
}

/// A connection from a trusted balancer: its client's address and a slot taken for the client
/// (the balancer's own slot is given back), or `None` when the header is missing or bad, or
/// the client is over its limit: the connection is then closed.
pub(crate) async fn accept_from_balancer(
    stream: &mut TcpStream,
    peer: SocketAddr,
    slots: &ConnectionSlots,
    balancer_slot: Slot,
) -> Option<(SocketAddr, Slot)> {
    let client = match tokio::time::timeout(HEADER_TIMEOUT, read_header(stream, peer)).await {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => {
            debug!(%peer, %error, "connection from a load balancer closed: bad PROXY header");
            return None;
        }
        Err(_) => {
            debug!(%peer, "connection from a load balancer closed: no PROXY header");
            return None;
        }
    };
    if client == peer {
        return Some((client, balancer_slot));
    }
    let slot = match slots.take(client.ip()) {
        Ok(slot) => slot,
        Err(limit) => {
            debug!(%peer, %client, %limit, "HTTP connection refused: the limit is reached");
            return None;
        }
    };
    drop(balancer_slot);
    Some((client, slot))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut bytes = SIGNATURE.to_vec();
        bytes.push(0x20 | command);
        bytes.push(family);
        bytes.extend_from_slice(&u16::try_from(addresses.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(addresses);
        bytes
    }

    fn parse(bytes: &[u8]) -> Result<Option<SocketAddr>, &'static str> {
        let fixed: [u8; FIXED] = bytes[..FIXED].try_into().unwrap();
        let length = parse_fixed(&fixed)?;
        parse_addresses(fixed[12], fixed[13], &bytes[FIXED..FIXED + length])
    }

    #[test]
    fn headers_name_the_client() {
        // 192.0.2.7:40000 -> 10.0.0.1:443, with a TLV after the addresses.
        let mut v4 = vec![192, 0, 2, 7, 10, 0, 0, 1, 0x9c, 0x40, 0x01, 0xbb];
        v4.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]);
        assert_eq!(
            parse(&header(1, 0x11, &v4)),
            Ok(Some("192.0.2.7:40000".parse().unwrap()))
        );
        let mut v6 = vec![0; 36];
        v6[0] = 0x20;
        v6[1] = 0x01;
        v6[15] = 9;
        v6[32..34].copy_from_slice(&5060u16.to_be_bytes());
        assert_eq!(
            parse(&header(1, 0x21, &v6)),
            Ok(Some("[2001::9]:5060".parse().unwrap()))
        );
        // LOCAL (the balancer's own check) and UNSPEC name nobody.
        assert_eq!(parse(&header(0, 0x00, &[])), Ok(None));
        assert_eq!(parse(&header(1, 0x00, &[])), Ok(None));
    }

    #[test]
    fn bad_headers_are_refused() {
        let mut http = *b"GET / HTTP/1.1\r\nHo";
        assert!(parse(&http).is_err());
        http[..12].copy_from_slice(&SIGNATURE);
        http[12] = 0x11; // version 1 in the binary form
        assert!(parse(&http).is_err());
        assert_eq!(
            parse(&header(1, 0x11, &[192, 0, 2])),
            Err("PROXY protocol IPv4 addresses cut short")
        );
        assert_eq!(
            parse(&header(7, 0x11, &[0; 12])),
            Err("unknown PROXY protocol command")
        );
        let mut long = header(1, 0x11, &[]);
        long[14..16].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(
            parse_fixed(&long[..FIXED].try_into().unwrap()),
            Err("PROXY protocol header too long")
        );
    }
}
