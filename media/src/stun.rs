//! What the shared browser port reads of a STUN message before it knows which call it is for:
//! the local ICE ufrag of its USERNAME, which names the call. Pure, so that hostile datagrams
//! can be fuzzed without a socket.

/// The local part of a STUN message's USERNAME (`local:remote`, RFC 8445 section 7.2.2).
pub fn stun_ufrag(data: &[u8]) -> Option<&str> {
    if data.len() < 20 || data[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return None;
    }
    let mut rest = &data[20..];
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let length = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + length)?;
        if kind == 0x0006 {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        rest = rest.get(4 + length.div_ceil(4) * 4..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_local_ufrag_of_a_stun_username() {
        let mut message = vec![0x00, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
        message.extend_from_slice(&[7; 12]);
        message.extend_from_slice(&[0x00, 0x06, 0x00, 0x07]);
        message.extend_from_slice(b"abc:xyz\0");
        assert_eq!(stun_ufrag(&message), Some("abc"));
        message.truncate(22);
        assert_eq!(stun_ufrag(&message), None);
    }
}
