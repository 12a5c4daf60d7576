//! Positions and entries of the click stream as its consumers see them: the entry id
//! (which orders entries and is the aggregator's stored offset), an entry as read, and how
//! far a consumer group is behind.

use std::fmt;
use std::str::FromStr;

/// A stream entry id `ms-seq`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl FromStr for StreamId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ms, seq) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not a stream id"))?;
        Ok(StreamId {
            ms: ms
                .parse()
                .map_err(|_| format!("{s:?} is not a stream id"))?,
            seq: seq
                .parse()
                .map_err(|_| format!("{s:?} is not a stream id"))?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: StreamId,
    /// Field names and values in entry order (see [`super::event::FieldLookup`]).
    pub fields: Vec<(String, String)>,
}

/// How far a group is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupLag {
    /// Entries not yet delivered to the group plus entries delivered but not acknowledged.
    pub events: u64,
    /// Delivered, not acknowledged.
    pub pending: u64,
    /// Timestamp (ms) of the oldest entry the group has not finished, if any.
    pub oldest_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_parse_order_and_print() {
        let a: StreamId = "1700000000000-0".parse().expect("id");
        let b: StreamId = "1700000000000-12".parse().expect("id");
        let c: StreamId = "1700000000001-0".parse().expect("id");
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-12");
        assert!("garbage".parse::<StreamId>().is_err());
        assert!("1-x".parse::<StreamId>().is_err());
    }
}
