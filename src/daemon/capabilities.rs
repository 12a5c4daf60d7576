//! Dropping every capability at start: a daemon started by root by hand (or by a unit
//! someone loosened) must not keep root's powers while it parses requests.
//!
//! Under the units (unprivileged user, empty `CapabilityBoundingSet=`) nothing is held and
//! nothing is cleared: `capset` is outside the units' `SystemCallFilter=`, so it is only
//! called when there is something to drop.

use std::fmt;

use caps::CapSet;

const SETS: [CapSet; 4] = [
    CapSet::Ambient,
    CapSet::Effective,
    CapSet::Inheritable,
    CapSet::Permitted,
];

/// What [`drop_all`] found and did, for the one start-up line: `none`, `38 held, all
/// cleared`, or why clearing failed. Not the list of names: as root that is ~40 of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// Nothing was held.
    None,
    /// This many capabilities were permitted; every set is now empty.
    Cleared(usize),
    /// The permitted set could not be read; every set was cleared anyway.
    ClearedUnknown(String),
    /// Clearing a set failed (the process keeps what it held).
    Failed { held: String, error: String },
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dropped::None => f.write_str("none"),
            Dropped::Cleared(n) => write!(f, "{n} held, all cleared"),
            Dropped::ClearedUnknown(e) => write!(f, "unknown ({e}), all cleared"),
            Dropped::Failed { held, error } => write!(f, "{held} held, clearing failed: {error}"),
        }
    }
}

/// Clears every capability set of the calling thread. Call it while that is the only
/// thread: capability sets are per thread, and threads started later inherit them.
pub fn drop_all() -> Dropped {
    let held_anything = SETS.iter().any(|set| match caps::read(None, *set) {
        Ok(s) => !s.is_empty(),
        // Cannot tell: try to clear anyway.
        Err(_) => true,
    });
    if !held_anything {
        return Dropped::None;
    }
    let permitted = caps::read(None, CapSet::Permitted);
    for set in SETS {
        if let Err(e) = caps::clear(None, set) {
            return Dropped::Failed {
                held: permitted
                    .as_ref()
                    .map(|s| s.len().to_string())
                    .unwrap_or_else(|_| "unknown".to_string()),
                error: format!("{set:?}: {e}"),
            };
        }
    }
    match permitted {
        Ok(s) => Dropped::Cleared(s.len()),
        Err(e) => Dropped::ClearedUnknown(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_up_summary_is_one_short_phrase() {
        assert_eq!(Dropped::None.to_string(), "none");
        assert_eq!(Dropped::Cleared(41).to_string(), "41 held, all cleared");
        assert_eq!(
            Dropped::Failed {
                held: "3".into(),
                error: "Effective: EPERM".into()
            }
            .to_string(),
            "3 held, clearing failed: Effective: EPERM"
        );
    }

    #[test]
    fn after_dropping_this_thread_holds_nothing() {
        // Run on a thread of its own: clearing is per thread, the test harness's other
        // threads keep theirs.
        std::thread::spawn(|| {
            let dropped = drop_all();
            assert!(
                !matches!(dropped, Dropped::Failed { .. }),
                "dropping failed: {dropped}"
            );
            for set in SETS {
                assert!(
                    caps::read(None, set).expect("read").is_empty(),
                    "{set:?} still holds capabilities after {dropped}"
                );
            }
        })
        .join()
        .expect("thread");
    }
}
