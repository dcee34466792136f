//! The proxy: accepts on 127.0.0.1, connects each client to the target, and pumps bytes both
//! ways through the connection's drawn [`Plan`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};

use crate::faults::{connection_rng, Faults, Plan, Strike, HALF_OPEN_HOLD};

/// What a proxy did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChaosStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now (either side).
    pub open: u64,
    /// Connections reset.
    pub resets: u64,
    /// Connections that went half-open.
    pub half_opens: u64,
    /// Connections with a bandwidth limit.
    pub throttled: u64,
    /// Connections with sliced writes.
    pub sliced: u64,
    /// Connections with a delayed close.
    pub slow_closes: u64,
    /// Connections cut by [`Proxy::cut_all`].
    pub cuts: u64,
    /// Connections swallowed whole by [`Proxy::swallow`].
    pub swallowed: u64,
    /// Bytes passed to the connecting side (what a client downloads).
    pub bytes_to_initiator: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    resets: AtomicU64,
    half_opens: AtomicU64,
    throttled: AtomicU64,
    sliced: AtomicU64,
    slow_closes: AtomicU64,
    cuts: AtomicU64,
    swallowed: AtomicU64,
    bytes_to_initiator: AtomicU64,
}

struct Shared {
    target: SocketAddr,
    seed: u64,
    faults: Mutex<Faults>,
    counters: Counters,
    shutdown: watch::Receiver<bool>,
    /// Bumped to cut every open connection at once.
    cut: watch::Sender<u64>,
    /// Bumped to make every open connection half-open at once.
    dark: watch::Sender<u64>,
    /// How many of the next connections to swallow.
    to_swallow: AtomicU64,
}

/// A running chaos proxy. Dropping it closes every connection it holds.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target` with `faults`, drawing each
    /// connection's fate from `seed`. Must be called inside a tokio runtime.
    pub async fn start(target: SocketAddr, seed: u64, faults: Faults) -> std::io::Result<Self> {
        Self::listen(
            "127.0.0.1:0".parse().expect("address"),
            target,
            seed,
            faults,
        )
        .await
    }

    /// Like [`Proxy::start`], on a given local address.
    pub async fn listen(
        listen: SocketAddr,
        target: SocketAddr,
        seed: u64,
        faults: Faults,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            target,
            seed,
            faults: Mutex::new(faults),
            counters: Counters::default(),
            shutdown: shutdown_rx,
            cut: watch::channel(0).0,
            dark: watch::channel(0).0,
            to_swallow: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self {
            addr,
            shared,
            shutdown,
            accept,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The seed the run's faults are drawn from.
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// Changes the faults of connections accepted from now on.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().expect("faults") = faults;
    }

    /// Cuts every connection open now, both sides closed at once: the network changed under
    /// them (a phone moving from Wi-Fi to mobile data). New connections are not affected.
    pub fn cut_all(&self) {
        self.shared.cut.send_modify(|n| *n += 1);
    }

    /// Makes every connection open now half-open: from now on nothing passes either way, not
    /// even a close, until its initiator gives up (a link that died without a word, as a
    /// phone's does when it loses its network). New connections are not affected.
    pub fn half_open_all(&self) {
        self.shared.dark.send_modify(|n| *n += 1);
    }

    /// Swallows the next `n` connections: they are accepted, but what comes in goes nowhere,
    /// nothing comes back and nothing closes, as when a handshake is lost on a half-open link.
    /// Each is let go when its initiator gives up.
    pub fn swallow(&self, n: u64) {
        self.shared.to_swallow.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters so far.
    pub fn stats(&self) -> ChaosStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ChaosStats {
            accepted: get(&c.accepted),
            open: get(&c.open),
            resets: get(&c.resets),
            half_opens: get(&c.half_opens),
            throttled: get(&c.throttled),
            sliced: get(&c.sliced),
            slow_closes: get(&c.slow_closes),
            cuts: get(&c.cuts),
            swallowed: get(&c.swallowed),
            bytes_to_initiator: get(&c.bytes_to_initiator),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut index = 0;
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let swallow = shared
            .to_swallow
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if swallow.is_ok() {
            shared.counters.swallowed.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(swallowed(client, shared.shutdown.clone()));
            continue;
        }
        let mut rng = connection_rng(shared.seed, index);
        index += 1;
        let plan = shared.faults.lock().expect("faults").plan(&mut rng);
        tokio::spawn(connection(shared.clone(), client, plan, rng));
    }
}

/// Holds a swallowed connection, reading and dropping what comes in, until its initiator
/// closes it or the proxy shuts down.
async fn swallowed(mut client: TcpStream, mut shutdown: watch::Receiver<bool>) {
    let mut buf = [0u8; 4096];
    tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => {}
        _ = async { while client.read(&mut buf).await.is_ok_and(|n| n > 0) {} } => {}
    }
}

/// Decrements the open-connection gauge when a connection's task ends, however it ends.
struct OpenGuard<'a>(&'a AtomicU64);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// State the two directions of a connection share.
#[derive(Default)]
struct Link {
    bytes: AtomicU64,
    /// Wakes the connection's supervisor when the byte trigger is reached.
    tripped: tokio::sync::Notify,
    half_open: AtomicBool,
    initiator_gone: tokio::sync::Notify,
}

impl Link {
    fn is_half_open(&self) -> bool {
        self.half_open.load(Ordering::Relaxed)
    }
}

/// Which way bytes flow through a pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// From the side that connected (a browser, the relay's fetch) to the target.
    FromInitiator,
    /// From the target back.
    ToInitiator,
}

async fn connection(shared: Arc<Shared>, client: TcpStream, plan: Plan, mut rng: fastrand::Rng) {
    let counters = &shared.counters;
    counters.accepted.fetch_add(1, Ordering::Relaxed);
    counters.open.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGuard(&counters.open);
    let Ok(server) = TcpStream::connect(shared.target).await else {
        return;
    };
    for (on, counter) in [
        (plan.bandwidth_bps.is_some(), &counters.throttled),
        (plan.sliced, &counters.sliced),
        (!plan.close_delay.is_zero(), &counters.slow_closes),
    ] {
        if on {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
    for stream in [&client, &server] {
        let _ = stream.set_nodelay(true);
        if plan.reset.is_some() {
            // Closing with a zero linger sends RST: that is how the reset is delivered.
            let _ = stream.set_zero_linger();
        }
    }
    let link = Arc::new(Link::default());
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let mut pumps = tokio::task::JoinSet::new();
    pumps.spawn(pump(
        client_read,
        server_write,
        Direction::FromInitiator,
        plan.clone(),
        link.clone(),
        rng.fork(),
        shared.clone(),
    ));
    pumps.spawn(pump(
        server_read,
        client_write,
        Direction::ToInitiator,
        plan.clone(),
        link.clone(),
        rng.fork(),
        shared.clone(),
    ));
    let mut shutdown = shared.shutdown.clone();
    let mut cut = shared.cut.subscribe();
    let mut dark = shared.dark.subscribe();
    let started = Instant::now();
    let strike = async {
        let Some((strike, trigger)) = plan.trigger() else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = sleep_until(started + trigger.after) => {}
            _ = link.tripped.notified() => {}
        }
        strike
    };
    let strike = tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => None,
        _ = async { while pumps.join_next().await.is_some() {} } => None,
        _ = cut.changed() => {
            counters.cuts.fetch_add(1, Ordering::Relaxed);
            None
        }
        strike = strike => Some(strike),
        _ = dark.changed() => Some(Strike::HalfOpen),
    };
    match strike {
        Some(Strike::Reset) => {
            counters.resets.fetch_add(1, Ordering::Relaxed);
        }
        Some(Strike::HalfOpen) => {
            counters.half_opens.fetch_add(1, Ordering::Relaxed);
            link.half_open.store(true, Ordering::Relaxed);
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => {}
                _ = async {
                    link.initiator_gone.notified().await;
                    sleep(HALF_OPEN_HOLD).await;
                } => {}
            }
        }
        None => {}
    }
    // Dropping the halves closes both sockets (with RST when the plan is a reset).
    pumps.abort_all();
    while pumps.join_next().await.is_some() {}
}

enum Chunk {
    Data(Instant, Vec<u8>),
    Eof,
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    plan: Plan,
    link: Arc<Link>,
    mut rng: fastrand::Rng,
    shared: Arc<Shared>,
) {
    let (tx, mut rx) = mpsc::channel::<Chunk>(32);
    let mut write_rng = rng.fork();
    let trigger = plan.trigger();
    let reader = {
        let link = link.clone();
        let latency_ms = plan.latency_ms;
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut due = Instant::now();
            loop {
                if link.is_half_open() && direction == Direction::ToInitiator {
                    // The target's bytes pile up in its own buffers, as in a dead network.
                    return std::future::pending().await;
                }
                let mut n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        if direction == Direction::FromInitiator {
                            link.initiator_gone.notify_one();
                        }
                        let _ = tx.send(Chunk::Eof).await;
                        return;
                    }
                    Ok(n) => n,
                };
                let before = link.bytes.fetch_add(n as u64, Ordering::Relaxed);
                if let Some((strike, trigger)) = trigger.filter(|_| !link.is_half_open()) {
                    if before + n as u64 >= trigger.after_bytes {
                        // Exactly the trigger's bytes pass; then the fault strikes.
                        n = trigger.after_bytes.saturating_sub(before) as usize;
                        if n > 0 {
                            let _ = tx.send(Chunk::Data(due, buf[..n].to_vec())).await;
                        }
                        link.tripped.notify_one();
                        match strike {
                            Strike::HalfOpen => {
                                link.half_open.store(true, Ordering::Relaxed);
                                continue;
                            }
                            // The supervisor closes the connection.
                            Strike::Reset => return std::future::pending().await,
                        }
                    }
                }
                if link.is_half_open() {
                    // Lost in the network; reading on only notices the initiator giving up.
                    continue;
                }
                let delay = latency_ms.map_or(0, |(low, high)| rng.u64(low..=high));
                due = due.max(Instant::now() + Duration::from_millis(delay));
                if tx.send(Chunk::Data(due, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    };
    let writer = async move {
        let mut next_free = Instant::now();
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Chunk::Data(due, bytes) => {
                    sleep_until(due).await;
                    let mut rest = bytes.as_slice();
                    while !rest.is_empty() {
                        if link.is_half_open() {
                            break;
                        }
                        let size = match (plan.sliced, plan.bandwidth_bps) {
                            (true, _) => write_rng.usize(1..=7),
                            (false, Some(_)) => 1024,
                            (false, None) => rest.len(),
                        }
                        .min(rest.len());
                        if let Some(bps) = plan.bandwidth_bps {
                            next_free = next_free.max(Instant::now())
                                + Duration::from_secs_f64(size as f64 / bps as f64);
                            // Sleeping per tiny piece would be ruled by the timer's resolution,
                            // not the rate: sleep once the lead is worth it.
                            let lead = Duration::from_millis(20);
                            if next_free > Instant::now() + lead {
                                sleep_until(next_free - lead).await;
                            }
                        }
                        if to.write_all(&rest[..size]).await.is_err() {
                            return;
                        }
                        if direction == Direction::ToInitiator {
                            let passed = &shared.counters.bytes_to_initiator;
                            passed.fetch_add(size as u64, Ordering::Relaxed);
                        }
                        rest = &rest[size..];
                    }
                }
                Chunk::Eof => {
                    if link.is_half_open() {
                        // No close passes a half-open connection.
                        return std::future::pending().await;
                    }
                    sleep(plan.close_delay).await;
                    let _ = to.shutdown().await;
                    return;
                }
            }
        }
    };
    tokio::join!(reader, writer);
}
