//! Accepting connections so that slow or idle clients cannot starve the server: every
//! connection must send a request's headers within the header timeout (also while it idles
//! between keep-alive requests) and its body within the request timeout, open connections are
//! capped below the open-file limit with the oldest idle one closed to make room, one address
//! holds at most a few dozen of them (trusted proxies aside), and accept errors back off
//! instead of spinning.
//! Shutdown stops accepting, lets requests in flight finish and closes idle connections.

use std::{
    collections::BTreeMap,
    future::Future,
    net::IpAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{body::Body, extract::ConnectInfo, Router};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Notify, task::JoinSet};
use tower::ServiceExt;

use crate::{net::IpNet, tally::Tally};

/// Files the process keeps for itself (database, models, logs) beside its connections.
const RESERVED_FILES: usize = 64;

#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub per_address: usize,
    /// Peers exempt from `per_address`: proxies that carry many clients' connections.
    pub proxies: Vec<IpNet>,
}

impl ConnectionLimits {
    /// `configured`, or what the open-file limit leaves after the process's own files.
    pub fn new(
        header_timeout: Duration,
        configured: Option<usize>,
        per_address: usize,
        proxies: Vec<IpNet>,
    ) -> Self {
        let max_connections = configured.unwrap_or_else(|| {
            open_file_limit()
                .unwrap_or(1024)
                .saturating_sub(RESERVED_FILES)
                .clamp(16, 65_536)
        });
        Self {
            header_timeout,
            max_connections,
            per_address,
            proxies,
        }
    }

    /// How many connections `peer` may hold.
    fn cap_for(&self, peer: IpAddr) -> usize {
        if self.proxies.iter().any(|p| p.contains(peer)) {
            self.max_connections
        } else {
            self.per_address
        }
    }
}

/// The soft limit on open files (Linux; `None` elsewhere).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The open connections, oldest first, and whether each has a request in flight.
#[derive(Default)]
struct Connections {
    open: Mutex<Open>,
    next_id: AtomicUsize,
}

/// The open connections by id (oldest first), and how many each address holds, kept in step
/// so that an accept never counts them one by one.
#[derive(Default)]
struct Open {
    by_id: BTreeMap<u64, Connection>,
    per_peer: Tally<IpAddr>,
}

impl Open {
    fn take(&mut self, id: u64) -> Option<Connection> {
        let connection = self.by_id.remove(&id)?;
        self.per_peer.take(&connection.peer);
        Some(connection)
    }
}

struct Connection {
    peer: IpAddr,
    in_flight: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Connections open from `peer`.
    fn from(&self, peer: IpAddr) -> usize {
        self.lock().per_peer.get(&peer)
    }

    fn add(&self, peer: IpAddr) -> (u64, Arc<AtomicUsize>, Arc<Notify>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) as u64;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let close = Arc::new(Notify::new());
        let mut open = self.lock();
        open.by_id.insert(
            id,
            Connection {
                peer,
                in_flight: in_flight.clone(),
                close: close.clone(),
            },
        );
        open.per_peer.add(peer);
        (id, in_flight, close)
    }

    fn remove(&self, id: u64) {
        self.lock().take(id);
    }

    /// Closes the oldest connection with no request in flight; false when every one is busy.
    fn close_oldest_idle(&self) -> bool {
        self.close_oldest_idle_of(None)
    }

    /// Closes the oldest connection with no request in flight, of `peer` only if given; false
    /// when every one is busy.
    fn close_oldest_idle_of(&self, peer: Option<IpAddr>) -> bool {
        let mut open = self.lock();
        let idle = open
            .by_id
            .iter()
            .find(|(_, c)| {
                c.in_flight.load(Ordering::Acquire) == 0 && peer.is_none_or(|p| c.peer == p)
            })
            .map(|(id, _)| *id);
        match idle.and_then(|id| open.take(id)) {
            Some(connection) => {
                connection.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Arc::new(Connections::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut backoff = Duration::ZERO;
    tokio::pin!(shutdown);
    tracing::info!(
        max_connections = limits.max_connections,
        header_timeout_secs = limits.header_timeout.as_secs(),
        "accepting connections"
    );
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            Err(e) => {
                // Out of file descriptors (or another transient failure): make room and wait
                // a little, growing, instead of spinning on the error.
                connections.close_oldest_idle();
                backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                tracing::warn!(error = %e, wait_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let peer_ip = peer.ip();
        if connections.from(peer_ip) >= limits.cap_for(peer_ip)
            && !connections.close_oldest_idle_of(Some(peer_ip))
        {
            // This address keeps as many requests in flight as it may: its new connection
            // waits for one of them to end, and nobody else's is taken.
            drop(stream);
            continue;
        }
        if connections.len() >= limits.max_connections && !connections.close_oldest_idle() {
            // Every connection is busy with a request: this one waits its turn elsewhere.
            drop(stream);
            continue;
        }
        let (id, in_flight, close) = connections.add(peer_ip);
        let connections = connections.clone();
        let mut stopped = stopped.clone();
        let app = app.clone();
        tasks.spawn(async move {
            let service = service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let in_flight = in_flight.clone();
                in_flight.fetch_add(1, Ordering::AcqRel);
                let response = app.clone().oneshot(request.map(Body::new));
                async move {
                    let response = response.await;
                    in_flight.fetch_sub(1, Ordering::AcqRel);
                    response
                }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let mut stopping = false;
            loop {
                tokio::select! {
                    _ = connection.as_mut() => break,
                    () = close.notified() => break,
                    _ = stopped.changed(), if !stopping => {
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            connections.remove(id);
        });
    }
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_idle_connection_makes_room_and_busy_ones_stay() {
        let c = Connections::default();
        let here = IpAddr::from([127, 0, 0, 1]);
        let (_, busy, _) = c.add(here);
        let (_, _, idle_close) = c.add(here);
        let (_, _, _) = c.add(here);
        busy.fetch_add(1, Ordering::AcqRel);
        assert!(c.close_oldest_idle());
        assert_eq!(c.len(), 2);
        // The busy first connection was skipped; the second (idle) was told to close.
        let notified = idle_close.notified();
        tokio::pin!(notified);
        assert!(futures_now(notified.as_mut()));
    }

    #[test]
    fn connections_are_counted_per_address_and_each_is_taken_off_once() {
        let c = Connections::default();
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let (first_of_a, _, _) = c.add(a);
        let (_, busy_b, _) = c.add(b);
        let (_, _, _) = c.add(a);
        busy_b.fetch_add(1, Ordering::AcqRel);
        assert_eq!((c.from(a), c.from(b)), (2, 1));
        // Only b's connection is busy: none of b's can be closed, a's oldest can.
        assert!(!c.close_oldest_idle_of(Some(b)));
        assert!(c.close_oldest_idle_of(Some(a)));
        assert_eq!((c.from(a), c.from(b), c.len()), (1, 1, 2));
        // Its task ends later and removes it again: nothing more is taken off.
        c.remove(first_of_a);
        assert_eq!((c.from(a), c.len()), (1, 2));
    }

    /// Whether a future is ready at its first poll.
    fn futures_now(f: std::pin::Pin<&mut impl Future>) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        f.poll(&mut cx).is_ready()
    }
}
