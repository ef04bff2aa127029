//! Draining: how an instance leaves a group of gateways without dropping a call. SIGTERM or
//! `POST /admin/drain` begins it; from then on new WebSocket connections get 503, `/health`
//! says 503 (HAProxy stops sending connections), OPTIONS probes and new INVITEs, REGISTERs
//! and SUBSCRIBEs get 503 (Kamailio's dispatcher stops sending calls), sylkRTC connections
//! close with 1012 as soon as they have no call (their clients connect again through the load
//! balancer, to another gateway), and calls in progress go on, in-dialog requests included.
//! When the last call ends, or `[instance] drain_timeout` passes, the gateway stops as at
//! shutdown: connections close (ending their calls with BYE) and bindings are removed.

use std::time::Duration;

use sip::driver::SipHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// How often a draining gateway counts its calls.
const POLL: Duration = Duration::from_millis(250);

/// Begins draining; cheap to clone.
#[derive(Debug, Clone)]
pub struct Drain {
    token: CancellationToken,
}

impl Drain {
    pub(crate) fn new(token: CancellationToken) -> Drain {
        Drain { token }
    }

    /// Begins draining; whether it had not begun before.
    pub fn begin(&self) -> bool {
        let first = !self.token.is_cancelled();
        self.token.cancel();
        first
    }

    /// Whether the gateway drains.
    pub fn is_draining(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// Waits for `shutdown`, or for a drain to finish (no call left, or `timeout`); then cancels
/// `stop`, which stops the gateway.
pub(crate) async fn supervise(
    drain: Drain,
    shutdown: CancellationToken,
    stop: CancellationToken,
    metrics: &Metrics,
    sip: SipHandle,
    timeout: Duration,
) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = drain.token.cancelled() => {
            metrics.set_draining();
            sip.set_draining(true);
            info!(
                calls = metrics.calls(),
                timeout_s = timeout.as_secs(),
                "draining: new connections and calls are refused; the calls in progress go on"
            );
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let calls = metrics.calls();
                if calls == 0 {
                    info!("drained: no call left, stopping");
                    break;
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep_until(deadline) => {
                        warn!(calls, "drain timeout: ending the calls left and stopping");
                        break;
                    }
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        }
    }
    stop.cancel();
}
