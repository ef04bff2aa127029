//! The `quality` session event: how a call's audio fared on each of its legs, sent once as the
//! call ends, just before its `terminated` state. An extension of this gateway (SylkServer
//! sends no such event); clients that do not know it pass it over, as sylkrtc.js does with
//! session events it does not handle.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::error::Result;
use crate::fields::Fields;

/// The `quality` event's data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallQuality {
    /// The codec relayed (`opus`, `PCMU`, ...), if one was negotiated.
    pub codec: Option<String>,
    /// How long the call lasted, from its start.
    pub duration: Duration,
    /// The leg between the gateway and the browser (WebRTC).
    pub browser: LegQuality,
    /// The leg between the gateway and the SIP side (RTP).
    pub sip: LegQuality,
}

/// One leg, seen from the gateway: counts since the call began, and the far end's reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegQuality {
    /// RTP packets the gateway sent on this leg.
    pub packets_sent: u64,
    /// Their payload bytes.
    pub bytes_sent: u64,
    /// RTP packets it received on this leg.
    pub packets_received: u64,
    /// Their payload bytes.
    pub bytes_received: u64,
    /// Packets the far end of this leg sent that never came (by sequence number).
    pub packets_lost: u64,
    /// Interarrival jitter of what came (RFC 3550).
    pub jitter: Duration,
    /// What the far end reported losing of the gateway's packets (its RTCP), if it reported.
    pub remote_packets_lost: Option<u64>,
    /// The jitter the far end reported, if it reported.
    pub remote_jitter: Option<Duration>,
    /// The round trip from RTCP, if the far end answered a sender report.
    pub round_trip_time: Option<Duration>,
}

impl CallQuality {
    pub(super) fn write(&self, out: &mut Map<String, Value>) {
        if let Some(codec) = &self.codec {
            out.insert("codec".into(), json!(codec));
        }
        out.insert("duration".into(), json!(self.duration.as_secs_f64()));
        out.insert("browser".into(), self.browser.to_json());
        out.insert("sip".into(), self.sip.to_json());
    }

    pub(super) fn read(fields: Fields<'_>) -> Result<CallQuality> {
        let leg = |key: &'static str| LegQuality::read(Fields::nested(fields.object(key)?, key));
        Ok(CallQuality {
            codec: fields.opt_string("codec")?.map(str::to_owned),
            duration: fields.opt_seconds("duration")?.unwrap_or_default(),
            browser: leg("browser")?,
            sip: leg("sip")?,
        })
    }
}

impl LegQuality {
    fn to_json(&self) -> Value {
        let mut out = Map::new();
        let mut put = |key: &str, value: Value| {
            out.insert(key.to_owned(), value);
        };
        put("packets_sent", json!(self.packets_sent));
        put("bytes_sent", json!(self.bytes_sent));
        put("packets_received", json!(self.packets_received));
        put("bytes_received", json!(self.bytes_received));
        put("packets_lost", json!(self.packets_lost));
        put("jitter", json!(self.jitter.as_secs_f64()));
        if let Some(lost) = self.remote_packets_lost {
            put("remote_packets_lost", json!(lost));
        }
        if let Some(jitter) = self.remote_jitter {
            put("remote_jitter", json!(jitter.as_secs_f64()));
        }
        if let Some(rtt) = self.round_trip_time {
            put("round_trip_time", json!(rtt.as_secs_f64()));
        }
        Value::Object(out)
    }

    fn read(fields: Fields<'_>) -> Result<LegQuality> {
        let count = |key| Ok::<_, crate::Error>(fields.opt_u64(key)?.unwrap_or(0));
        Ok(LegQuality {
            packets_sent: count("packets_sent")?,
            bytes_sent: count("bytes_sent")?,
            packets_received: count("packets_received")?,
            bytes_received: count("bytes_received")?,
            packets_lost: count("packets_lost")?,
            jitter: fields.opt_seconds("jitter")?.unwrap_or_default(),
            remote_packets_lost: fields.opt_u64("remote_packets_lost")?,
            remote_jitter: fields.opt_seconds("remote_jitter")?,
            round_trip_time: fields.opt_seconds("round_trip_time")?,
        })
    }
}
