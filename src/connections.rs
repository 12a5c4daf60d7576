//! The open connections of one process: caps per process and per client address, the idle
//! and request-head deadlines, and which connection to shed when a cap is reached
//! (hardening issue, finding 3: idle, h2c and slow connections used to stay open for minutes,
//! and 2 000 idle connections from one address were all kept).
//!
//! - Every accepted connection gets a [`Ticket`] from [`Connections::admit`] and keeps it until
//!   it closes. Over `HTTP_MAX_CONNECTIONS_PER_CLIENT` (per peer address) or
//!   `HTTP_MAX_CONNECTIONS` (per process, kept below the open-file limit), the *oldest idle*
//!   connection of that client (or of the process) is told to close; when none is idle the new
//!   connection is refused instead (closed at once). Busy connections are never shed.
//! - A connection told to close is on its way out (gone within the close grace of
//!   [`crate::http::server`]): it no longer counts against its client's cap. It still counts
//!   against the process cap, which guards the open-file limit; while the process is full
//!   with connections still closing, the accept loop waits for them
//!   ([`Connections::full_while_closing`]) rather than accept a connection only to refuse it.
//! - A connection is idle while no request is in flight on it; its age as idle is the time
//!   since its last request ended (or since the accept). The connection task
//!   ([`crate::http::server`]) closes a connection idle for `HTTP_IDLE_TIMEOUT_MS`, and one that
//!   has not sent a request within `HTTP_HEADER_TIMEOUT_MS` of the accept.
//!
//! Costs nothing per request beyond two atomic updates; a cap scan (linear in the open
//! connections) happens only at a cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::HttpLimits;

/// The live state of one connection, shared by its task and the registry.
pub struct ConnState {
    in_flight: AtomicU32,
    requests: AtomicU64,
    /// Microseconds after [`Connections::epoch`] of the last request's end (or the accept).
    /// Milliseconds were too coarse: a client that ends a request and opens a new connection
    /// within one tied the two, and shedding picked either.
    last_active_us: AtomicU64,
    shedding: AtomicBool,
    /// Signalled when the registry wants this connection closed.
    pub shed: Notify,
}

impl ConnState {
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Marks a request in flight on its connection for as long as it lives.
pub struct RequestGuard {
    state: Arc<ConnState>,
    epoch: Instant,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.state
            .last_active_us
            .store(self.epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.state.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why the server closed a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Nothing arrived within `HTTP_HEADER_TIMEOUT_MS` of the accept.
    NoRequest,
    /// No request for `HTTP_IDLE_TIMEOUT_MS`.
    Idle,
    /// The oldest idle connection, closed to admit a new one over a cap.
    Shed,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Client,
    Process,
}

struct Entry {
    client: IpAddr,
    state: Arc<ConnState>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// Every open connection, including those told to close.
    conns: HashMap<u64, Entry>,
    /// Open connections per client, not counting those told to close.
    per_client: HashMap<IpAddr, usize>,
    /// How many of `conns` were told to close and have not yet.
    shedding: usize,
}

impl Registry {
    fn forget_client_conn(&mut self, client: IpAddr) {
        if let Some(n) = self.per_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&client);
            }
        }
    }
}

pub struct Connections {
    limits: HttpLimits,
    epoch: Instant,
    registry: Mutex<Registry>,
    refused_client: AtomicU64,
    refused_process: AtomicU64,
    closed_no_request: AtomicU64,
    closed_idle: AtomicU64,
    closed_shed: AtomicU64,
}

/// A connection's place in the registry; dropping it (when the connection ends) frees it.
pub struct Ticket {
    connections: Arc<Connections>,
    id: u64,
    pub state: Arc<ConnState>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut r = self
            .connections
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = r.conns.remove(&self.id) {
            // Read under the lock that set it: counted in exactly one of the two.
            if entry.state.shedding.load(Ordering::Relaxed) {
                r.shedding -= 1;
            } else {
                r.forget_client_conn(entry.client);
            }
        }
    }
}

impl Ticket {
    /// Counts a request in flight until the guard drops.
    pub fn begin_request(&self) -> RequestGuard {
        begin_request(&self.state, self.connections.epoch)
    }

    /// A cheap handle for the request path: starts guards without the registry.
    pub fn request_counter(&self) -> RequestCounter {
        RequestCounter {
            state: self.state.clone(),
            epoch: self.connections.epoch,
        }
    }

    /// When this connection's current deadline passes: the head deadline before its first
    /// request, the idle deadline after. `None` while a request is in flight.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        if self.state.in_flight() > 0 {
            return None;
        }
        let last = Duration::from_micros(self.state.last_active_us.load(Ordering::Relaxed));
        let wait = if self.state.requests() == 0 {
            self.connections.limits.header_timeout
        } else {
            self.connections.limits.idle_timeout
        };
        Some(tokio::time::Instant::from_std(
            self.connections.epoch + last + wait,
        ))
    }

    /// Counts a close the server decided on.
    pub fn closed(&self, reason: CloseReason) {
        let c = &self.connections;
        match reason {
            CloseReason::NoRequest => &c.closed_no_request,
            CloseReason::Idle => &c.closed_idle,
            CloseReason::Shed => &c.closed_shed,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

/// Starts request guards for one connection (cloned into its service).
#[derive(Clone)]
pub struct RequestCounter {
    state: Arc<ConnState>,
    epoch: Instant,
}

impl RequestCounter {
    pub fn begin(&self) -> RequestGuard {
        begin_request(&self.state, self.epoch)
    }
}

fn begin_request(state: &Arc<ConnState>, epoch: Instant) -> RequestGuard {
    // No clock read here: while a request is in flight the connection has no deadline, and
    // its end stamps `last_active_us`.
    state.in_flight.fetch_add(1, Ordering::AcqRel);
    state.requests.fetch_add(1, Ordering::Relaxed);
    RequestGuard {
        state: state.clone(),
        epoch,
    }
}

impl Connections {
    pub fn new(limits: HttpLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            epoch: Instant::now(),
            registry: Mutex::new(Registry::default()),
            refused_client: AtomicU64::new(0),
            refused_process: AtomicU64::new(0),
            closed_no_request: AtomicU64::new(0),
            closed_idle: AtomicU64::new(0),
            closed_shed: AtomicU64::new(0),
        })
    }

    pub fn limits(&self) -> &HttpLimits {
        &self.limits
    }

    /// Admits a connection from `client`, shedding the oldest idle connection of a full cap;
    /// `Err` names the cap when nothing could be shed (close the new connection).
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Ticket, Cap> {
        let mut r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let per_client_cap = self.limits.max_connections_per_client;
        if per_client_cap > 0 && r.per_client.get(&client).copied().unwrap_or(0) >= per_client_cap {
            if !shed_oldest_idle(&mut r, Some(client)) {
                self.refused_client.fetch_add(1, Ordering::Relaxed);
                return Err(Cap::Client);
            }
        } else if r.conns.len() >= self.limits.max_connections && !shed_oldest_idle(&mut r, None) {
            self.refused_process.fetch_add(1, Ordering::Relaxed);
            return Err(Cap::Process);
        }
        let state = Arc::new(ConnState {
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            last_active_us: AtomicU64::new(self.epoch.elapsed().as_micros() as u64),
            shedding: AtomicBool::new(false),
            shed: Notify::new(),
        });
        r.next_id += 1;
        let id = r.next_id;
        r.conns.insert(
            id,
            Entry {
                client,
                state: state.clone(),
            },
        );
        *r.per_client.entry(client).or_insert(0) += 1;
        Ok(Ticket {
            connections: self.clone(),
            id,
            state,
        })
    }

    /// Open connections (including ones being shed).
    pub fn open(&self) -> usize {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .conns
            .len()
    }

    /// Whether the process cap is reached while connections told to close are still open:
    /// they are gone within moments, so a new connection is better left waiting in the
    /// listen queue (or taken by another instance) than accepted and refused.
    pub fn full_while_closing(&self) -> bool {
        let r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        r.shedding > 0 && r.conns.len() >= self.limits.max_connections
    }

    /// `(label, value)` pairs for the metrics: refused by cap and closed by reason.
    pub fn refused(&self) -> [(&'static str, u64); 2] {
        [
            ("client", self.refused_client.load(Ordering::Relaxed)),
            ("process", self.refused_process.load(Ordering::Relaxed)),
        ]
    }

    pub fn closed(&self) -> [(&'static str, u64); 3] {
        [
            ("no_request", self.closed_no_request.load(Ordering::Relaxed)),
            ("idle", self.closed_idle.load(Ordering::Relaxed)),
            ("shed", self.closed_shed.load(Ordering::Relaxed)),
        ]
    }
}

/// Tells the connection idle longest (of `client`, or of anyone) to close. Returns whether
/// there was one. Connections already told are skipped (they close within moments). Equal
/// stamps go to the one admitted first (ids grow), never to the hash order of the registry.
fn shed_oldest_idle(r: &mut Registry, client: Option<IpAddr>) -> bool {
    let victim = r
        .conns
        .iter()
        .filter(|(_, e)| client.is_none_or(|c| e.client == c))
        .filter(|(_, e)| e.state.in_flight() == 0 && !e.state.shedding.load(Ordering::Relaxed))
        .min_by_key(|(id, e)| (e.state.last_active_us.load(Ordering::Relaxed), **id));
    let Some((_, e)) = victim else {
        return false;
    };
    e.state.shedding.store(true, Ordering::Relaxed);
    e.state.shed.notify_one();
    let victim_client = e.client;
    r.shedding += 1;
    r.forget_client_conn(victim_client);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_client: usize) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: max,
            max_connections_per_client: per_client,
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn over_the_per_client_cap_the_oldest_idle_connection_of_that_client_is_shed() {
        let c = Connections::new(limits(100, 2));
        let first = c.admit(ip(1)).expect("first");
        std::thread::sleep(Duration::from_millis(5));
        let second = c.admit(ip(1)).expect("second");
        let other = c.admit(ip(2)).expect("another client is not affected");
        let third = c.admit(ip(1)).expect("admitted by shedding");
        assert!(
            first.state.shedding.load(Ordering::Relaxed),
            "the oldest is shed"
        );
        assert!(!second.state.shedding.load(Ordering::Relaxed));
        assert!(!other.state.shedding.load(Ordering::Relaxed));
        drop(first);
        // Both remaining connections of the client are busy: the next one is refused.
        let _a = second.begin_request();
        let _b = third.begin_request();
        assert_eq!(c.admit(ip(1)).err(), Some(Cap::Client));
        assert_eq!(c.refused()[0], ("client", 1));
        assert_eq!(c.open(), 3);
    }

    /// Found by the connection-cap integration test (one CI run in four): a client finished a
    /// request and opened a new connection within the same millisecond, the two stamps tied,
    /// and the registry's hash order decided which one to shed — sometimes the new one, before
    /// it could send its request.
    #[test]
    fn a_connection_idle_since_just_before_a_newer_one_was_accepted_is_the_one_shed() {
        for round in 0..200 {
            let c = Connections::new(limits(100, 2));
            let served = c.admit(ip(1)).expect("served");
            drop(served.begin_request());
            let new = c.admit(ip(1)).expect("new");
            let _third = c.admit(ip(1)).expect("admitted by shedding");
            assert!(
                served.state.shedding.load(Ordering::Relaxed),
                "round {round}: the connection idle longest is shed"
            );
            assert!(
                !new.state.shedding.load(Ordering::Relaxed),
                "round {round}: not the one accepted after it"
            );
        }
    }

    /// Found by the connection-cap integration test (one CI run): a client's idle connection
    /// was told to close, the client opened busy ones, and one more was refused although the
    /// client had only two connections that were not closing.
    #[test]
    fn a_connection_told_to_close_no_longer_counts_against_its_clients_cap() {
        let c = Connections::new(limits(100, 3));
        let closing = c.admit(ip(1)).expect("first");
        let gone = [
            c.admit(ip(1)).expect("second"),
            c.admit(ip(1)).expect("third"),
        ];
        let busy_1 = c.admit(ip(1)).expect("admitted by shedding the first");
        assert!(closing.state.shedding.load(Ordering::Relaxed));
        drop(gone);
        let busy_2 = c.admit(ip(1)).expect("two of three not closing");
        let _a = busy_1.begin_request();
        let _b = busy_2.begin_request();
        let busy_3 = c
            .admit(ip(1))
            .expect("the closing one does not hold a place: admitted");
        let _c = busy_3.begin_request();
        assert_eq!(c.admit(ip(1)).err(), Some(Cap::Client), "now three busy");
        assert_eq!(c.open(), 4, "the closing one is still open");
        drop(closing);
        assert_eq!(c.open(), 3);
        assert_eq!(c.admit(ip(1)).err(), Some(Cap::Client), "still three busy");
    }

    #[test]
    fn at_the_process_cap_a_closing_connection_still_counts_and_says_to_wait() {
        let c = Connections::new(limits(2, 0));
        let closing = c.admit(ip(1)).expect("first");
        let busy_1 = c.admit(ip(2)).expect("second");
        let request = busy_1.begin_request();
        assert!(!c.full_while_closing(), "full, but nothing is closing");
        let busy_2 = c.admit(ip(3)).expect("admitted by shedding the first");
        let _b = busy_2.begin_request();
        assert!(closing.state.shedding.load(Ordering::Relaxed));
        assert!(c.full_while_closing(), "wait: the first is on its way out");
        assert_eq!(
            c.admit(ip(4)).err(),
            Some(Cap::Process),
            "the open-file guard counts every open connection"
        );
        drop(closing);
        assert!(!c.full_while_closing(), "nothing closing any more");
        assert_eq!(c.open(), 2);
        drop(request);
        assert!(
            c.admit(ip(4)).is_ok(),
            "a request ended: its connection is idle and shed"
        );
    }

    #[test]
    fn over_the_process_cap_the_oldest_idle_connection_of_anyone_is_shed() {
        let c = Connections::new(limits(2, 0));
        let busy = c.admit(ip(1)).expect("busy");
        let _guard = busy.begin_request();
        let idle = c.admit(ip(2)).expect("idle");
        let new = c.admit(ip(3)).expect("admitted by shedding the idle one");
        assert!(idle.state.shedding.load(Ordering::Relaxed));
        assert!(
            !busy.state.shedding.load(Ordering::Relaxed),
            "busy ones are never shed"
        );
        let _also_busy = new.begin_request();
        assert_eq!(
            c.admit(ip(4)).err(),
            Some(Cap::Process),
            "nothing idle left to shed"
        );
        assert_eq!(c.refused()[1], ("process", 1));
    }

    #[test]
    fn the_deadline_is_the_head_timeout_before_a_request_and_the_idle_timeout_after() {
        let c = Connections::new(limits(10, 0));
        let t = c.admit(ip(1)).expect("admit");
        let accepted = tokio::time::Instant::now();
        let head = t.deadline().expect("idle");
        assert!(head <= accepted + Duration::from_secs(10));
        assert!(head + Duration::from_secs(1) > accepted + Duration::from_secs(10));
        let guard = t.begin_request();
        assert_eq!(
            t.deadline(),
            None,
            "no deadline while a request is in flight"
        );
        drop(guard);
        let idle = t.deadline().expect("idle again");
        assert!(
            idle + Duration::from_secs(1) > tokio::time::Instant::now() + Duration::from_secs(30)
        );
    }
}
