//! How many connections the server holds: in all, and per client, so that one client (a
//! slowloris) cannot take every slot and the scraper's connection still gets one.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::server_metrics::{Refused, ServerMetrics};

/// The server's limits and timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Connections open at once; more are closed as soon as accepted (`--web.max-connections`).
    pub max_connections: usize,
    /// Connections open at once from one client address, an IPv6 client's /64 as one
    /// (`--web.max-connections-per-client`).
    pub max_connections_per_client: usize,
    /// From the connection's start (or the end of the previous response) to a complete request
    /// head, TLS handshake included; also how long an idle keep-alive connection stays.
    pub header_timeout: Duration,
    /// A connection that neither reads nor writes a byte this long is closed (a client that
    /// stopped reading its answer).
    pub idle_timeout: Duration,
    /// On shutdown, how long requests in flight may take before their connections are dropped.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_connections_per_client: 32,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_mins(1),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The open connections, counted in all and per client.
#[derive(Debug)]
pub(crate) struct Slots {
    max: usize,
    max_per_client: usize,
    open: Mutex<Open>,
    metrics: ServerMetrics,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// One admitted connection; frees its slot when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Slots>,
    client: IpAddr,
}

impl Slots {
    pub(crate) fn new(limits: &Limits, metrics: ServerMetrics) -> Arc<Self> {
        Arc::new(Self {
            max: limits.max_connections,
            max_per_client: limits.max_connections_per_client,
            open: Mutex::default(),
            metrics,
        })
    }

    /// A slot for a connection from `ip`, or the limit that refuses it.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let client = client_key(ip);
        let mut open = self.lock();
        if open.total >= self.max {
            return Err(Refused::MaxConnections);
        }
        let from_client = open.per_client.entry(client).or_insert(0);
        if *from_client >= self.max_per_client {
            return Err(Refused::MaxConnectionsPerClient);
        }
        *from_client += 1;
        open.total += 1;
        self.metrics.set_open(open.total);
        Ok(Slot {
            slots: Arc::clone(self),
            client,
        })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        crate::locks::lock(&self.open)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        open.total -= 1;
        if let Some(n) = open.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&self.client);
            }
        }
        self.slots.metrics.set_open(open.total);
    }
}

/// The address a client is counted under: IPv4 as is (also when seen through a dual-stack
/// socket), IPv6 by its /64, which one host usually has whole.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: usize, per_client: usize) -> Arc<Slots> {
        let limits = Limits {
            max_connections: max,
            max_connections_per_client: per_client,
            ..Limits::default()
        };
        Slots::new(&limits, ServerMetrics::unregistered())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_client_cannot_take_every_slot() {
        let slots = slots(4, 2);
        let a1 = slots.admit(ip("10.0.0.1")).unwrap();
        let _a2 = slots.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            slots.admit(ip("10.0.0.1")).unwrap_err(),
            Refused::MaxConnectionsPerClient
        );
        // The same client through a dual-stack socket is the same client.
        assert_eq!(
            slots.admit(ip("::ffff:10.0.0.1")).unwrap_err(),
            Refused::MaxConnectionsPerClient
        );
        let _b1 = slots.admit(ip("127.0.0.1")).unwrap();
        drop(a1);
        let _a3 = slots.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(slots.open(), 3);
    }

    #[test]
    fn the_total_is_capped_and_freed_on_drop() {
        let slots = slots(2, 2);
        let a = slots.admit(ip("10.0.0.1")).unwrap();
        let _b = slots.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(
            slots.admit(ip("10.0.0.3")).unwrap_err(),
            Refused::MaxConnections
        );
        drop(a);
        assert_eq!(slots.open(), 1);
        let _c = slots.admit(ip("10.0.0.3")).unwrap();
        assert!(
            slots.lock().per_client.len() == 2,
            "emptied clients are forgotten"
        );
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let slots = slots(10, 1);
        let _a = slots.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(slots.admit(ip("2001:db8:1:2::ffff")).is_err());
        assert!(slots.admit(ip("2001:db8:1:3::1")).is_ok());
    }
}
