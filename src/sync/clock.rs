//! Clocks for callers: a hybrid logical clock to stamp transactions, and vector clocks to reason
//! about causality.
//!
//! The library never reads a clock; the caller passes physical time in. [`Hlc`] turns those
//! readings into timestamps that never go backwards and are later than every timestamp the peer
//! has seen, so a write made after seeing another is never stamped earlier (and so never loses
//! a last-write-wins comparison to what it overwrote, whatever the physical clocks say) — up to
//! a bound: it follows a timestamp seen elsewhere only as far as [`DEFAULT_MAX_SKEW`] (or the
//! caller's bound) ahead of its own physical reading. One changeset stamped far in the future
//! (a wrong clock, a forged u64::MAX) would otherwise pin every clock that saw it at that value,
//! and from then on concurrent writes would be decided by peer id alone. Servers refuse such
//! changesets too (spec/protocol.md, 5.4).
//!
//! [`VectorClock`] maps each peer to the number of its changesets included. Two changesets are
//! concurrent exactly when neither clock is below or equal to the other; [`crate::sync::Server`]
//! computes the clock of every history entry.

use crate::model::{PeerId, Timestamp};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// How far ahead of its physical reading [`Hlc::stamp`] follows a timestamp seen elsewhere: ten
/// minutes, the reference server's default bound for accepting a changeset's timestamp.
pub const DEFAULT_MAX_SKEW: u64 = 10 * 60 * 1000;

/// A hybrid logical clock in milliseconds. See the module documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hlc {
    last: Timestamp,
    /// The last timestamp this clock issued: its own stamps keep increasing even when `last`
    /// is too far ahead to follow.
    #[serde(default)]
    issued: Timestamp,
}

impl Hlc {
    /// A clock that has seen nothing.
    pub fn new() -> Hlc {
        Hlc::default()
    }

    /// A timestamp for a new local write: the physical reading, unless that is not later than
    /// everything issued or observed so far, in which case one millisecond after that, but
    /// never more than [`DEFAULT_MAX_SKEW`] ahead of the reading on account of what was
    /// observed ([`stamp_within`](Self::stamp_within)).
    pub fn stamp(&mut self, physical_now: Timestamp) -> Timestamp {
        self.stamp_within(physical_now, DEFAULT_MAX_SKEW)
    }

    /// [`stamp`](Self::stamp) with the caller's bound: what was observed is followed up to
    /// `max_skew` ms past `physical_now`; the clock's own stamps still always increase.
    pub fn stamp_within(&mut self, physical_now: Timestamp, max_skew: u64) -> Timestamp {
        let followed = self
            .last
            .saturating_add(1)
            .min(physical_now.saturating_add(max_skew));
        let t = physical_now
            .max(followed)
            .max(self.issued.saturating_add(1));
        self.issued = t;
        self.last = self.last.max(t);
        t
    }

    /// Takes note of a timestamp seen on a changeset from elsewhere.
    pub fn observe(&mut self, timestamp: Timestamp) {
        self.last = self.last.max(timestamp);
    }

    /// The latest timestamp issued or observed.
    pub fn last(&self) -> Timestamp {
        self.last
    }
}

/// A vector clock: for each peer, how many of its changesets (by client version) are included.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorClock {
    entries: BTreeMap<PeerId, u64>,
}

impl VectorClock {
    /// The empty clock.
    pub fn new() -> VectorClock {
        VectorClock::default()
    }

    /// The count for a peer.
    pub fn get(&self, peer: PeerId) -> u64 {
        self.entries.get(&peer).copied().unwrap_or(0)
    }

    /// Raises a peer's count to at least `version`.
    pub fn observe(&mut self, peer: PeerId, version: u64) {
        if version > 0 {
            let e = self.entries.entry(peer).or_insert(0);
            *e = (*e).max(version);
        }
    }

    /// The least clock above both.
    pub fn join(&mut self, other: &VectorClock) {
        for (p, v) in &other.entries {
            self.observe(*p, *v);
        }
    }

    /// Whether every count is at most the other's.
    pub fn le(&self, other: &VectorClock) -> bool {
        self.entries.iter().all(|(p, v)| *v <= other.get(*p))
    }

    /// Whether neither clock includes the other: the changesets are concurrent.
    pub fn concurrent(&self, other: &VectorClock) -> bool {
        !self.le(other) && !other.le(self)
    }
}

impl PartialOrd for VectorClock {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self.le(other), other.le(self)) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (false, false) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hlc_never_goes_back_and_passes_what_it_saw() {
        let mut c = Hlc::new();
        assert_eq!(c.stamp(100), 100);
        assert_eq!(c.stamp(50), 101);
        c.observe(500);
        assert_eq!(c.stamp(200), 501);
        assert_eq!(c.stamp(1000), 1000);
        assert_eq!(c.last(), 1000);
    }

    #[test]
    fn hlc_follows_remote_time_only_within_the_skew() {
        let mut c = Hlc::new();
        c.observe(u64::MAX);
        assert_eq!(c.stamp_within(1_000, 100), 1_100);
        assert_eq!(
            c.stamp_within(1_000, 100),
            1_101,
            "own stamps still increase"
        );
        assert_eq!(c.stamp_within(5_000, 100), 5_100);
        let mut d = Hlc::new();
        d.observe(5_050);
        assert_eq!(
            d.stamp_within(5_000, 100),
            5_051,
            "within the skew it follows"
        );
        let mut e = Hlc::new();
        e.observe(u64::MAX);
        assert_eq!(e.stamp(1_000), 1_000 + DEFAULT_MAX_SKEW);
    }

    #[test]
    fn vector_clocks_order_and_detect_concurrency() {
        let mut a = VectorClock::new();
        a.observe(PeerId(1), 2);
        let mut b = a.clone();
        b.observe(PeerId(2), 1);
        assert!(a < b);
        let mut c = a.clone();
        c.observe(PeerId(1), 3);
        assert!(b.concurrent(&c));
        assert_eq!(b.partial_cmp(&c), None);
        let mut d = b.clone();
        d.join(&c);
        assert!(b <= d && c <= d);
        assert_eq!(d.get(PeerId(1)), 3);
    }
}
