//! RTP and RTCP on the SIP leg (RFC 3550): reading and writing packet headers without copying
//! payloads, receive statistics, and the sender and receiver reports the relay sends there.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A parsed RTP packet, borrowing its bytes.
#[derive(Debug, Clone, Copy)]
pub struct RtpView<'a> {
    data: &'a [u8],
    payload_start: usize,
    payload_end: usize,
}

impl<'a> RtpView<'a> {
    /// Reads an RTP packet; `None` for anything else (too short, not version 2, RTCP, lengths
    /// that do not fit).
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        if data.len() < 12 || data[0] >> 6 != 2 || is_rtcp(data) {
            return None;
        }
        let csrcs = usize::from(data[0] & 0x0f);
        let mut start = 12 + 4 * csrcs;
        if data[0] & 0x10 != 0 {
            let words = usize::from(u16::from_be_bytes([
                *data.get(start + 2)?,
                *data.get(start + 3)?,
            ]));
            start += 4 + 4 * words;
        }
        let mut end = data.len();
        if data[0] & 0x20 != 0 {
            end = end.checked_sub(usize::from(*data.last()?))?;
        }
        (start <= end).then_some(RtpView {
            data,
            payload_start: start,
            payload_end: end,
        })
    }

    /// The payload type.
    pub fn pt(&self) -> u8 {
        self.data[1] & 0x7f
    }

    /// The marker bit.
    pub fn marker(&self) -> bool {
        self.data[1] & 0x80 != 0
    }

    /// The sequence number.
    pub fn seq(&self) -> u16 {
        u16::from_be_bytes([self.data[2], self.data[3]])
    }

    /// The timestamp.
    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.data[4], self.data[5], self.data[6], self.data[7]])
    }

    /// The synchronization source.
    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.data[8], self.data[9], self.data[10], self.data[11]])
    }

    /// The payload (without header, extension and padding).
    pub fn payload(&self) -> &'a [u8] {
        &self.data[self.payload_start..self.payload_end]
    }
}

/// Whether a datagram on an RTP port is RTCP (RFC 5761 section 4: packet types 192 to 223).
pub fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 8 && (192..=223).contains(&data[1])
}

/// The fields of an RTP header to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// The payload type.
    pub pt: u8,
    /// The marker bit.
    pub marker: bool,
    /// The sequence number.
    pub seq: u16,
    /// The timestamp.
    pub timestamp: u32,
    /// The synchronization source.
    pub ssrc: u32,
}

/// Writes an RTP packet (fixed header, then payload) into `out`, replacing its contents.
pub fn write_rtp(out: &mut Vec<u8>, header: RtpHeader, payload: &[u8]) {
    out.clear();
    out.push(0x80);
    out.push((u8::from(header.marker) << 7) | (header.pt & 0x7f));
    out.extend_from_slice(&header.seq.to_be_bytes());
    out.extend_from_slice(&header.timestamp.to_be_bytes());
    out.extend_from_slice(&header.ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Receive statistics of one source (RFC 3550 appendix A.1, A.3 and A.8).
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    ssrc: u32,
    started: bool,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Interarrival jitter, in timestamp units, scaled by 16.
    jitter: u32,
    /// The last transit time (arrival in timestamp units minus timestamp).
    transit: Option<i64>,
    /// The middle 32 bits of the NTP time of the last sender report, and when it came.
    last_sr: Option<(u32, Instant)>,
}

impl ReceiveStats {
    /// Counts a packet that arrived at `arrival` (in the codec's clock units, from any origin).
    pub fn record(&mut self, ssrc: u32, seq: u16, timestamp: u32, arrival: i64) {
        if !self.started || ssrc != self.ssrc {
            *self = ReceiveStats {
                ssrc,
                started: true,
                base_seq: u32::from(seq),
                max_seq: seq,
                ..ReceiveStats::default()
            };
        }
        let delta = seq.wrapping_sub(self.max_seq);
        if delta < 0x8000 {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
        }
        self.received += 1;
        let transit = arrival - i64::from(timestamp);
        if let Some(previous) = self.transit {
            let d = (transit - previous).unsigned_abs();
            let d = u32::try_from(d).unwrap_or(u32::MAX);
            // J += (|D| - J) / 16, kept scaled by 16 (A.8).
            self.jitter = self
                .jitter
                .wrapping_add(d)
                .wrapping_sub((self.jitter + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Since the first packet: (packets received, packets lost, interarrival jitter in the
    /// codec's clock units). Reads without touching the report's interval counters.
    pub fn totals(&self) -> (u32, u32, u32) {
        if !self.started {
            return (0, 0, 0);
        }
        let extended = self.cycles + u32::from(self.max_seq);
        let expected = extended.wrapping_sub(self.base_seq) + 1;
        (
            self.received,
            expected.saturating_sub(self.received),
            self.jitter >> 4,
        )
    }

    /// A sender report from this source came (its NTP timestamp).
    pub fn record_sender_report(&mut self, ntp: u64, now: Instant) {
        self.last_sr = Some(((ntp >> 16) as u32, now));
    }

    /// The report block for an RTCP report, and resets the interval counters.
    pub fn report(&mut self, now: Instant) -> Option<ReportBlock> {
        if !self.started {
            return None;
        }
        let extended = self.cycles + u32::from(self.max_seq);
        let expected = extended.wrapping_sub(self.base_seq) + 1;
        let lost = i64::from(expected) - i64::from(self.received);
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            u8::try_from((lost_interval << 8) / i64::from(expected_interval)).unwrap_or(255)
        };
        let (lsr, dlsr) = match self.last_sr {
            Some((lsr, at)) => {
                let delay = now.saturating_duration_since(at);
                // In units of 1/65536 seconds.
                let units = delay.as_secs_f64() * 65_536.0;
                (lsr, units.min(f64::from(u32::MAX)) as u32)
            }
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: self.ssrc,
            fraction_lost: fraction,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7f_ffff) as i32,
            highest_seq: extended,
            jitter: self.jitter >> 4,
            lsr,
            dlsr,
        })
    }
}

/// A reception report block (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source reported on.
    pub ssrc: u32,
    /// The fraction lost since the last report, out of 256.
    pub fraction_lost: u8,
    /// Packets lost since the start (24 bits, signed).
    pub cumulative_lost: i32,
    /// The extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter.
    pub jitter: u32,
    /// The middle of the last SR's NTP timestamp.
    pub lsr: u32,
    /// The delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

/// What we sent, for sender reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendStats {
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
    /// The timestamp of the last packet sent, and when it went.
    pub last: Option<(u32, Instant)>,
}

/// The NTP time (RFC 3550 section 4) of a wall-clock time.
pub fn ntp_time(time: SystemTime) -> u64 {
    // NTP counts from 1900, 70 years (17 leap days) before the Unix epoch.
    const OFFSET: u64 = 2_208_988_800;
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let seconds = since.as_secs() + OFFSET;
    let fraction = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// Writes a compound RTCP packet into `out`: a sender report (when we have sent since the last
/// one) or a receiver report, with the report block, then an SDES with our CNAME.
pub fn write_report(
    out: &mut Vec<u8>,
    ssrc: u32,
    sender: Option<(u64, u32, &SendStats)>,
    block: Option<ReportBlock>,
    cname: &str,
) {
    out.clear();
    let count = u8::from(block.is_some());
    match sender {
        Some((ntp, timestamp, stats)) => {
            out.push(0x80 | count);
            out.push(200);
            let words: u16 = 6 + 6 * u16::from(count);
            out.extend_from_slice(&words.to_be_bytes());
            out.extend_from_slice(&ssrc.to_be_bytes());
            out.extend_from_slice(&ntp.to_be_bytes());
            out.extend_from_slice(&timestamp.to_be_bytes());
            out.extend_from_slice(&stats.packets.to_be_bytes());
            out.extend_from_slice(&stats.octets.to_be_bytes());
        }
        None => {
            out.push(0x80 | count);
            out.push(201);
            let words: u16 = 1 + 6 * u16::from(count);
            out.extend_from_slice(&words.to_be_bytes());
            out.extend_from_slice(&ssrc.to_be_bytes());
        }
    }
    if let Some(block) = block {
        out.extend_from_slice(&block.ssrc.to_be_bytes());
        let lost = (block.cumulative_lost as u32) & 0x00ff_ffff;
        out.extend_from_slice(&((u32::from(block.fraction_lost) << 24) | lost).to_be_bytes());
        out.extend_from_slice(&block.highest_seq.to_be_bytes());
        out.extend_from_slice(&block.jitter.to_be_bytes());
        out.extend_from_slice(&block.lsr.to_be_bytes());
        out.extend_from_slice(&block.dlsr.to_be_bytes());
    }
    // SDES: one chunk, CNAME, then the end item, padded to a word.
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    let chunk = 4 + 2 + cname.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    out.push(0x81);
    out.push(202);
    out.extend_from_slice(&(u16::try_from(padded / 4).unwrap_or(0)).to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(1);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname);
    out.resize(out.len() + padded - chunk + 1, 0);
}

/// The sender SSRC and NTP timestamp of the sender report at the start of a compound RTCP
/// packet, if it starts with one.
pub fn read_sender_report(data: &[u8]) -> Option<(u32, u64)> {
    if data.len() < 28 || data[0] >> 6 != 2 || data[1] != 200 {
        return None;
    }
    let ssrc = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    let mut ntp = [0u8; 8];
    ntp.copy_from_slice(&data[8..16]);
    Some((ssrc, u64::from_be_bytes(ntp)))
}

/// The reception report blocks of the sender and receiver reports in a compound RTCP packet
/// (RFC 3550 sections 6.4.1 and 6.4.2), in order; a truncated packet ends the walk.
pub fn read_report_blocks(data: &[u8]) -> impl Iterator<Item = ReportBlock> + '_ {
    let mut rest = data;
    let mut pending: &[u8] = &[];
    std::iter::from_fn(move || {
        loop {
            if pending.len() >= 24 {
                let (block, after) = pending.split_at(24);
                pending = after;
                let word = |at: usize| {
                    u32::from_be_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]])
                };
                let lost = word(4) & 0x00ff_ffff;
                // 24 bits, signed.
                let cumulative_lost = ((lost << 8) as i32) >> 8;
                return Some(ReportBlock {
                    ssrc: word(0),
                    fraction_lost: block[4],
                    cumulative_lost,
                    highest_seq: word(8),
                    jitter: word(12),
                    lsr: word(16),
                    dlsr: word(20),
                });
            }
            if rest.len() < 8 || rest[0] >> 6 != 2 {
                return None;
            }
            let length = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
            let packet = rest.get(..length)?;
            rest = &rest[length..];
            let count = usize::from(packet[0] & 0x1f);
            let start = match packet[1] {
                200 => 28,
                201 => 8,
                _ => continue,
            };
            pending = packet.get(start..start + 24 * count).unwrap_or(&[]);
        }
    })
}

/// The keyframe requests of a compound RTCP packet (RFC 4585 PLI, RFC 5104 FIR).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyframeAsk {
    /// A picture loss indication.
    pub pli: bool,
    /// A full intra request.
    pub fir: bool,
}

/// Reads the keyframe requests of a compound RTCP packet; the rest is left alone.
pub fn read_keyframe_requests(data: &[u8]) -> KeyframeAsk {
    let mut ask = KeyframeAsk::default();
    let mut rest = data;
    while rest.len() >= 4 && rest[0] >> 6 == 2 {
        let length = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if length > rest.len() {
            break;
        }
        // Payload-specific feedback (206): FMT 1 is PLI, FMT 4 is FIR.
        if rest[1] == 206 {
            match rest[0] & 0x1f {
                1 => ask.pli = true,
                4 => ask.fir = true,
                _ => {}
            }
        }
        rest = &rest[length..];
    }
    ask
}

/// A temporary maximum media stream bit rate request (TMMBR, RFC 5104 section 4.2.1): from
/// `sender`, for the stream of `target`, at most `bitrate` bits per second counting `overhead`
/// bytes of headers per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tmmbr {
    /// The requester's SSRC.
    pub sender: u32,
    /// The SSRC of the stream it limits.
    pub target: u32,
    /// The limit, bits per second.
    pub bitrate: u64,
    /// The measured overhead per packet, bytes.
    pub overhead: u16,
}

/// Reads the first TMMBR entry for `target` in a compound RTCP packet (RTPFB, FMT 3).
pub fn read_tmmbr(data: &[u8], target: u32) -> Option<Tmmbr> {
    let mut rest = data;
    while rest.len() >= 4 && rest[0] >> 6 == 2 {
        let length = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if length > rest.len() {
            break;
        }
        if rest[1] == 205 && rest[0] & 0x1f == 3 && length >= 20 {
            let sender = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
            for entry in rest[12..length].chunks_exact(8) {
                let ssrc = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
                if ssrc != target {
                    continue;
                }
                let word = u32::from_be_bytes([entry[4], entry[5], entry[6], entry[7]]);
                let exponent = word >> 26;
                let mantissa = u64::from((word >> 9) & 0x1_ffff);
                return Some(Tmmbr {
                    sender,
                    target,
                    bitrate: mantissa.checked_shl(exponent).unwrap_or(u64::MAX),
                    overhead: (word & 0x1ff) as u16,
                });
            }
        }
        rest = &rest[length..];
    }
    None
}

/// The exponent and mantissa (17 bits) of a TMMBR/TMMBN bit rate, rounded down.
fn tmmb_fields(bitrate: u64) -> (u32, u32) {
    let mut exponent = 0;
    let mut mantissa = bitrate;
    while mantissa > 0x1_ffff {
        mantissa >>= 1;
        exponent += 1;
    }
    (exponent, mantissa as u32)
}

/// Writes a request of our own (TMMBR) from `sender` limiting `request.target`'s stream.
pub fn write_tmmbr(out: &mut Vec<u8>, sender: u32, request: &Tmmbr) {
    write_tmmb(out, 3, sender, request.target, request);
}

/// Writes the notification (TMMBN, RFC 5104 section 4.2.2) from `sender` that answers
/// `request`: the bounding set is that request alone, owned by its sender.
pub fn write_tmmbn(out: &mut Vec<u8>, sender: u32, request: &Tmmbr) {
    write_tmmb(out, 4, sender, request.sender, request);
}

fn write_tmmb(out: &mut Vec<u8>, format: u8, sender: u32, ssrc: u32, request: &Tmmbr) {
    let (exponent, mantissa) = tmmb_fields(request.bitrate);
    let word = exponent << 26 | mantissa << 9 | u32::from(request.overhead & 0x1ff);
    out.clear();
    out.extend_from_slice(&[0x80 | format, 205, 0, 4]);
    out.extend_from_slice(&sender.to_be_bytes());
    // The media source field is unused (RFC 5104 section 4.2.1.1).
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&word.to_be_bytes());
}

/// Writes a picture loss indication (RFC 4585 section 6.3.1) from `sender` about `media`.
pub fn write_pli(out: &mut Vec<u8>, sender: u32, media: u32) {
    out.clear();
    out.extend_from_slice(&[0x81, 206, 0, 2]);
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&media.to_be_bytes());
}

/// Writes a full intra request (RFC 5104 section 4.3.1) from `sender` to `media`, with its
/// command sequence number (raised only for a new request).
pub fn write_fir(out: &mut Vec<u8>, sender: u32, media: u32, sequence: u8) {
    out.clear();
    out.extend_from_slice(&[0x84, 206, 0, 4]);
    out.extend_from_slice(&sender.to_be_bytes());
    // The media source field is unused in a FIR (RFC 5104 section 4.3.1.2).
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&media.to_be_bytes());
    out.extend_from_slice(&[sequence, 0, 0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmmbr_is_read_and_answered_with_a_tmmbn() {
        let request = Tmmbr {
            sender: 7,
            target: 9,
            bitrate: 300_000,
            overhead: 40,
        };
        let mut packet = Vec::new();
        write_tmmbr(&mut packet, 7, &request);
        let mut compound = vec![0x80, 201, 0, 1, 0, 0, 0, 7];
        compound.extend_from_slice(&packet);
        let read = read_tmmbr(&compound, 9).expect("a TMMBR");
        // 300,000 needs a 2^2 exponent: the mantissa keeps 17 bits, rounded down.
        assert_eq!(read.bitrate, (300_000 >> 2) << 2);
        assert_eq!((read.sender, read.target, read.overhead), (7, 9, 40));
        assert_eq!(read_tmmbr(&compound, 8), None, "another stream's");
        let mut notification = Vec::new();
        write_tmmbn(&mut notification, 9, &read);
        assert_eq!(notification[0] & 0x1f, 4);
        assert_eq!(notification[1], 205);
        assert_eq!(&notification[12..16], &7u32.to_be_bytes(), "the owner");
        // A truncated packet reads as nothing.
        assert_eq!(read_tmmbr(&compound[..compound.len() - 4], 9), None);
    }

    #[test]
    fn keyframe_requests_are_read_and_written() {
        let mut pli = Vec::new();
        write_pli(&mut pli, 1, 2);
        let mut fir = Vec::new();
        write_fir(&mut fir, 1, 2, 7);
        assert_eq!(fir.len(), 20);
        assert_eq!(fir[16], 7);
        let mut report = Vec::new();
        write_report(&mut report, 1, None, None, "x");
        assert_eq!(read_keyframe_requests(&report), KeyframeAsk::default());
        let mut compound = report.clone();
        compound.extend_from_slice(&pli);
        assert_eq!(
            read_keyframe_requests(&compound),
            KeyframeAsk {
                pli: true,
                fir: false
            }
        );
        compound.extend_from_slice(&fir);
        assert_eq!(
            read_keyframe_requests(&compound),
            KeyframeAsk {
                pli: true,
                fir: true
            }
        );
        // A length past the end stops the reading.
        let mut broken = pli.clone();
        broken[3] = 9;
        assert_eq!(read_keyframe_requests(&broken), KeyframeAsk::default());
    }

    #[test]
    fn rtp_round_trip_and_padding() {
        let mut out = Vec::new();
        let header = RtpHeader {
            pt: 101,
            marker: true,
            seq: 65_535,
            timestamp: 0xdead_beef,
            ssrc: 0x1234_5678,
        };
        write_rtp(&mut out, header, b"payload");
        let view = RtpView::parse(&out).expect("rtp");
        assert_eq!(
            (
                view.pt(),
                view.marker(),
                view.seq(),
                view.timestamp(),
                view.ssrc()
            ),
            (101, true, 65_535, 0xdead_beef, 0x1234_5678)
        );
        assert_eq!(view.payload(), b"payload");
        // With padding and a header extension (one word).
        let mut padded = vec![
            0xb0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 1, 1, 2, 3, 4,
        ];
        padded.extend_from_slice(b"abc");
        padded.extend_from_slice(&[0, 0, 3]);
        let view = RtpView::parse(&padded).expect("rtp");
        assert_eq!(view.payload(), b"abc");
        // Padding longer than the packet, RTCP, and short packets are not RTP.
        padded.pop();
        padded.push(200);
        assert!(RtpView::parse(&padded).is_none());
        assert!(RtpView::parse(&[0x80, 200, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
        assert!(RtpView::parse(&[0x80; 8]).is_none());
    }

    #[test]
    fn loss_and_reports() {
        let now = Instant::now();
        let mut stats = ReceiveStats::default();
        for seq in [65_534u16, 65_535, 1, 2] {
            stats.record(7, seq, u32::from(seq) * 160, i64::from(seq) * 160);
        }
        assert_eq!(
            stats.totals(),
            (4, 1, 0),
            "received, lost, no jitter (on time)"
        );
        assert_eq!(ReceiveStats::default().totals(), (0, 0, 0));
        stats.record_sender_report(0x0001_0002_0003_0004, now);
        let block = stats
            .report(now + Duration::from_millis(500))
            .expect("a block");
        assert_eq!(block.ssrc, 7);
        assert_eq!(block.highest_seq, 65_536 + 2);
        // Five expected (65534..=2 across the wrap), four received.
        assert_eq!(block.cumulative_lost, 1);
        assert_eq!(block.fraction_lost, 51);
        assert_eq!(block.lsr, 0x0002_0003);
        assert_eq!(block.dlsr, 32_768);
        // Reports do not reset the call's totals.
        assert_eq!(stats.totals(), (4, 1, 0));

        let mut out = Vec::new();
        let sent = SendStats {
            packets: 10,
            octets: 1600,
            last: None,
        };
        write_report(
            &mut out,
            9,
            Some((ntp_time(SystemTime::now()), 1, &sent)),
            Some(block),
            "gw",
        );
        assert_eq!(out.len() % 4, 0);
        assert_eq!(out[1], 200);
        let (ssrc, _) = read_sender_report(&out).expect("an SR");
        assert_eq!(ssrc, 9);
        let sr_len = (usize::from(u16::from_be_bytes([out[2], out[3]])) + 1) * 4;
        assert_eq!(sr_len, 52);
        assert_eq!(out[sr_len + 1], 202);
        // The block reads back, after the SR's sender info.
        assert_eq!(read_report_blocks(&out).collect::<Vec<_>>(), vec![block]);
        write_report(&mut out, 9, None, None, "gw");
        assert_eq!(out[1], 201);
        assert_eq!(out.len() % 4, 0);
        assert!(is_rtcp(&out));
        assert_eq!(read_report_blocks(&out).count(), 0);
        // An RR with a block, behind an SDES; a negative loss (duplicates) keeps its sign.
        let negative = ReportBlock {
            cumulative_lost: -3,
            ..block
        };
        let mut rr = Vec::new();
        write_report(&mut rr, 9, None, Some(negative), "gw");
        let mut compound = out.clone();
        compound.extend_from_slice(&rr);
        assert_eq!(
            read_report_blocks(&compound).collect::<Vec<_>>(),
            vec![negative]
        );
        // A block cut short, or a length past the end, yields nothing.
        assert_eq!(read_report_blocks(&rr[..rr.len() - 30]).count(), 0);
        assert_eq!(read_report_blocks(&rr[..20]).count(), 0);
    }
}
