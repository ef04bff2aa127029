//! STUN keep-alives on the SIP UDP port (RFC 5626 section 8, RFC 5389): a phone behind NAT
//! sends Binding requests to the port it registered through, to keep its NAT binding open and
//! learn whether its public address changed. Each gets a Binding success response with the
//! source address it came from (XOR-MAPPED-ADDRESS). Nothing else of STUN is spoken here.

use std::net::{IpAddr, SocketAddr};

const MAGIC_COOKIE: u32 = 0x2112_a442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const HEADER: usize = 20;

/// Whether a datagram is a STUN message (RFC 7983: first byte 0 to 3, and the magic cookie).
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= HEADER
        && data[0] < 4
        && u32::from_be_bytes([data[4], data[5], data[6], data[7]]) == MAGIC_COOKIE
}

/// The response to a Binding request from `source`, or `None` for anything else (other STUN
/// methods, responses, malformed messages: dropped).
pub fn binding_response(request: &[u8], source: SocketAddr) -> Option<Vec<u8>> {
    if !is_stun(request) {
        return None;
    }
    let kind = u16::from_be_bytes([request[0], request[1]]);
    let length = usize::from(u16::from_be_bytes([request[2], request[3]]));
    if kind != BINDING_REQUEST || length % 4 != 0 || request.len() != HEADER + length {
        return None;
    }
    let transaction = &request[8..20];
    let port = source.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let mut value = Vec::with_capacity(20);
    value.push(0);
    match source.ip() {
        IpAddr::V4(ip) => {
            value.push(0x01);
            value.extend_from_slice(&port.to_be_bytes());
            let address = u32::from(ip) ^ MAGIC_COOKIE;
            value.extend_from_slice(&address.to_be_bytes());
        }
        IpAddr::V6(ip) => {
            value.push(0x02);
            value.extend_from_slice(&port.to_be_bytes());
            let mut key = MAGIC_COOKIE.to_be_bytes().to_vec();
            key.extend_from_slice(transaction);
            value.extend(ip.octets().iter().zip(key).map(|(byte, k)| byte ^ k));
        }
    }
    let mut response = Vec::with_capacity(HEADER + 4 + value.len());
    response.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    response.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
    response.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    response.extend_from_slice(transaction);
    response.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
    response.extend_from_slice(&(value.len() as u16).to_be_bytes());
    response.extend_from_slice(&value);
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(transaction: [u8; 12]) -> Vec<u8> {
        let mut data = vec![0x00, 0x01, 0x00, 0x00];
        data.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        data.extend_from_slice(&transaction);
        data
    }

    #[test]
    fn a_binding_request_gets_the_source_address_back() {
        let transaction = [7u8; 12];
        let source: SocketAddr = "192.0.2.1:32853".parse().unwrap();
        let response = binding_response(&request(transaction), source).expect("a response");
        assert_eq!(&response[0..2], &[0x01, 0x01]);
        assert_eq!(&response[8..20], &transaction);
        // 192.0.2.1:32853 XORed with the magic cookie (the address of RFC 5769 section 2.2).
        assert_eq!(
            &response[20..32],
            &[
                0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43
            ]
        );
        let v6: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap();
        let response = binding_response(&request(transaction), v6).expect("a response");
        assert_eq!(response.len(), 20 + 4 + 20);
    }

    #[test]
    fn anything_else_is_dropped() {
        let source: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let mut success = request([1; 12]);
        success[1] = 0x01;
        success[0] = 0x01;
        assert!(binding_response(&success, source).is_none());
        assert!(binding_response(b"OPTIONS sip:x SIP/2.0\r\n\r\n", source).is_none());
        let mut truncated = request([1; 12]);
        truncated[3] = 8;
        assert!(binding_response(&truncated, source).is_none());
    }
}
