//! The relay's SIP side as descriptions go: the keys (or DTLS-SRTP) of our offers, what the
//! far end's description says (keys, target, payload types, video), the DTLS-SRTP handshakes
//! it calls for, and the descriptions we write toward it.

use super::Relay;
use super::sip_leg::answered_key;
use crate::codec::Format;
use crate::error::Result;
use crate::sdp::{Description, Direction, MediaLine, SipDescription};
use crate::srtp::{Crypto, SessionKeys, SrtpMode};

impl Relay {
    pub(super) fn apply_sip_answer(&mut self, description: &Description) -> Result<()> {
        self.apply_sip_side(description, false)?;
        self.version += 1;
        Ok(())
    }

    /// New keys for an offer to the SIP side, as the policy says: SDES keys, or DTLS-SRTP.
    pub(super) fn offer_keys(&mut self) -> Result<()> {
        let policy = &self.config.srtp;
        if policy.dtls_offers && policy.mode != SrtpMode::Never {
            self.offered_keys = Vec::new();
            self.sip_secure = true;
            return self.sip.offer_dtls();
        }
        self.offered_keys = policy.offer();
        self.sip_secure = policy.mode == SrtpMode::Mandatory;
        Ok(())
    }

    /// Takes the SIP side's key (if any) from a description: an offer we answer, or the answer
    /// to our offer (whose key must answer one of ours).
    pub(super) fn take_sip_keys(
        &mut self,
        audio: &MediaLine,
        key: Option<&Crypto>,
        offer: bool,
    ) -> Result<()> {
        if audio.is_dtls_profile() {
            return self.sip.take_dtls(audio, offer);
        }
        self.sip.dtls = None;
        self.sip.rtcp_keys = None;
        let Some(remote) = key else {
            self.sip.srtp = None;
            if offer {
                self.sip_secure = false;
            }
            return Ok(());
        };
        let local = if offer {
            let local = SessionKeys::answer_key(self.sip.srtp.as_ref(), remote);
            self.sip_secure = audio.is_srtp_profile();
            local
        } else {
            answered_key(&self.offered_keys, remote, &audio.proto)?
        };
        self.sip.srtp = Some(SessionKeys::rekey(
            self.sip.srtp.take(),
            local,
            remote.clone(),
        ));
        Ok(())
    }

    /// The keys our next SIP-side description gives: the one in use, else those of our offer
    /// (none with DTLS-SRTP, whose keys are never written).
    pub(super) fn sip_keys(&self) -> Vec<Crypto> {
        if self.sip.dtls.is_some() {
            return Vec::new();
        }
        match &self.sip.srtp {
            Some(srtp) => vec![srtp.local.clone()],
            None => self.offered_keys.clone(),
        }
    }

    /// Reads the SIP side's description: payload types, target, direction and keys.
    pub(super) fn apply_sip_side(&mut self, description: &Description, offer: bool) -> Result<()> {
        let (_, audio, key) = description.sip_audio_with(&self.config.srtp)?;
        self.take_sip_keys(audio, key, offer)?;
        let formats: Vec<Format> = self.track.sip_payloads.iter().map(|p| p.format).collect();
        self.track.mapping.sip = audio
            .payloads
            .iter()
            .filter(|payload| formats.contains(&payload.format))
            .map(|payload| (payload.pt, payload.format))
            .collect();
        self.sip.take_remote(audio, offer);
        self.sip.last_rtp = self.sip.last_rtp.max(self.created);
        self.apply_sip_video(description, offer)?;
        if !offer {
            // The answer to our offer is in: DTLS-SRTP starts now (for an offer, once our
            // answer is out, `start_sip_dtls`).
            self.start_sip_dtls()?;
        }
        Ok(())
    }

    /// Starts the DTLS-SRTP handshakes that the latest descriptions call for.
    pub(super) fn start_sip_dtls(&mut self) -> Result<()> {
        let now = self.now;
        self.sip.start_dtls(now)?;
        if let Some(video) = &mut self.video {
            video.sip.start_dtls(now)?;
        }
        Ok(())
    }

    /// The answer to the SIP side's latest offer as it stands now (after the browser declined
    /// what that offer added).
    pub(super) fn sip_answer_again(&mut self) -> Option<String> {
        let (description, audio_index) = self.answering.take()?;
        Some(self.sip_description(self.sip.direction, Some((&description, audio_index))))
    }

    pub(super) fn sip_description(
        &self,
        direction: Direction,
        answering: Option<(&Description, usize)>,
    ) -> String {
        let keys = self.sip_keys();
        let video_keys = self
            .video
            .as_ref()
            .map(|video| video.keys())
            .unwrap_or_default();
        // An offer puts video in the direction of the audio (hold is both); an answer mirrors
        // the offer's video direction.
        // Video removed (by the browser's offer being made now, or earlier): its m-line stays,
        // declined.
        let removed = if self.removing_video {
            self.video
                .as_ref()
                .and_then(|video| video.track.sip_payloads.first())
                .map(|payload| payload.pt)
        } else {
            self.video_gone.filter(|_| self.video.is_none())
        };
        let video = self
            .video
            .as_ref()
            .filter(|_| !self.removing_video)
            .map(|video| {
                let video_direction = if answering.is_some() {
                    video.sip.direction
                } else {
                    self.video_offer_direction.unwrap_or(direction)
                };
                video.description(video_direction, &video_keys)
            });
        SipDescription {
            session_id: self.session_id,
            version: self.version,
            rtp: self.config.sip_rtp,
            payloads: &self.track.sip_payloads,
            direction,
            answering,
            crypto: &keys,
            secure: self.sip_secure,
            video,
            removed_video: removed,
            dtls: self.sip.dtls.as_ref().map(|dtls| &dtls.line),
        }
        .write()
    }
}
