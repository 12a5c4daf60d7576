//! A click event and its wire format in the click stream: each flushed batch is ONE stream
//! entry (a "packed" entry, layout version 3: see [`pack`]); entries of the earlier layouts
//! (version 1, one click per entry, before 0.2; version 2, packed without a string table)
//! are still read, so an upgrade loses none.

use std::collections::HashMap;

use uuid::Uuid;

/// Version of the one-click-per-entry layout (field `v`), written by releases before 0.2 and
/// still read, so an upgrade with entries in the stream loses none.
pub const CLICK_EVENT_VERSION: &str = "1";
/// Version of the packed layout written now: one entry carries a whole flushed batch of
/// clicks (fields `v` = `3`, `n` = number of clicks, `strings` = the entry's string table,
/// `events` = the records, see [`pack`]). One `XADD`, one delivery per group and one `XACK`
/// per batch instead of per click; each distinct user agent and referrer once per entry.
pub const PACKED_VERSION: &str = "3";
/// The packed layout without a string table (agents and referrers inline in every record),
/// written by 0.1's later releases and still read.
pub const PACKED_V2: &str = "2";
/// Separates the records of a packed entry (and the strings of its table).
const RECORD_SEP: char = '\x1e';
/// Separates the values of one record.
const UNIT_SEP: char = '\x1f';
/// The values of a packed record, in order: the version-1 fields without `v`. In version 3
/// `ua` and `ref` are indexes into the entry's string table.
const PACKED_FIELDS: [&str; ClickEvent::FIELD_COUNT - 1] = [
    "id", "link", "owner", "at", "region", "ua", "ref", "lat", "kind", "ip",
];
/// Positions of the values that version 3 stores in the string table.
const UA_AT: usize = 5;
const REF_AT: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickKind {
    /// The visitor reached the target (302, XHR redirect answer, or successful verify).
    Click,
    /// The visitor was stopped before the target (password form, per-link cap).
    Gated,
}

impl ClickKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClickKind::Click => "click",
            ClickKind::Gated => "gated",
        }
    }
}

/// A fresh UUIDv7 for a click stamped `at_ms`: that millisecond and 74 random bits from the
/// thread's generator. `Uuid::now_v7` reads the clock again and asks the kernel for random
/// bytes (a `getrandom` system call) on every click; the redirect already has the time.
pub fn event_id(at_ms: i64) -> Uuid {
    let random: [u8; 10] = rand::random();
    uuid::Builder::from_unix_timestamp_millis(at_ms.max(0) as u64, &random).into_uuid()
}

/// One visit, as appended to the stream. `id` is unique per event so consumers can drop
/// duplicates (a batch resent after an ambiguous Redis failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickEvent {
    pub id: Uuid,
    pub link_id: Uuid,
    pub owner_key_id: Uuid,
    pub at_ms: i64,
    pub region: String,
    pub user_agent: String,
    pub referer: String,
    /// Server-side time from request to answer, microseconds.
    pub latency_us: u32,
    pub kind: ClickKind,
    /// The client address, only for the worker's GeoIP lookup; never stored in PostgreSQL.
    pub client_ip: Option<std::net::IpAddr>,
    /// The URL a redirect rule sent the visitor to; `None` when it was the link's own.
    pub rule_url: Option<String>,
}

/// Named string fields of a stream entry, however they are held.
pub trait FieldLookup {
    fn field(&self, name: &str) -> Option<&str>;
}

impl FieldLookup for std::collections::HashMap<String, String> {
    fn field(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// As read from the stream: in entry order; the first of repeated names wins.
impl FieldLookup for Vec<(String, String)> {
    fn field(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A stream entry that is not a valid click event (wrong version, missing or bad field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid click event: {0}")]
pub struct InvalidEvent(pub String);

impl ClickEvent {
    pub const FIELD_COUNT: usize = 11;

    /// Stream entry fields, in `XADD` order.
    pub fn fields(&self) -> [(&'static str, String); Self::FIELD_COUNT] {
        [
            ("v", CLICK_EVENT_VERSION.to_string()),
            ("id", self.id.to_string()),
            ("link", self.link_id.to_string()),
            ("owner", self.owner_key_id.to_string()),
            ("at", self.at_ms.to_string()),
            ("region", self.region.clone()),
            ("ua", self.user_agent.clone()),
            ("ref", self.referer.clone()),
            ("lat", self.latency_us.to_string()),
            ("kind", self.kind.as_str().to_string()),
            (
                "ip",
                self.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            ),
        ]
    }

    /// Parses a stream entry written by [`ClickEvent::fields`]; rejects anything else with a
    /// message naming the field.
    pub fn from_fields(fields: &impl FieldLookup) -> Result<Self, InvalidEvent> {
        let version = fields
            .field("v")
            .ok_or_else(|| InvalidEvent("field `v` is missing".to_string()))?;
        if version != CLICK_EVENT_VERSION {
            return Err(InvalidEvent(format!(
                "version {version:?} is not supported"
            )));
        }
        Self::from_named(fields)
    }

    /// The fields of one click, however named fields are held (a version-1 entry, or one
    /// record of a packed entry).
    fn from_named(fields: &impl FieldLookup) -> Result<Self, InvalidEvent> {
        let get = |name: &str| {
            let value = fields
                .field(name)
                .ok_or_else(|| InvalidEvent(format!("field `{name}` is missing")))?;
            // No HTTP header holds NUL, but an entry is not only written by us; PostgreSQL's
            // text cannot store it, so it would stop the consumers on every retry.
            if value.contains('\0') {
                return Err(InvalidEvent(format!("field `{name}` contains NUL")));
            }
            Ok(value)
        };
        let uuid = |name: &str| {
            get(name).and_then(|v| {
                Uuid::parse_str(v)
                    .map_err(|_| InvalidEvent(format!("field `{name}` is not a UUID")))
            })
        };
        let kind = match get("kind")? {
            "click" => ClickKind::Click,
            "gated" => ClickKind::Gated,
            other => {
                return Err(InvalidEvent(format!(
                    "field `kind` has unknown value {other:?}"
                )))
            }
        };
        let at_ms: i64 = get("at")?
            .parse()
            .map_err(|_| InvalidEvent("field `at` is not a millisecond timestamp".to_string()))?;
        // From 2000-01-01 to the end of 9999 UTC: every click the API stamps, and always
        // storable (PostgreSQL's timestamps end before chrono's do at the far past).
        if !(946_684_800_000..253_402_300_800_000).contains(&at_ms) {
            return Err(InvalidEvent(
                "field `at` is out of range (2000-01-01 to 9999-12-31 UTC)".to_string(),
            ));
        }
        let latency_us: u32 = get("lat")?.parse().map_err(|_| {
            InvalidEvent("field `lat` is not a whole number of microseconds".to_string())
        })?;
        let client_ip = match fields.field("ip") {
            None | Some("") => None,
            Some(v) => Some(
                v.parse()
                    .map_err(|_| InvalidEvent("field `ip` is not an IP address".to_string()))?,
            ),
        };
        Ok(ClickEvent {
            id: uuid("id")?,
            link_id: uuid("link")?,
            owner_key_id: uuid("owner")?,
            at_ms,
            region: clip(get("region")?, 64),
            user_agent: clip(get("ua")?, 512),
            referer: clip(get("ref")?, 1024),
            latency_us,
            kind,
            client_ip,
            rule_url: match fields.field("url") {
                None | Some("") => None,
                Some(url) => {
                    if url.contains('\0') {
                        return Err(InvalidEvent("field `url` contains NUL".to_string()));
                    }
                    Some(clip(url, 2048))
                }
            },
        })
    }
}

/// One record of a packed entry, its values named by position, and the optional rule URL.
struct PackedRecord<'a>([&'a str; PACKED_FIELDS.len()], Option<&'a str>);

impl FieldLookup for PackedRecord<'_> {
    fn field(&self, name: &str) -> Option<&str> {
        if name == "url" {
            return self.1;
        }
        PACKED_FIELDS
            .iter()
            .position(|f| *f == name)
            .map(|i| self.0[i])
    }
}

/// Appends `s` to a packed record, with the two separators (which no HTTP header value can
/// hold, but a click event is not only built from headers) replaced by a space.
fn push_value(out: &mut String, s: &str) {
    if s.contains([RECORD_SEP, UNIT_SEP]) {
        out.extend(s.chars().map(|c| {
            if c == RECORD_SEP || c == UNIT_SEP {
                ' '
            } else {
                c
            }
        }));
    } else {
        out.push_str(s);
    }
}

/// A packed entry's two text values: the string table and the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// `strings`: every distinct user agent and referrer of the batch, once, separated by
    /// `\x1e`.
    pub strings: String,
    /// `events`: one record per click, records separated by `\x1e`, a record's values (in
    /// `PACKED_FIELDS` order, `ua` and `ref` as indexes into `strings`) by `\x1f`.
    pub events: String,
}

/// A batch as the values of one version-3 entry. Text, so `XRANGE` in `redis-cli` stays
/// readable; a user agent (100–200 bytes, a handful of distinct ones per batch) is written
/// once per entry instead of once per click, which is most of a record's bytes: Redis stores,
/// persists and hands out each byte twice (both consumer groups), and both consumers parse it.
/// Built without the formatting machinery: this runs for every click.
pub fn pack(events: &[ClickEvent]) -> Packed {
    let mut table: StringTable<'_> = HashMap::default();
    let mut strings = String::new();
    let mut out = String::with_capacity(events.len() * 140);
    let mut uuid_buf = Uuid::encode_buffer();
    let mut num = itoa::Buffer::new();
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(RECORD_SEP);
        }
        for id in [&e.id, &e.link_id, &e.owner_key_id] {
            out.push_str(id.hyphenated().encode_lower(&mut uuid_buf));
            out.push(UNIT_SEP);
        }
        out.push_str(num.format(e.at_ms));
        out.push(UNIT_SEP);
        push_value(&mut out, &e.region);
        out.push(UNIT_SEP);
        out.push_str(num.format(intern(&mut table, &mut strings, &e.user_agent)));
        out.push(UNIT_SEP);
        out.push_str(num.format(intern(&mut table, &mut strings, &e.referer)));
        out.push(UNIT_SEP);
        out.push_str(num.format(e.latency_us));
        out.push(UNIT_SEP);
        out.push_str(e.kind.as_str());
        out.push(UNIT_SEP);
        if let Some(ip) = e.client_ip {
            use std::fmt::Write;
            let _ = write!(out, "{ip}");
        }
        if let Some(url) = &e.rule_url {
            out.push(UNIT_SEP);
            out.push_str(num.format(intern(&mut table, &mut strings, url)));
        }
    }
    Packed {
        strings,
        events: out,
    }
}

type StringTable<'a> = HashMap<&'a str, usize, foldhash::fast::RandomState>;

/// The index of `s` in the entry's string table, appending it on first use.
fn intern<'a>(table: &mut StringTable<'a>, strings: &mut String, s: &'a str) -> usize {
    let next = table.len();
    *table.entry(s).or_insert_with(|| {
        if next > 0 {
            strings.push(RECORD_SEP);
        }
        push_value(strings, s);
        next
    })
}

/// A click of a stream entry that could not be read: the reason and the record as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRecord {
    pub error: InvalidEvent,
    /// The record's text (a packed record, with a version-3 entry's table strings in place
    /// of their indexes when those could be resolved), empty for a version-1 entry (whose
    /// fields the dead letter copies instead).
    pub raw: String,
}

/// The clicks of one stream entry, either layout. `Err` when the entry as a whole cannot be
/// read (unknown version, a packed entry whose count does not match its records); otherwise
/// one result per click, so one bad record does not cost the others.
pub fn events_of_entry(
    fields: &impl FieldLookup,
) -> Result<Vec<Result<ClickEvent, InvalidRecord>>, InvalidEvent> {
    let with_table = match fields.field("v") {
        Some(PACKED_VERSION) => true,
        Some(PACKED_V2) => false,
        _ => {
            return Ok(vec![ClickEvent::from_fields(fields).map_err(|error| {
                InvalidRecord {
                    error,
                    raw: String::new(),
                }
            })])
        }
    };
    let n: usize = fields
        .field("n")
        .ok_or_else(|| InvalidEvent("field `n` is missing".to_string()))?
        .parse()
        .map_err(|_| InvalidEvent("field `n` is not a count".to_string()))?;
    let events = fields
        .field("events")
        .ok_or_else(|| InvalidEvent("field `events` is missing".to_string()))?;
    let records: Vec<&str> = if events.is_empty() {
        Vec::new()
    } else {
        events.split(RECORD_SEP).collect()
    };
    if records.len() != n {
        return Err(InvalidEvent(format!(
            "field `n` says {n} clicks but `events` holds {}",
            records.len()
        )));
    }
    let table: Vec<&str> = if with_table {
        fields
            .field("strings")
            .ok_or_else(|| InvalidEvent("field `strings` is missing".to_string()))?
            .split(RECORD_SEP)
            .collect()
    } else {
        Vec::new()
    };
    Ok(records
        .into_iter()
        .enumerate()
        .map(|(i, record)| {
            let invalid = |msg: String| InvalidRecord {
                error: InvalidEvent(format!("record {i}: {msg}")),
                raw: record.to_string(),
            };
            let parts: Vec<&str> = record.split(UNIT_SEP).collect();
            // Version 3 records of clicks a redirect rule routed carry one more value, the
            // rule's URL (an index into the table).
            let with_url = with_table && parts.len() == PACKED_FIELDS.len() + 1;
            let fixed = if with_url {
                &parts[..PACKED_FIELDS.len()]
            } else {
                &parts[..]
            };
            let mut values: [&str; PACKED_FIELDS.len()] = fixed.try_into().map_err(|_| {
                invalid(format!(
                    "{} values, expected {}{}",
                    parts.len(),
                    PACKED_FIELDS.len(),
                    if with_table { " or 11" } else { "" }
                ))
            })?;
            // A table index to its string, or the record's error naming the field.
            let resolve = |name: &str, index: &str| {
                index
                    .parse::<usize>()
                    .ok()
                    .and_then(|k| table.get(k).copied())
                    .ok_or_else(|| {
                        invalid(format!(
                            "field `{name}` is {index:?}, not one of the entry's {} strings",
                            table.len()
                        ))
                    })
            };
            let url = if with_url {
                Some(resolve("url", parts[PACKED_FIELDS.len()])?)
            } else {
                None
            };
            if with_table {
                for at in [UA_AT, REF_AT] {
                    values[at] = resolve(PACKED_FIELDS[at], values[at])?;
                }
            }
            ClickEvent::from_named(&PackedRecord(values, url)).map_err(|e| InvalidRecord {
                error: InvalidEvent(format!("record {i}: {}", e.0)),
                // With the table's strings in place: a dead letter reads on its own.
                raw: match url {
                    Some(url) => format!("{}\x1f{url}", values.join("\x1f")),
                    None => values.join("\x1f"),
                },
            })
        })
        .collect())
}

/// Truncates to at most `max` bytes on a character boundary (user agents can be huge).
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A click at `at_ms` with fixed ids and fields, for the click path's unit tests.
#[cfg(test)]
pub(crate) fn sample_event(at_ms: i64) -> ClickEvent {
    ClickEvent {
        id: Uuid::now_v7(),
        link_id: Uuid::nil(),
        owner_key_id: Uuid::nil(),
        at_ms,
        region: "UNKNOWN".into(),
        user_agent: String::new(),
        referer: String::new(),
        latency_us: 1,
        kind: ClickKind::Click,
        client_ip: Some("192.0.2.7".parse().expect("ip")),
        rule_url: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at_ms: i64) -> ClickEvent {
        sample_event(at_ms)
    }

    #[test]
    fn event_ids_are_version_7_carry_their_millisecond_and_differ() {
        let at = 1_700_000_000_123;
        let a = event_id(at);
        let b = event_id(at);
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            let (secs, nanos) = id.get_timestamp().expect("v7 timestamp").to_unix();
            assert_eq!(secs as i64 * 1000 + (nanos / 1_000_000) as i64, at);
        }
        assert!(event_id(at + 1) > a, "ordered by millisecond");
    }

    #[test]
    fn stream_fields_round_trip_and_bad_entries_name_the_field() {
        let e = ev(1_700_000_000_000);
        let map: std::collections::HashMap<String, String> = e
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(ClickEvent::from_fields(&map), Ok(e));
        for (field, bad) in [
            ("id", "x"),
            ("at", "soon"),
            // chrono reads both, PostgreSQL stores neither (before 4713 BC) or no click
            // has them (before 2000): they would stop the worker's COPY on every retry.
            ("at", "-220000000000000"),
            ("at", "0"),
            ("at", "253402300800000"),
            ("kind", "visit"),
            ("lat", "-1"),
            ("ip", "nope"),
            ("v", "9"),
            ("ua", "curl\0/8"),
            ("ref", "\0"),
            ("region", "D\0"),
        ] {
            let mut m = map.clone();
            m.insert(field.to_string(), bad.to_string());
            let err = ClickEvent::from_fields(&m).expect_err(field);
            assert!(
                err.to_string()
                    .contains(if field == "v" { "version" } else { field }),
                "{err}"
            );
        }
        let mut m = map.clone();
        m.remove("link");
        assert!(ClickEvent::from_fields(&m)
            .expect_err("missing")
            .to_string()
            .contains("`link`"));
    }

    /// A version-3 entry's fields: `v`, `n`, `strings`, `events` (index 3).
    fn packed(events: &[ClickEvent]) -> Vec<(String, String)> {
        let p = pack(events);
        vec![
            ("v".into(), PACKED_VERSION.into()),
            ("n".into(), events.len().to_string()),
            ("strings".into(), p.strings),
            ("events".into(), p.events),
        ]
    }

    /// A click a redirect rule routed carries the rule's URL (an 11th value, in the string
    /// table); the others keep ten values, as 0.1 wrote them, and read back without one.
    #[test]
    fn the_rule_url_travels_only_with_the_clicks_a_rule_routed() {
        let plain = ev(1_700_000_000_000);
        let mut routed = ev(1_700_000_000_001);
        routed.rule_url = Some("https://example.com/ios".into());
        let mut again = ev(1_700_000_000_002);
        again.rule_url = routed.rule_url.clone();
        let fields = packed(&[plain.clone(), routed.clone(), again.clone()]);
        let events = &fields[3].1;
        let values: Vec<usize> = events
            .split(RECORD_SEP)
            .map(|r| r.split(UNIT_SEP).count())
            .collect();
        assert_eq!(values, vec![10, 11, 11]);
        assert_eq!(
            fields[2].1.matches("https://example.com/ios").count(),
            1,
            "the URL is in the table once"
        );
        let read: Vec<ClickEvent> = events_of_entry(&fields)
            .expect("entry")
            .into_iter()
            .map(|r| r.expect("record"))
            .collect();
        assert_eq!(read, vec![plain, routed, again]);

        // An index outside the table is that record's error alone.
        let mut bad = fields.clone();
        bad[3].1 = format!(
            "{}\x1f99",
            bad[3].1.split(RECORD_SEP).next().expect("record")
        );
        bad[1].1 = "1".into();
        let read = events_of_entry(&bad).expect("entry");
        let error = read[0].as_ref().expect_err("bad index");
        assert!(error.error.0.contains("field `url`"), "{error:?}");
    }

    #[test]
    fn a_batch_writes_each_distinct_agent_and_referrer_once() {
        let mut a = ev(1_700_000_000_000);
        a.user_agent = "Agent A".into();
        a.referer = "https://r.example/".into();
        let mut b = a.clone();
        b.id = Uuid::now_v7();
        b.user_agent = "Agent B".into();
        let events = vec![a.clone(), b.clone(), a.clone(), b.clone(), a.clone()];
        let p = pack(&events);
        assert_eq!(p.strings, "Agent A\x1ehttps://r.example/\x1eAgent B");
        assert!(!p.events.contains("Agent"), "{}", p.events);
        let read: Vec<ClickEvent> = events_of_entry(&packed(&events))
            .expect("entry")
            .into_iter()
            .map(|r| r.expect("record"))
            .collect();
        assert_eq!(read, events);
        // A record pointing past the table, or a table that is missing, is named.
        let mut fields = packed(&events[..1]);
        fields[3].1 = fields[3].1.replacen("\x1f0\x1f1\x1f", "\x1f7\x1f1\x1f", 1);
        let read = events_of_entry(&fields).expect("entry");
        assert!(
            read[0].as_ref().is_err_and(|r| r
                .error
                .0
                .contains("`ua` is \"7\", not one of the entry's 2 strings")),
            "{read:?}"
        );
        let mut no_table = packed(&events);
        no_table.remove(2);
        assert!(events_of_entry(&no_table)
            .expect_err("strings")
            .0
            .contains("`strings` is missing"));
    }

    #[test]
    fn version_two_entries_are_still_read() {
        let e = ev(1_700_000_000_000);
        let record = format!(
            "{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}",
            e.id,
            e.link_id,
            e.owner_key_id,
            e.at_ms,
            e.region,
            e.user_agent,
            e.referer,
            e.latency_us,
            e.kind.as_str(),
            e.client_ip.expect("ip")
        );
        let fields = vec![
            ("v".to_string(), PACKED_V2.to_string()),
            ("n".to_string(), "2".to_string()),
            ("events".to_string(), format!("{record}\x1e{record}")),
        ];
        assert_eq!(events_of_entry(&fields), Ok(vec![Ok(e.clone()), Ok(e)]));
    }

    #[test]
    fn packed_entries_round_trip_every_click() {
        let mut odd = ev(1_700_000_000_001);
        odd.user_agent = "Mozilla/5.0 (X11)\tweird\x1fsep\x1erec".into();
        odd.referer = "https://example.com/ü".into();
        odd.client_ip = None;
        odd.kind = ClickKind::Gated;
        let events = vec![ev(1_700_000_000_000), odd.clone(), ev(1_700_000_000_002)];
        let read: Vec<ClickEvent> = events_of_entry(&packed(&events))
            .expect("entry")
            .into_iter()
            .map(|r| r.expect("record"))
            .collect();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0], events[0]);
        assert_eq!(read[2], events[2]);
        // The separators cannot survive inside a value; everything else does.
        assert_eq!(read[1].user_agent, "Mozilla/5.0 (X11)\tweird sep rec");
        assert_eq!(
            ClickEvent {
                user_agent: odd.user_agent.clone(),
                ..read[1].clone()
            },
            odd
        );
        // An empty batch is a valid (if useless) entry.
        assert_eq!(events_of_entry(&packed(&[])).expect("empty"), vec![]);
    }

    #[test]
    fn version_one_entries_are_still_read() {
        let e = ev(1_700_000_000_000);
        let fields: Vec<(String, String)> = e
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(events_of_entry(&fields), Ok(vec![Ok(e)]));
        let bad = vec![("v".to_string(), "1".to_string())];
        let read = events_of_entry(&bad).expect("a v1 entry is one click");
        assert!(read[0]
            .as_ref()
            .is_err_and(|r| r.error.0.contains("is missing")));
    }

    #[test]
    fn a_bad_record_names_itself_and_spares_the_others() {
        let events = vec![
            ev(1_700_000_000_001),
            ev(1_700_000_000_002),
            ev(1_700_000_000_003),
        ];
        let mut fields = packed(&events);
        let broken = pack(&events)
            .events
            .replacen(&events[1].id.to_string(), "not-a-uuid", 1);
        fields[3].1 = broken;
        let read = events_of_entry(&fields).expect("entry");
        assert_eq!(read[0].as_ref().ok(), Some(&events[0]));
        assert_eq!(read[2].as_ref().ok(), Some(&events[2]));
        let bad = read[1].as_ref().expect_err("record 1");
        assert!(
            bad.error.0.contains("record 1") && bad.error.0.contains("`id`"),
            "{bad:?}"
        );
        assert!(bad.raw.starts_with("not-a-uuid"), "{bad:?}");

        let mut short = packed(&events);
        short[3].1 = format!("{}\x1etoo\x1ffew", pack(&events[..2]).events);
        let read = events_of_entry(&short).expect("entry");
        assert!(read[2]
            .as_ref()
            .is_err_and(|r| r.error.0.contains("2 values, expected 10")));

        // The entry as a whole: a count that does not match, a missing field, a bad count,
        // an unknown version.
        let mut wrong_n = packed(&events);
        wrong_n[1].1 = "4".into();
        assert!(events_of_entry(&wrong_n)
            .expect_err("n")
            .0
            .contains("says 4 clicks but `events` holds 3"));
        let mut no_events = packed(&events);
        no_events.pop();
        assert!(events_of_entry(&no_events)
            .expect_err("events")
            .0
            .contains("`events` is missing"));
        let mut bad_n = packed(&events);
        bad_n[1].1 = "many".into();
        assert!(events_of_entry(&bad_n).expect_err("n").0.contains("`n`"));
        let future = vec![("v".to_string(), "9".to_string())];
        let read = events_of_entry(&future).expect("unknown versions are one bad click");
        assert!(read[0]
            .as_ref()
            .is_err_and(|r| r.error.0.contains("version \"9\"")));
    }

    #[test]
    fn clip_respects_character_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 10), "abc");
    }
}
