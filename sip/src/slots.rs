//! Connection slots: how many stream connections one source address, and all together, may
//! hold. Used for the SIP listener's TCP and TLS connections and, by the gateway, for its HTTP
//! listeners: idle sockets from one client must not use up the process's descriptors.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The limits and the connections held under them.
#[derive(Debug, Clone)]
pub struct ConnectionSlots {
    inner: Arc<Mutex<Held>>,
    total: usize,
    per_source: usize,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// One connection's place; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    inner: Arc<Mutex<Held>>,
    source: IpAddr,
}

/// Why a connection gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// Its source holds its share.
    PerSource(usize),
    /// All sources together hold the total.
    Total(usize),
}

impl std::fmt::Display for NoSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoSlot::PerSource(limit) => write!(f, "{limit} connections from this address"),
            NoSlot::Total(limit) => write!(f, "{limit} connections in all"),
        }
    }
}

impl ConnectionSlots {
    /// At most `total` connections, and `per_source` from one address.
    pub fn new(total: usize, per_source: usize) -> Self {
        ConnectionSlots {
            inner: Arc::new(Mutex::new(Held::default())),
            total,
            per_source,
        }
    }

    /// A slot for a connection from `source`, or why not.
    pub fn take(&self, source: IpAddr) -> Result<Slot, NoSlot> {
        let mut held = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if held.total >= self.total {
            return Err(NoSlot::Total(self.total));
        }
        let from_source = held.by_source.entry(source).or_default();
        if *from_source >= self.per_source {
            return Err(NoSlot::PerSource(self.per_source));
        }
        *from_source += 1;
        held.total += 1;
        Ok(Slot {
            inner: self.inner.clone(),
            source,
        })
    }

    /// How many connections hold a slot.
    pub fn held(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self
            .inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        held.total = held.total.saturating_sub(1);
        if let Some(count) = held.by_source.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                held.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_source_and_total_limits_and_slots_come_back() {
        let slots = ConnectionSlots::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = slots.take(a).unwrap();
        let _second = slots.take(a).unwrap();
        assert_eq!(slots.take(a).unwrap_err(), NoSlot::PerSource(2));
        let _third = slots.take(b).unwrap();
        assert_eq!(slots.take(b).unwrap_err(), NoSlot::Total(3));
        drop(first);
        assert_eq!(slots.held(), 2);
        let _again = slots.take(a).unwrap();
        assert_eq!(slots.held(), 3);
    }
}
