//! The gateway's media relay: WebRTC termination (ICE, DTLS-SRTP) toward the browser and plain
//! RTP toward SIP endpoints.
//!
//! It will be built on str0m, which is sans-IO and lets every browser peer share one UDP port;
//! the relay session is a state machine fed with datagrams and `now`, and the sockets live in a
//! thin tokio driver behind a feature. The gateway never sees str0m types.
//!
//! Nothing of it is built yet. Until it is, the gateway answers the requests that need media
//! (`session-create`, `session-answer`, ...) with "not supported yet: NAME".

#![deny(missing_docs)]
