//! Mid-call changes of a relay's session: the browser's new offer (re-offered to the SIP side,
//! answered to the browser once the SIP side has), and the SIP side's changes that the browser
//! must know of (offered to the browser, whose answer is taken here).

use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::media::{Direction as WebRtcDirection, MediaKind};

use super::{Negotiation, Relay};
use crate::codec::{Codec, Format};
use crate::error::{Error, Result};
use crate::sdp::{Description, declined_as_offered, own_msid};

impl Relay {
    /// The browser's new offer mid-call (hold, resume, a new address after it changed
    /// network): the offer for the SIP side's re-INVITE, in the direction the browser asks
    /// for. The browser's answer is made once the SIP side answers
    /// ([`Relay::finish_browser_reoffer`]); until then the call goes on as it was.
    pub fn browser_reoffer(&mut self, offer: &str) -> Result<String> {
        if !self.ready_for_browser_offer() || self.browser.rtc.is_none() {
            return Err(Error::WebRtc(
                "the call is not ready for a new offer".to_owned(),
            ));
        }
        let description = Description::parse(offer)?;
        let (_, audio) = description.audio().ok_or(Error::NoAudio)?;
        let direction = audio.direction;
        SdpOffer::from_sdp_string(offer)
            .map_err(|error| Error::Sdp(crate::sdp::without_keys(&error.to_string())))?;
        self.video_offer_direction = description.video().map(|(_, line)| line.direction);
        // The browser stops its video (the m-line at port 0): declined toward the SIP side.
        self.removing_video = description.video().is_none()
            && self
                .video
                .as_ref()
                .is_some_and(|video| video.format.is_some());
        if self.video.is_none() {
            // The browser adds video: offered to the SIP side when the call has a port for it.
            self.video_from_browser_offer(&description);
        }
        self.negotiation = Negotiation::AwaitingSipReanswer {
            offer_text: offer.to_owned(),
        };
        self.version += 1;
        self.offered_keys = self.sip_keys();
        Ok(self.sip_description(direction, None))
    }

    /// The SIP side's answer to [`Relay::browser_reoffer`]: the browser's answer.
    pub fn finish_browser_reoffer(&mut self, now: Instant, sip_answer: &str) -> Result<String> {
        let Negotiation::AwaitingSipReanswer { offer_text } =
            std::mem::replace(&mut self.negotiation, Negotiation::Done)
        else {
            return Err(Error::WebRtc("no new offer is waiting".to_owned()));
        };
        let accepted = self.accept_sip_reanswer(sip_answer);
        if self.removing_video {
            // Gone whatever the answer says of it.
            self.drop_video();
            self.removing_video = false;
        }
        // The browser's own offer says what becomes of its video m-line.
        self.stop_browser_video = None;
        accepted?;
        let answer = self.apply_browser_offer(&offer_text)?;
        let browser = Description::parse(&offer_text)?;
        let sends = browser
            .audio()
            .is_some_and(|(_, audio)| audio.direction.sends());
        if sends && !self.browser.sends {
            // Resumed: its silence is counted from now.
            self.browser.last_rtp = now;
        }
        self.browser.sends = sends;
        let answer = declined_as_offered(&answer.to_sdp_string(), &browser);
        Ok(self.with_sip_bandwidth(own_msid(&answer, &offer_text)))
    }

    /// After the SIP side's new offer was taken ([`Relay::answer_sip_offer`]): our offer to the
    /// browser when what the browser sends or receives changed (hold, resume), else none. Its
    /// answer goes to [`Relay::accept_browser_update`].
    pub fn browser_update(&mut self) -> Result<Option<String>> {
        // An offer the browser has not answered (its owner gave up waiting and answered the
        // SIP side without it) is superseded by the new one.
        if !matches!(
            self.negotiation,
            Negotiation::Done | Negotiation::AwaitingBrowserUpdate { .. }
        ) {
            return Ok(None);
        }
        let (true, Some(mid)) = (self.browser.rtc.is_some(), self.track.mid) else {
            return Ok(None);
        };
        // Toward the browser we send what the SIP side sends us, and take from it what we
        // send the SIP side.
        let direction = match (self.sip.direction.receives(), self.sip.direction.sends()) {
            (true, true) => WebRtcDirection::SendRecv,
            (true, false) => WebRtcDirection::SendOnly,
            (false, true) => WebRtcDirection::RecvOnly,
            (false, false) => WebRtcDirection::Inactive,
        };
        let keep = self.local_video_pts();
        // The SIP side moved to another codec: the browser is offered that one alone (with
        // telephone-event), so that it sends it.
        let switched = std::mem::take(&mut self.codec_switched);
        let audio_keep = self.browser_audio_pts();
        let stop = self.stop_browser_video.take();
        let rtc = self
            .browser
            .rtc
            .as_mut()
            .ok_or_else(|| Error::WebRtc("no WebRTC peer".to_owned()))?;
        let mut api = rtc.sdp_api();
        if switched {
            // The same direction makes no offer: away and back makes one (in the direction
            // set last) whose codecs are then narrowed.
            let away = if direction == WebRtcDirection::Inactive {
                WebRtcDirection::SendRecv
            } else {
                WebRtcDirection::Inactive
            };
            api.set_direction(mid, away);
        }
        api.set_direction(mid, direction);
        if let Some(stopped) = stop {
            // The SIP side removed the video: the browser's m-line goes to port 0.
            api.stop_media(stopped);
        }
        let mut added_video = false;
        if let Some(video) = &mut self.video {
            let sip = video.sip.direction;
            let video_direction = match (sip.receives(), sip.sends()) {
                (true, true) => WebRtcDirection::SendRecv,
                (true, false) => WebRtcDirection::SendOnly,
                (false, true) => WebRtcDirection::RecvOnly,
                (false, false) => WebRtcDirection::Inactive,
            };
            match video.track.mid {
                Some(video_mid) => api.set_direction(video_mid, video_direction),
                // The SIP side added video: a new m-line for the browser.
                None => {
                    video.track.mid =
                        Some(api.add_media(MediaKind::Video, video_direction, None, None, None));
                    added_video = true;
                }
            }
        }
        let Some((offer, pending)) = api.apply() else {
            return Ok(None);
        };
        self.negotiation = Negotiation::AwaitingBrowserUpdate {
            pending: Box::new(pending),
        };
        let mut offer = offer.to_sdp_string();
        if added_video {
            // The new video m-line offers only the format the SIP side's video is in.
            offer = crate::sdp::restrict_video(&offer, keep.as_deref());
        }
        if switched {
            offer = crate::sdp::keep_formats(&offer, "audio", &audio_keep);
        }
        Ok(Some(offer))
    }

    /// The browser leg's payload types for the call's codec then telephone-event (at the
    /// codec's rate when the leg has it, else every rate).
    fn browser_audio_pts(&self) -> Vec<u8> {
        let browser = &self.track.mapping.browser;
        let codec = self.track.codec;
        let rate = codec.map(Codec::clock_rate);
        let at_rate = browser
            .iter()
            .any(|(_, format)| Some(*format) == rate.map(Format::TelephoneEvent));
        let codec_pts = browser
            .iter()
            .filter(|(_, format)| codec.is_some_and(|codec| *format == Format::Audio(codec)));
        let event_pts = browser.iter().filter(|(_, format)| match format {
            Format::TelephoneEvent(other) => !at_rate || Some(*other) == rate,
            Format::Audio(_) | Format::Video(_) => false,
        });
        codec_pts.chain(event_pts).map(|(pt, _)| *pt).collect()
    }

    /// Whether the browser may make a new offer: the session is agreed, or our offer to it
    /// went unanswered (its own offer supersedes ours).
    fn ready_for_browser_offer(&self) -> bool {
        matches!(
            self.negotiation,
            Negotiation::Done | Negotiation::AwaitingBrowserUpdate { .. }
        )
    }

    /// Whether an offer to the browser waits for its answer.
    pub fn browser_update_pending(&self) -> bool {
        matches!(self.negotiation, Negotiation::AwaitingBrowserUpdate { .. })
    }

    /// The browser's answer to [`Relay::browser_update`]; when it takes less than was offered
    /// (declines the video the SIP side added, or answers a stream inactive), the SIP side's
    /// answer as it now stands, to replace the one held for it.
    pub fn accept_browser_update(&mut self, now: Instant, answer: &str) -> Result<Option<String>> {
        let Negotiation::AwaitingBrowserUpdate { pending } =
            std::mem::replace(&mut self.negotiation, Negotiation::Done)
        else {
            return Err(Error::WebRtc(
                "no offer is waiting for an answer".to_owned(),
            ));
        };
        let description = Description::parse(answer)?;
        self.apply_browser_answer(*pending, answer)?;
        let sends = description
            .audio()
            .is_some_and(|(_, audio)| audio.direction.sends());
        if sends && !self.browser.sends {
            self.browser.last_rtp = now;
        }
        self.browser.sends = sends;
        if self.answering.is_none() {
            return Ok(None);
        }
        // The SIP side's answer says what the browser's says: what the browser sends the SIP
        // side gets, what it takes the SIP side may send (never more than was offered).
        let mut changed = false;
        if let Some((_, audio)) = description.audio() {
            let narrowed = self.sip.direction.narrowed(audio.direction);
            changed |= narrowed != self.sip.direction;
            self.sip.direction = narrowed;
        }
        let video_mid = self.video.as_ref().and_then(|video| video.track.mid);
        let browser_video = video_mid.and_then(|mid| {
            description
                .lines
                .iter()
                .find(|line| line.mid.as_deref() == Some(&*mid))
        });
        match (&mut self.video, browser_video) {
            // Declined by the browser: declined to the SIP side too, and gone. Its m-line on
            // the browser leg is already stopped.
            (Some(video), Some(line)) if line.port == 0 => {
                self.video_gone = video.track.sip_payloads.first().map(|payload| payload.pt);
                self.video = None;
                changed = true;
            }
            (Some(video), Some(line)) => {
                let narrowed = video.sip.direction.narrowed(line.direction);
                changed |= narrowed != video.sip.direction;
                video.sip.direction = narrowed;
            }
            _ => {}
        }
        if !changed {
            self.answering = None;
            return Ok(None);
        }
        Ok(self.sip_answer_again())
    }

    /// Whether the browser's new offer changes what the SIP side must hear (the direction of
    /// the stream); when it does not (an ICE restart after the browser changed network, the
    /// session offered again), it is answered on the browser leg alone
    /// ([`Relay::answer_browser_offer`]).
    pub fn browser_offer_concerns_sip(&self, offer: &str) -> Result<bool> {
        let description = Description::parse(offer)?;
        let (_, audio) = description.audio().ok_or(Error::NoAudio)?;
        let video_changed = match (&self.video, description.video()) {
            (Some(video), Some((_, line))) => line.direction != video.sip.direction,
            // Video dropped, or added where the call has a port for it: only the SIP side can
            // say whether it takes it.
            (Some(_), None) => true,
            (None, Some(_)) => self.config.sip_video.is_some(),
            (None, None) => false,
        };
        Ok(audio.direction != self.sip.direction || video_changed)
    }

    /// Answers the browser's new offer on its leg alone (str0m's renegotiation: new ICE
    /// credentials, candidates).
    pub fn answer_browser_offer(&mut self, now: Instant, offer: &str) -> Result<String> {
        if !self.ready_for_browser_offer() {
            return Err(Error::WebRtc(
                "the call is not ready for a new offer".to_owned(),
            ));
        }
        let browser = Description::parse(offer)?;
        let answer = self.apply_browser_offer(offer)?;
        // Our unanswered offer, if any, is superseded.
        self.negotiation = Negotiation::Done;
        // A new network: consent is counted from now.
        self.browser.last_stun = now;
        Ok(own_msid(
            &declined_as_offered(&answer.to_sdp_string(), &browser),
            offer,
        ))
    }

    /// Applies the browser's new offer to its leg (its video restricted to what the call
    /// relays): str0m's answer, and the payload types.
    fn apply_browser_offer(&mut self, offer: &str) -> Result<str0m::change::SdpAnswer> {
        let browser = Description::parse(offer)?;
        let keep = self.browser_video_keep(&browser);
        let offer = SdpOffer::from_sdp_string(&crate::sdp::restrict_video(offer, keep.as_deref()))
            .map_err(|error| Error::Sdp(crate::sdp::without_keys(&error.to_string())))?;
        let rtc = self
            .browser
            .rtc
            .as_mut()
            .ok_or_else(|| Error::WebRtc("no WebRTC peer".to_owned()))?;
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|error| Error::WebRtc(error.to_string()))?;
        self.learn_browser_pts();
        Ok(answer)
    }

    /// The SIP side refused [`Relay::browser_reoffer`]: the call goes on as it was.
    pub fn abandon_browser_reoffer(&mut self) {
        if matches!(self.negotiation, Negotiation::AwaitingSipReanswer { .. }) {
            self.negotiation = Negotiation::Done;
            self.removing_video = false;
            // Video the browser wanted to add, which the SIP side never took.
            if self
                .video
                .as_ref()
                .is_some_and(|video| video.format.is_none())
            {
                self.video = None;
            }
        }
    }
}

#[cfg(test)]
mod tests;
