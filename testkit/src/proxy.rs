//! A TCP relay for fault injection: clients connect to [`Proxy::addr`], each connection is
//! relayed to the target (the server) byte for byte, and the relay counts what it forwards.
//! It breaks connections when told to: after a number of bytes in one direction (the next
//! connection, or every one), or all live ones at once ([`Proxy::kick`]).
//!
//! A broken connection ends with a FIN to both ends, and what either end still sends is
//! read and dropped for a moment: nothing is reset, so each end receives everything the
//! relay forwarded before the break.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a broken connection goes on reading (and dropping) what the ends send.
const DRAIN: Duration = Duration::from_secs(2);
/// How long [`Proxy::kick`] waits for the live connections to end.
const KICK_WAIT: Duration = Duration::from_secs(10);
const BUFFER: usize = 64 * 1024;

/// Which way bytes move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the server.
    Upstream,
    /// From the server to the client.
    Downstream,
}

/// Bytes forwarded on one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Client to server.
    pub upstream: u64,
    /// Server to client.
    pub downstream: u64,
}

/// Break a connection once `after` bytes went `direction`.
#[derive(Clone, Copy, Debug)]
struct Cut {
    direction: Direction,
    after: u64,
}

impl Cut {
    fn limit(cut: Option<Cut>, direction: Direction) -> Option<u64> {
        cut.filter(|c| c.direction == direction).map(|c| c.after)
    }
}

#[derive(Default)]
struct Plan {
    next: Option<Cut>,
    every: Option<Cut>,
}

/// One relayed connection's counters.
#[derive(Default)]
struct Relayed {
    upstream: AtomicU64,
    downstream: AtomicU64,
    ended: AtomicBool,
}

impl Relayed {
    fn counter(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::Upstream => &self.upstream,
            Direction::Downstream => &self.downstream,
        }
    }

    fn traffic(&self) -> Traffic {
        Traffic {
            upstream: self.upstream.load(Ordering::SeqCst),
            downstream: self.downstream.load(Ordering::SeqCst),
        }
    }
}

struct Shared {
    target: SocketAddr,
    plan: Mutex<Plan>,
    relayed: Mutex<Vec<Arc<Relayed>>>,
    /// Bumped by every kick; each connection breaks when it changes.
    kicks: watch::Sender<u64>,
}

/// A relay listening on 127.0.0.1, serving from tasks of the calling tokio runtime.
/// Dropping it breaks every connection it relays.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accepting: JoinHandle<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Proxy {
    /// Starts relaying connections to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the relay binds");
        let addr = listener.local_addr().expect("the relay's address");
        let shared = Arc::new(Shared {
            target,
            plan: Mutex::default(),
            relayed: Mutex::default(),
            kicks: watch::Sender::new(0),
        });
        let accepting = tokio::spawn(accept(listener, shared.clone()));
        Proxy {
            addr,
            shared,
            accepting,
        }
    }

    /// Breaks the next connection once `after` bytes went `direction` on it.
    pub fn cut_next(&self, direction: Direction, after: u64) {
        lock(&self.shared.plan).next = Some(Cut { direction, after });
    }

    /// Breaks every connection from now on once `after` bytes went `direction` on it.
    pub fn cut_every(&self, direction: Direction, after: u64) {
        lock(&self.shared.plan).every = Some(Cut { direction, after });
    }

    /// Relays new connections without breaking them again.
    pub fn heal(&self) {
        *lock(&self.shared.plan) = Plan::default();
    }

    /// Breaks every live connection and waits until they have ended.
    pub async fn kick(&self) {
        self.shared.kicks.send_modify(|kicks| *kicks += 1);
        let until = Instant::now() + KICK_WAIT;
        while self.live() > 0 {
            assert!(Instant::now() < until, "connections outlived a kick");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.shared.relayed).len()
    }

    /// Connections not ended yet.
    pub fn live(&self) -> usize {
        lock(&self.shared.relayed)
            .iter()
            .filter(|r| !r.ended.load(Ordering::SeqCst))
            .count()
    }

    /// Bytes forwarded on each connection, in the order they were accepted.
    pub fn traffic(&self) -> Vec<Traffic> {
        lock(&self.shared.relayed)
            .iter()
            .map(|r| r.traffic())
            .collect()
    }

    /// Bytes forwarded on all connections together.
    pub fn total(&self) -> Traffic {
        self.traffic()
            .iter()
            .fold(Traffic::default(), |sum, t| Traffic {
                upstream: sum.upstream + t.upstream,
                downstream: sum.downstream + t.downstream,
            })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.shared.kicks.send_modify(|kicks| *kicks += 1);
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let cut = {
            let mut plan = lock(&shared.plan);
            plan.next.take().or(plan.every)
        };
        let relayed = Arc::new(Relayed::default());
        lock(&shared.relayed).push(relayed.clone());
        let kicked = shared.kicks.subscribe();
        tokio::spawn(relay(client, shared.target, cut, relayed, kicked));
    }
}

/// How one direction of a connection ended.
enum Ended {
    /// The sending end closed its side (forwarded as a FIN).
    Closed,
    /// The cut was reached, or a socket failed.
    Broken,
}

async fn relay(
    client: TcpStream,
    target: SocketAddr,
    cut: Option<Cut>,
    relayed: Arc<Relayed>,
    mut kicked: watch::Receiver<u64>,
) {
    kicked.mark_unchanged();
    if let Ok(server) = TcpStream::connect(target).await {
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let broken = {
            let up = pump(
                &mut client_read,
                &mut server_write,
                Cut::limit(cut, Direction::Upstream),
                relayed.counter(Direction::Upstream),
            );
            let down = pump(
                &mut server_read,
                &mut client_write,
                Cut::limit(cut, Direction::Downstream),
                relayed.counter(Direction::Downstream),
            );
            tokio::pin!(up, down);
            let (mut up_open, mut down_open) = (true, true);
            loop {
                tokio::select! {
                    ended = &mut up, if up_open => match ended {
                        Ended::Closed => up_open = false,
                        Ended::Broken => break true,
                    },
                    ended = &mut down, if down_open => match ended {
                        Ended::Closed => down_open = false,
                        Ended::Broken => break true,
                    },
                    _ = kicked.changed() => break true,
                }
                if !up_open && !down_open {
                    break false;
                }
            }
        };
        if broken {
            let _ = tokio::join!(client_write.shutdown(), server_write.shutdown());
            let until = Instant::now() + DRAIN;
            tokio::join!(
                discard(&mut client_read, until),
                discard(&mut server_read, until)
            );
        }
    }
    relayed.ended.store(true, Ordering::SeqCst);
}

/// Forwards `from` to `to` until `from` closes, a socket fails, or `limit` bytes went.
async fn pump<R, W>(from: &mut R, to: &mut W, limit: Option<u64>, forwarded: &AtomicU64) -> Ended
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER];
    let mut sent = 0u64;
    loop {
        let allowed = limit.map_or(buf.len() as u64, |limit| limit - sent);
        if allowed == 0 {
            return Ended::Broken;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return Ended::Closed;
            }
            Ok(n) => n.min(usize::try_from(allowed).unwrap_or(usize::MAX)),
            Err(_) => return Ended::Broken,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return Ended::Broken;
        }
        sent += n as u64;
        forwarded.fetch_add(n as u64, Ordering::SeqCst);
    }
}

/// Reads and drops what `from` sends until it closes or `until`.
async fn discard<R: AsyncRead + Unpin>(from: &mut R, until: Instant) {
    let mut sink = vec![0u8; BUFFER];
    while let Ok(Ok(n)) = tokio::time::timeout_at(until, from.read(&mut sink)).await {
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP server that echoes what it reads.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    /// Reads until the stream closes (or fails); returns what arrived.
    async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    #[tokio::test]
    async fn bytes_are_relayed_and_counted_both_ways() {
        let proxy = Proxy::start(echo().await).await;
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let data = crate::data::pseudo_random(300_000, 1);
        stream.write_all(&data).await.unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(read_to_close(&mut stream).await, data);
        assert_eq!(proxy.connections(), 1);
        let expected = Traffic {
            upstream: data.len() as u64,
            downstream: data.len() as u64,
        };
        assert_eq!(proxy.traffic(), [expected]);
        assert_eq!(proxy.total(), expected);
    }

    #[tokio::test]
    async fn the_next_connection_breaks_after_the_given_bytes() {
        let proxy = Proxy::start(echo().await).await;
        proxy.cut_next(Direction::Downstream, 1000);
        let mut cut = TcpStream::connect(proxy.addr).await.unwrap();
        let data = crate::data::pseudo_random(5000, 2);
        cut.write_all(&data).await.unwrap();
        let got = read_to_close(&mut cut).await;
        assert_eq!(got, data[..1000], "exactly the bytes before the cut arrive");
        assert_eq!(proxy.traffic()[0].downstream, 1000);

        // The connection after it is whole.
        let mut whole = TcpStream::connect(proxy.addr).await.unwrap();
        whole.write_all(&data).await.unwrap();
        whole.shutdown().await.unwrap();
        assert_eq!(read_to_close(&mut whole).await, data);
        assert_eq!(proxy.connections(), 2);
    }

    #[tokio::test]
    async fn every_connection_breaks_until_healed() {
        let proxy = Proxy::start(echo().await).await;
        proxy.cut_every(Direction::Upstream, 10);
        for _ in 0..2 {
            let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
            stream.write_all(&[7; 100]).await.unwrap();
            // The echo of the ten bytes may or may not make it back before the break.
            assert!(read_to_close(&mut stream).await.len() <= 10);
        }
        proxy.heal();
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(&[7; 100]).await.unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(read_to_close(&mut stream).await, [7; 100]);
        let upstream: Vec<u64> = proxy.traffic().iter().map(|t| t.upstream).collect();
        assert_eq!(upstream, [10, 10, 100]);
    }

    #[tokio::test]
    async fn a_kick_ends_every_live_connection() {
        let proxy = Proxy::start(echo().await).await;
        let mut streams = Vec::new();
        for _ in 0..3 {
            let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
            stream.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await.unwrap();
            streams.push(stream);
        }
        assert_eq!(proxy.live(), 3);
        proxy.kick().await;
        assert_eq!(proxy.live(), 0);
        for stream in &mut streams {
            assert!(read_to_close(stream).await.is_empty());
        }
        // New connections are relayed as before.
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(b"again").await.unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(read_to_close(&mut stream).await, b"again");
        assert_eq!(proxy.connections(), 4);
    }
}
