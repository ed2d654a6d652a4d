//! The addresses an upstream host name stands for, kept fresh without the shard ever waiting on
//! DNS: the pool connects to the addresses it has, and a lookup runs on its own short-lived
//! thread when they are older than the refresh interval, or at once (at most once a second)
//! after none of them accepted a connection. The result is picked up at the next connect; a
//! lookup that fails or finds nothing leaves the old addresses in place.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tracing::warn;

/// A blocking lookup of `host:port`; the system resolver unless a test gives another.
pub type Lookup = fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

/// The system resolver (`getaddrinfo`).
pub fn system_lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().map(Iterator::collect)
}

/// Shortest time between two lookups started by connect failures.
const RETRY_GAP: Duration = Duration::from_secs(1);

/// One host's addresses, on one shard.
pub struct Addresses {
    host: String,
    port: u16,
    lookup: Lookup,
    /// Every how often the name is looked up again; `None` for an IP literal.
    refresh: Option<Duration>,
    current: RefCell<Rc<[SocketAddr]>>,
    resolved_at: Cell<Instant>,
    started_at: Cell<Option<Instant>>,
    running: RefCell<Option<mpsc::Receiver<io::Result<Vec<SocketAddr>>>>>,
}

impl Addresses {
    /// `host:port` with the addresses it resolved to at start, looked up again every `refresh`.
    pub fn new(
        host: &str,
        port: u16,
        initial: Vec<SocketAddr>,
        refresh: Duration,
        lookup: Lookup,
    ) -> Self {
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok();
        Addresses {
            host: host.to_owned(),
            port,
            lookup,
            refresh: (!literal).then_some(refresh),
            current: RefCell::new(initial.into()),
            resolved_at: Cell::new(Instant::now()),
            started_at: Cell::new(None),
            running: RefCell::new(None),
        }
    }

    /// Addresses never looked up again (a test's).
    #[cfg(any(test, feature = "internals"))]
    pub fn fixed(addrs: Vec<SocketAddr>) -> Self {
        Addresses {
            host: String::new(),
            port: 0,
            lookup: system_lookup,
            refresh: None,
            current: RefCell::new(addrs.into()),
            resolved_at: Cell::new(Instant::now()),
            started_at: Cell::new(None),
            running: RefCell::new(None),
        }
    }

    /// The addresses to connect to now. Takes the result of a finished lookup, and starts one
    /// when the addresses are due for a refresh.
    pub fn current(&self) -> Rc<[SocketAddr]> {
        self.collect();
        if let Some(refresh) = self.refresh {
            if self.resolved_at.get().elapsed() >= refresh {
                self.start();
            }
        }
        self.current.borrow().clone()
    }

    /// None of the addresses accepted a connection: look the name up again now (unless a lookup
    /// runs, or one started less than a second ago).
    pub fn unreachable(&self) {
        if self.refresh.is_none() {
            return;
        }
        let recent = self
            .started_at
            .get()
            .is_some_and(|t| t.elapsed() < RETRY_GAP);
        if !recent {
            self.start();
        }
    }

    /// Starts a lookup on its own thread unless one runs.
    fn start(&self) {
        if self.running.borrow().is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let (host, port, lookup) = (self.host.clone(), self.port, self.lookup);
        let spawned = std::thread::Builder::new()
            .name("openhqm-dns".into())
            .spawn(move || {
                let _ = tx.send(lookup(&host, port));
            });
        self.started_at.set(Some(Instant::now()));
        match spawned {
            Ok(_) => *self.running.borrow_mut() = Some(rx),
            Err(err) => {
                // Counted as a lookup: the next try waits for the next refresh.
                self.resolved_at.set(Instant::now());
                warn!(upstream = %self.host, error = %err, "cannot start a DNS lookup");
            }
        }
    }

    /// Takes the result of the running lookup, if it is done.
    fn collect(&self) {
        let result = match self.running.borrow().as_ref().map(|rx| rx.try_recv()) {
            None | Some(Err(mpsc::TryRecvError::Empty)) => return,
            Some(Ok(result)) => result,
            Some(Err(mpsc::TryRecvError::Disconnected)) => {
                Err(io::Error::other("the lookup thread ended"))
            }
        };
        *self.running.borrow_mut() = None;
        self.resolved_at.set(Instant::now());
        match result {
            Ok(addrs) if !addrs.is_empty() => *self.current.borrow_mut() = addrs.into(),
            Ok(_) => warn!(
                upstream = %self.host,
                "DNS lookup found no address; keeping the previous ones"
            ),
            Err(err) => warn!(
                upstream = %self.host,
                error = %err,
                "DNS lookup failed; keeping the previous ones"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU16, Ordering};

    static NEXT_PORT: AtomicU16 = AtomicU16::new(1000);

    fn counting(_: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
        let port = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    }

    fn failing(_: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
        Err(io::Error::other("no such host"))
    }

    fn wait_for_change(a: &Addresses, from: &Rc<[SocketAddr]>) -> Rc<[SocketAddr]> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = a.current();
            if now != *from {
                return now;
            }
            assert!(Instant::now() < deadline, "the lookup never landed");
            std::thread::yield_now();
        }
    }

    fn first() -> Vec<SocketAddr> {
        vec![SocketAddr::from(([127, 0, 0, 1], 1))]
    }

    #[test]
    fn refreshes_when_due_and_keeps_serving_the_old_addresses_meanwhile() {
        let a = Addresses::new("upstream.test", 80, first(), Duration::ZERO, counting);
        let before = a.current();
        assert_eq!(&*before, &first()[..], "the start addresses serve until a lookup lands");
        let after = wait_for_change(&a, &before);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].ip(), IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn not_due_means_no_lookup_until_unreachable() {
        let a = Addresses::new("upstream.test", 80, first(), Duration::from_secs(3600), counting);
        let before = a.current();
        assert!(a.running.borrow().is_none(), "not due: nothing started");
        a.unreachable();
        assert!(a.running.borrow().is_some());
        wait_for_change(&a, &before);
        a.unreachable();
        assert!(
            a.running.borrow().is_none(),
            "a second failure within a second starts no lookup"
        );
    }

    #[test]
    fn a_failed_lookup_keeps_the_old_addresses() {
        let a = Addresses::new("upstream.test", 80, first(), Duration::from_secs(3600), failing);
        a.unreachable();
        let deadline = Instant::now() + Duration::from_secs(10);
        while a.running.borrow().is_some() {
            a.collect();
            assert!(Instant::now() < deadline);
            std::thread::yield_now();
        }
        assert_eq!(&*a.current(), &first()[..]);
    }

    #[test]
    fn ip_literals_are_never_looked_up() {
        for host in ["127.0.0.1", "[::1]", "::1"] {
            let a = Addresses::new(host, 80, first(), Duration::ZERO, counting);
            a.current();
            a.unreachable();
            assert!(a.running.borrow().is_none(), "{host}");
        }
    }
}
