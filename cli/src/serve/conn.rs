//! Accepting and serving connections so that no client can stop the server answering others:
//! a cap on connections (below the open-file limit) where the longest-idle connection makes
//! room for a new one, a deadline on request heads and on idle keep-alive connections, a
//! deadline on responses the client does not read, backoff on accept errors, and a graceful
//! stop that lets requests in flight finish.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// The limits a listener enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// Also how long a response may wait for the client to read it.
    pub request_timeout: Duration,
    pub max_header_bytes: usize,
}

impl Limits {
    /// The connection cap, kept below the open-file limit so that accepting never runs out of
    /// descriptors while connections are all idle.
    pub fn effective_max_connections(&self) -> usize {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` writes into the struct we own.
        let files = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
            0 => usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX),
            _ => usize::MAX,
        };
        // Room for the store, the listeners, an upstream connection per request and logs.
        let reserve = 32usize.max(files / 4);
        self.max_connections
            .min(files.saturating_sub(reserve))
            .max(1)
    }
}

/// What the sweeper knows of one connection.
struct ConnState {
    /// Requests being answered (their response not yet fully written).
    in_flight: AtomicU32,
    /// Milliseconds (since the server started) since when the connection has been idle, and
    /// whether it has received bytes of a next request since.
    idle_since: AtomicU64,
    started_head: AtomicBool,
    /// Milliseconds since when a write has been waiting for the client to read; 0 if none.
    write_blocked_since: AtomicU64,
    /// Told to close (it still holds its descriptor until its task ends).
    killed: AtomicBool,
    kill: Notify,
}

impl ConnState {
    fn close(&self) {
        self.killed.store(true, Ordering::Relaxed);
        self.kill.notify_one();
    }
}

/// Every open connection, for the sweeper and for making room.
pub struct Registry {
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    /// Notified when the last connection closes (for the graceful stop).
    empty: Notify,
    /// Notified whenever a connection closes (for accepting at the cap).
    removed: Notify,
    limits: Limits,
    max: usize,
}

impl Registry {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            empty: Notify::new(),
            removed: Notify::new(),
            max: limits.effective_max_connections(),
            limits,
        })
    }

    fn now_ms(&self) -> u64 {
        // Never 0, which means "not blocked".
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn add(&self) -> (u64, Arc<ConnState>) {
        let state = Arc::new(ConnState {
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(self.now_ms()),
            started_head: AtomicBool::new(false),
            write_blocked_since: AtomicU64::new(0),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, state.clone());
        (id, state)
    }

    /// Room for a newcomer: the connection idle the longest is told to close (a slow client
    /// that never finishes its head is idle from its start).
    fn make_room(&self) {
        let conns = self.lock();
        let oldest = conns
            .values()
            .filter(|c| {
                c.in_flight.load(Ordering::Relaxed) == 0 && !c.killed.load(Ordering::Relaxed)
            })
            .min_by_key(|c| c.idle_since.load(Ordering::Relaxed));
        if let Some(c) = oldest {
            c.close();
        }
    }

    /// Returns once a connection may be accepted: below the cap, making room when at it. A
    /// connection told to close holds its descriptor until its task ends, so this waits for
    /// closings to finish rather than counting them as room.
    async fn room(&self) {
        while self.len() >= self.max {
            let removed = self.removed.notified();
            tokio::pin!(removed);
            removed.as_mut().enable();
            self.make_room();
            // Every connection busy: wait for one to finish (never a spin).
            let _ = tokio::time::timeout(Duration::from_millis(50), removed).await;
        }
    }

    fn remove(&self, id: u64) {
        let mut conns = self.lock();
        conns.remove(&id);
        self.removed.notify_waiters();
        if conns.is_empty() {
            self.empty.notify_waiters();
        }
    }

    /// Closes connections past a deadline; runs until the process ends.
    pub async fn sweep(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = self.now_ms();
            let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            for c in self.lock().values() {
                let blocked = c.write_blocked_since.load(Ordering::Relaxed);
                let idle = c.idle_since.load(Ordering::Relaxed);
                let expired = if blocked != 0 {
                    now.saturating_sub(blocked) > ms(self.limits.request_timeout)
                } else if c.in_flight.load(Ordering::Relaxed) > 0 {
                    // The service's own timeout bounds a request.
                    false
                } else if c.started_head.load(Ordering::Relaxed) {
                    now.saturating_sub(idle) > ms(self.limits.header_timeout)
                } else {
                    now.saturating_sub(idle) > ms(self.limits.idle_timeout)
                };
                if expired {
                    c.close();
                }
            }
        }
    }

    /// Waits until every connection has closed, or `deadline` passed.
    pub async fn drained(&self, deadline: Duration) {
        let wait = async {
            loop {
                let notified = self.empty.notified();
                if self.len() == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
    }
}

/// A socket that tells its connection's state what it does.
struct Watched {
    io: TokioIo<TcpStream>,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl Read for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Bytes read while no request is in flight are the start of a next request's head.
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if polled.is_ready() && this.state.in_flight.load(Ordering::Relaxed) == 0 {
            this.state.started_head.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl Write for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.note_write(polled.is_pending());
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.note_write(polled.is_pending());
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.note_write(polled.is_pending());
        polled
    }
}

impl Watched {
    fn note_write(&self, pending: bool) {
        let s = &self.state.write_blocked_since;
        if !pending {
            s.store(0, Ordering::Relaxed);
        } else if s.load(Ordering::Relaxed) == 0 {
            s.store(self.registry.now_ms(), Ordering::Relaxed);
        }
    }
}

/// Counts a request in flight on its connection until its response is done (dropped).
pub struct InFlight {
    state: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.state.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.state
                .idle_since
                .store(self.registry.now_ms(), Ordering::Relaxed);
        }
    }
}

/// A service per connection: every request is handed the connection's [`InFlight`] guard,
/// which the application keeps until its response body is done.
pub trait Handler: Clone + Send + Sync + 'static {
    /// The response body.
    type Body: hyper::body::Body<Data = bytes::Bytes, Error = Self::BodyError> + Send + 'static;
    /// The body's error.
    type BodyError: Into<Box<dyn std::error::Error + Send + Sync>>;
    /// The response future (hyper's services may fail; these answer every request).
    type Future: std::future::Future<Output = Result<Response<Self::Body>, std::convert::Infallible>>
        + Send
        + 'static;

    fn call(&self, req: Request<Incoming>, peer: SocketAddr, in_flight: InFlight) -> Self::Future;
}

#[derive(Clone)]
struct PerConnection<H> {
    handler: H,
    peer: SocketAddr,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl<H: Handler> Service<Request<Incoming>> for PerConnection<H> {
    type Response = Response<H::Body>;
    type Error = std::convert::Infallible;
    type Future = H::Future;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.state.in_flight.fetch_add(1, Ordering::Relaxed);
        self.state.started_head.store(false, Ordering::Relaxed);
        let guard = InFlight {
            state: self.state.clone(),
            registry: self.registry.clone(),
        };
        self.handler.call(req, self.peer, guard)
    }
}

/// Whether an accept error concerns only the connection being accepted (retry at once)
/// rather than the process (back off).
fn connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Serves `listener` with `handler` until `stop` turns true, then lets every connection finish
/// the request it is answering (no new ones).
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: H,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(registry.limits.header_timeout)
        .max_buf_size(registry.limits.max_header_bytes.max(8192))
        .keep_alive(true)
        .writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .max_header_list_size(u32::try_from(registry.limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(registry.limits.idle_timeout / 2))
        .keep_alive_timeout(registry.limits.header_timeout);
    let builder = Arc::new(builder);
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            _ = registry.room() => {}
        }
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) if connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors or memory: close the longest-idle connection, then wait,
                // doubling up to 100 ms, instead of spinning (a waiting client is never kept
                // longer than that by the backoff itself).
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    registry.make_room();
                }
                eprintln!("portcullis: accept: {e} (retrying in {backoff:?})");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(100));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (id, state) = registry.add();
        let io = Watched {
            io: TokioIo::new(stream),
            state: state.clone(),
            registry: registry.clone(),
        };
        let service = PerConnection {
            handler: handler.clone(),
            peer,
            state: state.clone(),
            registry: registry.clone(),
        };
        let (builder, registry, mut stop) = (builder.clone(), registry.clone(), stop.clone());
        tokio::spawn(async move {
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    _ = state.kill.notified() => break,
                    _ = stop.wait_for(|s| *s), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            registry.remove(id);
        });
    }
}
