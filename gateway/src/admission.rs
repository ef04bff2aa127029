//! How many calls callers who did not authenticate may hold, sans-IO.
//!
//! Anyone who can reach the SIP port may call the echo test or a local user from another
//! domain, without credentials; each such call holds a media port pair. Without a bound, one
//! source took every port of the range and everyone else got 503. Calls are counted per source
//! address and in all; a trusted proxy's address stands for many callers, so only the total
//! bounds it.

use std::collections::HashMap;
use std::net::IpAddr;

use sip::driver::CallHandle;

/// Why a call is not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// This source holds its share.
    PerSource(usize),
    /// All unauthenticated callers together hold the total.
    Total(usize),
}

impl Refusal {
    /// Words for the `Warning` of the refusal.
    pub(crate) fn text(&self) -> String {
        match self {
            Refusal::PerSource(limit) => {
                format!("too many calls without authentication from this address (limit {limit})")
            }
            Refusal::Total(limit) => {
                format!("too many calls without authentication (limit {limit})")
            }
        }
    }
}

/// The unauthenticated calls held now.
#[derive(Debug)]
pub(crate) struct Admission {
    per_source: usize,
    total: usize,
    trusted: Vec<IpAddr>,
    by_source: HashMap<IpAddr, usize>,
    calls: HashMap<CallHandle, IpAddr>,
}

impl Admission {
    pub(crate) fn new(per_source: usize, total: usize, trusted: Vec<IpAddr>) -> Self {
        Admission {
            per_source,
            total,
            trusted,
            by_source: HashMap::new(),
            calls: HashMap::new(),
        }
    }

    /// Admits a new unauthenticated call from `source`, or says why not.
    pub(crate) fn admit(&mut self, call: CallHandle, source: IpAddr) -> Result<(), Refusal> {
        if self.calls.len() >= self.total {
            return Err(Refusal::Total(self.total));
        }
        let held = self.by_source.get(&source).copied().unwrap_or(0);
        if held >= self.per_source && !self.trusted.contains(&source) {
            return Err(Refusal::PerSource(self.per_source));
        }
        *self.by_source.entry(source).or_default() += 1;
        self.calls.insert(call, source);
        Ok(())
    }

    /// A call ended (any call: those not admitted here are ignored).
    pub(crate) fn ended(&mut self, call: CallHandle) {
        let Some(source) = self.calls.remove(&call) else {
            return;
        };
        if let Some(held) = self.by_source.get_mut(&source) {
            *held -= 1;
            if *held == 0 {
                self.by_source.remove(&source);
            }
        }
    }

    /// How many unauthenticated calls are held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn per_source_and_total_limits_with_trusted_proxies() {
        let proxy = ip("127.0.0.5");
        let mut admission = Admission::new(2, 5, vec![proxy]);
        let attacker = ip("127.0.0.9");
        assert_eq!(admission.admit(CallHandle(1), attacker), Ok(()));
        assert_eq!(admission.admit(CallHandle(2), attacker), Ok(()));
        assert_eq!(
            admission.admit(CallHandle(3), attacker),
            Err(Refusal::PerSource(2))
        );
        // Others still get in; a trusted proxy past the per-source limit too.
        assert_eq!(admission.admit(CallHandle(4), ip("127.0.0.2")), Ok(()));
        assert_eq!(admission.admit(CallHandle(5), proxy), Ok(()));
        assert_eq!(admission.admit(CallHandle(6), proxy), Ok(()));
        // The total bounds everyone, the proxy included.
        assert_eq!(
            admission.admit(CallHandle(7), proxy),
            Err(Refusal::Total(5))
        );
        assert_eq!(admission.held(), 5);
        // Calls that end give their place back; unknown calls change nothing.
        admission.ended(CallHandle(1));
        admission.ended(CallHandle(99));
        assert_eq!(admission.admit(CallHandle(8), attacker), Ok(()));
        for call in [2, 4, 5, 6, 8] {
            admission.ended(CallHandle(call));
        }
        assert_eq!(admission.held(), 0);
        assert!(admission.by_source.is_empty());
    }
}
