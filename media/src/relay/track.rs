//! One m-line's track through the relay: the codec both legs use, how payload types of the two
//! legs correspond (and where telephone-event changes clock rate), and the rewriting of
//! sequence numbers and timestamps each way. A relay holds one today (audio); video and further
//! streams add more, one per m-line.

use std::time::Instant;

use str0m::media::Mid;

use crate::codec::{Codec, Format, Payload};

/// One m-line's track.
#[derive(Debug, Default)]
pub(super) struct Track {
    /// The browser leg's m-line.
    pub(super) mid: Option<Mid>,
    /// The codec both legs use (audio).
    pub(super) codec: Option<Codec>,
    /// A video track (90 kHz clock).
    pub(super) video: bool,
    /// The SIP payloads we offered (outgoing) or the SIP offer's common payloads (incoming).
    pub(super) sip_payloads: Vec<Payload>,
    pub(super) mapping: Mapping,
    pub(super) to_sip: Rewrite,
    pub(super) to_browser: Rewrite,
}

impl Track {
    /// The browser leg's payload type for a payload type the SIP side sent (with the clock
    /// rates when telephone-event changes rate). The SIP side should send with the numbers of
    /// our description (RFC 3264 section 5.1), as most do, but many send with those of their
    /// own: both are understood, ours first.
    pub(super) fn browser_pt_for(&self, pt: u8) -> Option<(u8, Option<(u32, u32)>)> {
        let format = self
            .sip_payloads
            .iter()
            .find(|payload| payload.pt == pt)
            .map(|payload| payload.format)
            .or_else(|| {
                self.mapping
                    .sip
                    .iter()
                    .find(|(p, _)| *p == pt)
                    .map(|(_, format)| *format)
            })?;
        self.mapping.to_browser(format)
    }

    /// The RTP clock rate of the codec in use.
    pub(super) fn clock(&self) -> u32 {
        if self.video {
            return 90_000;
        }
        self.codec.map_or(8_000, |codec| codec.clock_rate())
    }
}

/// How payload types of the two legs correspond, and where events change clock rate.
#[derive(Debug, Clone, Default)]
pub(super) struct Mapping {
    /// The browser leg's payload types.
    pub(super) browser: Vec<(u8, Format)>,
    /// The SIP leg's payload types.
    pub(super) sip: Vec<(u8, Format)>,
}

impl Mapping {
    /// The payload type on the other leg for `pt` (browser to SIP when `to_sip`), with the
    /// clock rates (in, out) when they differ (telephone-event at another rate).
    pub(super) fn map(&self, pt: u8, to_sip: bool) -> Option<(u8, Option<(u32, u32)>)> {
        let (from, to) = if to_sip {
            (&self.browser, &self.sip)
        } else {
            (&self.sip, &self.browser)
        };
        let format = from.iter().find(|(p, _)| *p == pt)?.1;
        Mapping::towards(format, to)
    }

    /// The browser leg's payload type for `format`.
    pub(super) fn to_browser(&self, format: Format) -> Option<(u8, Option<(u32, u32)>)> {
        Mapping::towards(format, &self.browser)
    }

    /// The payload type of `to` for `format` (telephone-event at another rate if need be).
    fn towards(format: Format, to: &[(u8, Format)]) -> Option<(u8, Option<(u32, u32)>)> {
        if let Some((out, _)) = to.iter().find(|(_, f)| *f == format) {
            return Some((*out, None));
        }
        let Format::TelephoneEvent(rate) = format else {
            return None;
        };
        to.iter().find_map(|(out, f)| match f {
            Format::TelephoneEvent(other) => Some((*out, Some((rate, *other)))),
            Format::Audio(_) | Format::Video(_) => None,
        })
    }
}

/// Rewrites sequence numbers and timestamps of one direction so that the output stays
/// continuous when the input source changes (a new SSRC after a fork or re-INVITE).
#[derive(Debug, Clone, Default)]
pub(super) struct Rewrite {
    source: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    /// The last output: extended sequence number, timestamp, and when.
    last: Option<(u64, u32, Instant)>,
}

impl Rewrite {
    /// The output sequence number (extended) and timestamp for an input packet.
    pub(super) fn apply(
        &mut self,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        clock: u32,
        now: Instant,
    ) -> (u64, u32) {
        if self.source != Some(ssrc) {
            self.source = Some(ssrc);
            match self.last {
                Some((last_seq, last_ts, at)) => {
                    let elapsed =
                        now.saturating_duration_since(at).as_secs_f64() * f64::from(clock);
                    let next_ts = last_ts.wrapping_add(elapsed.max(1.0) as u32);
                    self.seq_offset = (last_seq as u16).wrapping_add(1).wrapping_sub(seq);
                    self.ts_offset = next_ts.wrapping_sub(timestamp);
                }
                None => {
                    self.seq_offset = 0;
                    self.ts_offset = 0;
                }
            }
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = timestamp.wrapping_add(self.ts_offset);
        let extended = match self.last {
            Some((last, _, _)) => {
                let delta = out_seq.wrapping_sub(last as u16) as i16;
                last.checked_add_signed(i64::from(delta)).unwrap_or(last)
            }
            None => u64::from(out_seq),
        };
        if self.last.is_none_or(|(last, _, _)| extended > last) {
            self.last = Some((extended, out_ts, now));
        }
        (extended, out_ts)
    }
}

/// The payloads kept once `codec` is chosen: it, and telephone-event.
pub(super) fn chosen(payloads: &[Payload], codec: Codec) -> Vec<Payload> {
    payloads
        .iter()
        .filter(|p| match p.format {
            Format::Audio(other) => other == codec,
            Format::TelephoneEvent(_) => true,
            Format::Video(_) => false,
        })
        .cloned()
        .collect()
}

/// Our payloads when we make the first offer: the configured codecs (static payload types where
/// they have one) and telephone-event at their rates.
pub(super) fn default_payloads(codecs: &[Codec]) -> Vec<Payload> {
    let mut payloads: Vec<Payload> = Vec::new();
    for codec in codecs {
        let Some(pt) = codec.static_pt().or_else(|| free_pt(&payloads)) else {
            continue;
        };
        payloads.push(Payload {
            pt,
            format: Format::Audio(*codec),
            fmtp: (*codec == Codec::Opus).then(|| "useinbandfec=1".to_owned()),
        });
    }
    for codec in codecs {
        add_telephone_event(&mut payloads, codec.clock_rate());
    }
    payloads
}

/// Adds telephone-event at `rate` (events 0-16) under a free payload type, unless there is one.
pub(super) fn add_telephone_event(payloads: &mut Vec<Payload>, rate: u32) {
    if !payloads
        .iter()
        .any(|p| p.format == Format::TelephoneEvent(rate))
        && let Some(pt) = free_pt(payloads)
    {
        payloads.push(Payload {
            pt,
            format: Format::TelephoneEvent(rate),
            fmtp: Some("0-16".to_owned()),
        });
    }
}

/// Telephone-event payloads (RFC 4733 section 2.3) with their durations scaled from one clock
/// rate to another, into `out`.
pub(super) fn rescale_events(payload: &[u8], (from, to): (u32, u32), out: &mut Vec<u8>) {
    out.extend_from_slice(payload);
    let start = out.len() - payload.len();
    for block in out[start..].chunks_exact_mut(4) {
        let duration = u64::from(u16::from_be_bytes([block[2], block[3]]));
        let scaled = (duration * u64::from(to) / u64::from(from)).min(0xffff) as u16;
        block[2..4].copy_from_slice(&scaled.to_be_bytes());
    }
}

/// A timestamp moved from one clock rate to another.
pub(super) fn rescale_timestamp(timestamp: u32, (from, to): (u32, u32)) -> u32 {
    (u64::from(timestamp) * u64::from(to) / u64::from(from)) as u32
}

/// A dynamic payload type not used yet, if one is left.
pub(super) fn free_pt(payloads: &[Payload]) -> Option<u8> {
    (96..=127)
        .rev()
        .find(|pt| !payloads.iter().any(|p| p.pt == *pt))
}
