//! Client listeners: the accept loop and one task per connection.
//!
//! A connection's reader takes 4-byte-framed requests off the wire, refuses oversized frames and
//! unknown API keys by closing, answers an ApiVersions request of an unknown version with a v0
//! UNSUPPORTED_VERSION response, and starts each request in arrival order: a produce request's
//! batches are appended right there (so an idempotent producer's pipelined batches reach the log
//! in the order sent), and the rest of every request runs as its own task (up to 64 in flight).
//! A writer awaits those tasks in request order, so responses leave in order even when later
//! requests finish first; an acks=0 produce yields no response at all. Idle connections hold
//! only a 4-byte read buffer.
//! Servers take an already-bound listener and a cancellation token (tests bind port 0).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handlers::{self, Context};
use sasl::Verdict;

mod sasl;
pub mod stats;
use crate::protocol::{self, FrameError, Part, Reply};

/// Requests one connection may have in flight before the reader waits for the writer.
const MAX_IN_FLIGHT: usize = 64;

/// A started request: its handler task, or an answer that needed none.
enum Work {
    /// The handler's task (its answer and when that was ready), the frame's room in the
    /// request memory pool, and the API (for the send time in `/metrics`).
    Task(
        JoinHandle<(Result<Option<Reply>, FrameError>, Instant)>,
        Option<OwnedSemaphorePermit>,
        ApiKey,
    ),
    Ready(Bytes),
}

/// The broker's open client connections, over all listeners: `max.connections` in all and
/// `max.connections.per.ip` from one address; and the request bytes they hold
/// (`queued.max.request.bytes`). One per node, shared by its listeners.
pub struct Connections {
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Open connections per listener name (`/metrics`).
    per_listener: Mutex<HashMap<String, usize>>,
    /// Every request's phases, per API (`/metrics`).
    pub requests: stats::RequestStats,
    /// Permits are bytes; a frame's are held until its answer is written.
    request_bytes: Option<(Arc<Semaphore>, usize)>,
    /// `queued.max.requests`: a permit per request read and not yet taken up by its handler
    /// task (a task spawned but not yet run: the runtime's threads are behind).
    queued: Arc<Semaphore>,
}

/// One admitted connection; leaving gives its place back.
struct Admitted {
    connections: Arc<Connections>,
    ip: IpAddr,
    listener: String,
}

impl Connections {
    pub fn new(config: &crate::config::Config) -> Connections {
        Connections {
            per_ip: Mutex::new(HashMap::new()),
            per_listener: Mutex::new(HashMap::new()),
            requests: stats::RequestStats::default(),
            request_bytes: config
                .queued_max_request_bytes
                .map(|n| (Arc::new(Semaphore::new(n)), n)),
            queued: Arc::new(Semaphore::new(config.queued_max_requests)),
        }
    }

    /// Open client connections over all listeners.
    pub fn open(&self) -> usize {
        self.per_ip
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }

    /// A place in the queue of requests waiting for a handler, waited for.
    async fn queue_place(&self) -> Option<OwnedSemaphorePermit> {
        self.queued.clone().acquire_owned().await.ok()
    }

    /// Requests read and not yet taken up by a handler (`/metrics`).
    pub fn queued(&self, capacity: usize) -> usize {
        capacity.saturating_sub(self.queued.available_permits())
    }

    /// Room for a frame of `size` bytes in the request memory pool, waited for; a frame larger
    /// than the whole pool waits for all of it.
    async fn room_for(&self, size: usize) -> Option<OwnedSemaphorePermit> {
        let (pool, total) = self.request_bytes.as_ref()?;
        let want = u32::try_from(size.min(*total)).unwrap_or(u32::MAX);
        pool.clone().acquire_many_owned(want).await.ok()
    }

    /// Open client connections per listener.
    pub fn open_per_listener(&self) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = self
            .per_listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        v.sort();
        v
    }

    /// Admits a connection from `ip` on `listener` if both limits allow it
    /// (`max.connections`, and `max.connections.per.ip` or the address's override).
    fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        listener: &str,
        config: &crate::config::Config,
    ) -> Option<Admitted> {
        let max_per_ip = config
            .max_connections_per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(config.max_connections_per_ip);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = per_ip.values().sum();
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        if total >= config.max_connections || from_ip >= max_per_ip {
            return None;
        }
        *per_ip.entry(ip).or_default() += 1;
        *self
            .per_listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(listener.to_string())
            .or_default() += 1;
        Some(Admitted {
            connections: self.clone(),
            ip,
            listener: listener.to_string(),
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_ip = self
            .connections
            .per_ip
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        let mut per_listener = self
            .connections
            .per_listener
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_listener.get_mut(&self.listener) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Accepts connections until `token` is cancelled; each connection is tracked by `tracker` so
/// shutdown can wait for in-flight responses to drain. A connection over `max.connections` or
/// `max.connections.per.ip` is closed at once.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    connections: Arc<Connections>,
    token: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(admitted) = connections.admit(peer.ip(), &ctx.listener, &ctx.config) else {
                        tracing::debug!(%peer, listener = %ctx.listener, "connection refused: max.connections or max.connections.per.ip reached");
                        drop(stream);
                        continue;
                    };
                    tracing::debug!(%peer, listener = %ctx.listener, "connection accepted");
                    let (ctx, token) = (ctx.clone(), token.child_token());
                    let connections = connections.clone();
                    tracker.spawn(async move {
                        connection(stream, ctx, connections, token).await;
                        drop(admitted);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// What the reader and the writer of one connection share to tell an idle connection: requests
/// started and not yet answered, and when it last read or wrote.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    last_ms: AtomicI64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(crate::types::now_ms(), Ordering::Relaxed);
    }

    /// How long until the connection has been idle for `limit` (nothing in flight, nothing
    /// read or written); zero once it has.
    fn idle_in(&self, limit: Duration) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return limit;
        }
        let quiet = crate::types::now_ms() - self.last_ms.load(Ordering::Relaxed);
        limit.saturating_sub(Duration::from_millis(quiet.max(0) as u64))
    }
}

/// Sets up one accepted connection: the TLS handshake on a TLS listener (bounded in time; a
/// failure is logged once and closes it), then the reader and writer.
async fn connection(
    stream: TcpStream,
    ctx: Arc<Context>,
    connections: Arc<Connections>,
    token: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let Some(acceptor) = ctx.auth.tls.clone() else {
        let (rd, wr) = stream.into_split();
        return serve_connection(rd, wr, peer, None, ctx, connections, token).await;
    };
    // Boxed: the TLS state is large, and a plaintext connection's future should not carry room
    // for it (idle connections are counted in bytes).
    Box::pin(tls_connection(
        stream,
        acceptor,
        peer,
        ctx,
        connections,
        token,
    ))
    .await
}

async fn tls_connection(
    stream: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    peer: Option<std::net::SocketAddr>,
    ctx: Arc<Context>,
    connections: Arc<Connections>,
    token: CancellationToken,
) {
    let limit = ctx
        .config
        .connections_max_idle
        .unwrap_or(TLS_HANDSHAKE_LIMIT)
        .min(TLS_HANDSHAKE_LIMIT);
    let handshake = tokio::select! {
        _ = token.cancelled() => return,
        r = tokio::time::timeout(limit, acceptor.accept(stream)) => r,
    };
    match handshake {
        Ok(Ok(tls)) => {
            // A client certificate names the client, as Kafka's DEFAULT mapping does:
            // `User:` and the subject (SASL, on SASL_SSL, names it instead).
            let principal = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::auth::x509::subject(c))
                .map(|dn| format!("User:{dn}"));
            let (rd, wr) = tokio::io::split(tls);
            serve_connection(rd, wr, peer, principal, ctx, connections, token).await
        }
        Ok(Err(e)) => {
            tracing::info!(peer = ?peer, listener = %ctx.listener, error = %e, "TLS handshake failed (a client without TLS, or one that does not trust this certificate?)")
        }
        Err(_) => {
            tracing::info!(peer = ?peer, listener = %ctx.listener, "TLS handshake not completed in time")
        }
    }
}

/// How long a TLS handshake may take at most.
const TLS_HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// The write side of a connection, and the TCP socket under it when record data may go out
/// with sendfile (plaintext; a TLS stream must encrypt, so it copies).
trait Outbound: tokio::io::AsyncWrite + Unpin + Send {
    fn socket(&self) -> Option<&TcpStream>;
}

impl Outbound for tokio::net::tcp::OwnedWriteHalf {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl Outbound for tokio::io::WriteHalf<tokio_rustls::server::TlsStream<TcpStream>> {
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

async fn serve_connection<R, W>(
    rd: R,
    wr: W,
    peer: Option<std::net::SocketAddr>,
    principal: Option<String>,
    ctx: Arc<Context>,
    connections: Arc<Connections>,
    token: CancellationToken,
) where
    R: tokio::io::AsyncRead + Unpin + Send,
    W: Outbound,
{
    let (tx, rx) = mpsc::channel::<Work>(MAX_IN_FLIGHT);
    let activity = Arc::new(Activity::default());
    activity.touch();
    // The connection's own context: who it is and where from (SASL may name it later).
    // Only what the authorizer asks about needs it: without ACLs, and without a certificate or
    // SASL to name the client, the listener's context serves (an idle connection stays small).
    let named = principal.is_some() || ctx.auth.sasl.is_some();
    let ctx = if named || ctx.config.authorizer.is_some() {
        let host = peer.map(|a| a.ip().to_string()).unwrap_or_default();
        Arc::new(ctx.for_connection(principal.as_deref().unwrap_or(handlers::ANONYMOUS), &host))
    } else {
        ctx
    };
    let stats = connections.clone();
    let reader = read_requests(
        rd,
        tx,
        ctx,
        peer.map(|a| a.ip()),
        activity.clone(),
        connections,
        token.clone(),
    );
    let writer = write_responses(wr, rx, activity, stats, token.clone());
    let (why, ()) = tokio::join!(reader, writer);
    if let Some(why) = why {
        tracing::info!(peer = ?peer, reason = %why, "closing connection");
    }
}

/// Reads frames until EOF, cancellation or a frame that must close the connection; returns why
/// it closed when that was the client's fault.
async fn read_requests<R: tokio::io::AsyncRead + Unpin>(
    mut rd: R,
    tx: mpsc::Sender<Work>,
    ctx: Arc<Context>,
    peer: Option<std::net::IpAddr>,
    activity: Arc<Activity>,
    connections: Arc<Connections>,
    token: CancellationToken,
) -> Option<String> {
    let max = ctx.config.socket_request_max_bytes;
    let idle = ctx.config.connections_max_idle;
    let mut order = handlers::ConnectionOrder::default();
    let mut sasl_conn = ctx.auth.sasl.as_ref().map(|_| sasl::SaslConnection::new());
    let host = ctx.host.to_string();
    let mut ctx = ctx;
    loop {
        // The next frame's size, read with `read` (safe to cancel) so the idle check can
        // interrupt the wait without losing bytes.
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            // Wakes once per idle period at most, not per connection per second.
            let wait = idle.map(|l| activity.idle_in(l)).unwrap_or(Duration::MAX);
            if let (Some(limit), true) = (idle, wait.is_zero()) {
                return Some(format!(
                    "idle for {} ms (connections.max.idle.ms)",
                    limit.as_millis()
                ));
            }
            tokio::select! {
                _ = token.cancelled() => return None,
                r = rd.read(&mut len[got..]) => match r {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => got += n,
                },
                _ = tokio::time::sleep(wait) => {}
            }
        }
        activity.touch();
        let size = i32::from_be_bytes(len);
        if size < 0 || size as usize > max {
            return Some(format!(
                "frame of {size} bytes exceeds socket.request.max.bytes ({max})"
            ));
        }
        let room = tokio::select! {
            _ = token.cancelled() => return None,
            room = connections.room_for(size as usize) => room,
        };
        // A frame must arrive whole within the idle limit: half a frame and silence closes.
        let frame = tokio::select! {
            _ = token.cancelled() => return None,
            _ = tokio::time::sleep(idle.unwrap_or(Duration::MAX)) => {
                return Some("a request frame was not completed within connections.max.idle.ms".into())
            }
            r = protocol::read_body(&mut rd, size as usize) => match r {
                Ok(frame) => frame.freeze(),
                Err(_) => return Some("connection closed inside a frame".into()),
            },
        };
        if let (Some(sasl), Some(conn)) = (&ctx.auth.sasl, sasl_conn.as_mut()) {
            if conn.expects_token() {
                match conn.on_token(&frame, sasl, &ctx) {
                    Verdict::Answer(bytes) => {
                        activity.in_flight.fetch_add(1, Ordering::AcqRel);
                        if tx.send(Work::Ready(bytes)).await.is_err() {
                            return None;
                        }
                        if let Some(user) = conn.user.as_deref() {
                            ctx = Arc::new(ctx.for_connection(&format!("User:{user}"), &host));
                        }
                        continue;
                    }
                    Verdict::Close(why) => return Some(why),
                    Verdict::Pass | Verdict::AnswerThenClose(..) => {
                        return Some("unexpected SASL state".into())
                    }
                }
            }
        }
        let (key, version) = match protocol::peek_key_version(&frame) {
            Ok(kv) => kv,
            Err(e) => return Some(e.to_string()),
        };
        let known =
            protocol::supported(key).is_some_and(|(min, max)| version >= min && version <= max);
        if let (Some(sasl), Some(conn), true) = (&ctx.auth.sasl, sasl_conn.as_mut(), known) {
            let (answer, close) = match conn.on_request(key, version, &frame, sasl, &ctx) {
                Err(e) => return Some(e.to_string()),
                Ok(Verdict::Pass) => (None, None),
                Ok(Verdict::Answer(b)) => (Some(b), None),
                Ok(Verdict::AnswerThenClose(b, why)) => (Some(b), Some(why)),
                Ok(Verdict::Close(why)) => return Some(why),
            };
            if let Some(bytes) = answer {
                activity.in_flight.fetch_add(1, Ordering::AcqRel);
                if tx.send(Work::Ready(bytes)).await.is_err() {
                    return None;
                }
                if close.is_some() {
                    // The answer is queued; the writer sends it before the connection ends.
                    return close;
                }
                if let Some(user) = conn.user.as_deref() {
                    let principal = format!("User:{user}");
                    if *ctx.principal != *principal {
                        ctx = Arc::new(ctx.for_connection(&principal, &host));
                    }
                }
                continue;
            }
        }
        let work = match protocol::supported(key) {
            Some((min, max)) if version >= min && version <= max => match protocol::parse(frame) {
                Ok(parsed) => {
                    // Kafka's network threads stop reading while its request queue is full;
                    // so does this reader, holding the one whole request it has read.
                    let mut queued = tokio::select! {
                        _ = token.cancelled() => return None,
                        place = connections.queue_place() => place,
                    };
                    let began = Instant::now();
                    let started = match handlers::start(ctx.clone(), parsed, peer, &mut order) {
                        Ok(handlers::Started::Now(rest)) => Ok(rest),
                        Ok(handlers::Started::Later(first)) => {
                            // Taken up here, by the reader; the wait (a transaction
                            // coordinator's answer) must not hold a place other brokers'
                            // requests may need.
                            queued = None;
                            first.await
                        }
                        Err(e) => Err(e),
                    };
                    match started {
                        Ok(rest) => {
                            let started = began.elapsed();
                            let spawned = Instant::now();
                            let stats = connections.clone();
                            let task = tokio::spawn(async move {
                                // Taken up: its place in the queue is free.
                                drop(queued);
                                let ran = Instant::now();
                                let answer = rest.await;
                                let ready = Instant::now();
                                if let Some(s) = stats.requests.of(key) {
                                    s.queue.observe(ran - spawned);
                                    s.handle.observe(started + (ready - ran));
                                }
                                (answer, ready)
                            });
                            Work::Task(task, room, key)
                        }
                        Err(e) => return Some(e.to_string()),
                    }
                }
                Err(e) => return Some(e.to_string()),
            },
            _ if key == ApiKey::ApiVersions => {
                // The client retries with a version from this list (KIP-511).
                let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
                let body = ApiVersionsResponse::default()
                    .with_error_code(handlers::errors::Refusal::UnsupportedVersion.code())
                    .with_api_keys(handlers::api_versions::list());
                match protocol::encode_response(ApiKey::ApiVersions, 0, correlation_id, &body) {
                    Ok(bytes) => Work::Ready(bytes),
                    Err(e) => return Some(e.to_string()),
                }
            }
            _ => return Some(FrameError::UnsupportedVersion { key, version }.to_string()),
        };
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        if tx.send(work).await.is_err() {
            return None;
        }
    }
}

/// Writes a response whose record data comes straight from segment files: in-memory pieces
/// through the buffer, file ranges with sendfile on the socket (no copy through user space).
async fn write_spliced<W: Outbound>(
    wr: &mut BufWriter<W>,
    parts: Vec<Part>,
) -> std::io::Result<()> {
    for part in parts {
        match part {
            Part::Bytes(b) => wr.write_all(&b).await?,
            Part::File { file, offset, len } => {
                if wr.get_ref().socket().is_none() {
                    copy_range(wr, &file, offset, len).await?;
                    continue;
                }
                // The buffer must be out before the kernel sends file bytes behind it.
                wr.flush().await?;
                if let Some(sock) = wr.get_ref().socket() {
                    send_file(sock, &file, offset, len).await?;
                }
            }
        }
    }
    Ok(())
}

/// Writes `len` bytes of `file` from `offset` through the writer (TLS listeners, which must
/// encrypt what they send).
async fn copy_range<W: Outbound>(
    wr: &mut BufWriter<W>,
    file: &std::fs::File,
    mut offset: u64,
    mut len: usize,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len.min(64 * 1024)];
    while len > 0 {
        let want = len.min(buf.len());
        let n = file.read_at(&mut buf[..want], offset)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "segment file shorter than the range being sent",
            ));
        }
        wr.write_all(&buf[..n]).await?;
        offset += n as u64;
        len -= n;
    }
    Ok(())
}

async fn send_file(
    sock: &TcpStream,
    file: &std::fs::File,
    mut offset: u64,
    mut len: usize,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    while len > 0 {
        sock.writable().await?;
        let sent = sock.try_io(tokio::io::Interest::WRITABLE, || {
            sendfile(sock.as_raw_fd(), file.as_raw_fd(), offset, len)
        });
        match sent {
            Ok(0) => {
                // The file is shorter than the range: the response cannot be completed.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment file shorter than the range being sent",
                ));
            }
            Ok(n) => {
                offset += n as u64;
                len -= n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One sendfile(2) call: up to `len` bytes of `file_fd` from `offset` to `sock_fd`.
#[allow(unsafe_code)]
fn sendfile(sock_fd: i32, file_fd: i32, offset: u64, len: usize) -> std::io::Result<usize> {
    let mut off = offset as libc::off_t;
    // SAFETY: both descriptors are borrowed from live owners for the whole call, and `off` is a
    // valid, exclusively borrowed off_t the kernel updates.
    let n = unsafe { libc::sendfile(sock_fd, file_fd, &mut off, len.min(1 << 30)) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Writes responses in request order as their tasks finish; stops (cancelling the reader) on a
/// write error, a handler that asks to close, or a handler that panicked.
async fn write_responses<W: Outbound>(
    wr: W,
    mut rx: mpsc::Receiver<Work>,
    activity: Arc<Activity>,
    stats: Arc<Connections>,
    token: CancellationToken,
) {
    // The write buffer is made when the first request arrives: a connection that never asks
    // anything holds none.
    let mut next = rx.recv().await;
    let mut wr = BufWriter::with_capacity(if next.is_some() { 64 * 1024 } else { 0 }, wr);
    while let Some(work) = next.take() {
        let (done, sent) = match work {
            // The frame's room in the pool goes once its answer is written (below).
            Work::Task(task, _room, key) => match task.await {
                Ok((answer, ready)) => (Ok(answer), Some((key, ready))),
                Err(e) => (Err(e), None),
            },
            Work::Ready(bytes) => (Ok(Ok(Some(Reply::Frame(bytes)))), None),
        };
        match done {
            Ok(Ok(Some(Reply::Frame(bytes)))) => {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            Ok(Ok(Some(Reply::Spliced(parts)))) => {
                if let Err(e) = write_spliced(&mut wr, parts).await {
                    tracing::debug!(error = %e, "cannot send a fetch response");
                    break;
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::info!(reason = %e, "closing connection");
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, "request handler panicked; closing its connection");
                break;
            }
        }
        activity.touch();
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
        if rx.is_empty() && wr.flush().await.is_err() {
            break;
        }
        if let Some(s) = sent.and_then(|(key, ready)| Some((stats.requests.of(key)?, ready))) {
            s.0.send.observe(s.1.elapsed());
        }
        next = rx.recv().await;
    }
    token.cancel();
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tokio::io::AsyncReadExt;

    use super::*;

    /// A range the segment file does not hold cannot be completed: the bytes the file has go
    /// out, then the send fails, so the connection ends rather than carrying a short frame.
    #[tokio::test]
    async fn a_range_past_the_end_of_the_file_fails_after_what_the_file_holds() {
        let mut file = tempfile::tempfile().expect("tempfile");
        let content: Vec<u8> = (0..100).collect();
        file.write_all(&content).expect("write");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut sock = TcpStream::connect(addr).await.expect("connect");
            let mut got = Vec::new();
            sock.read_to_end(&mut got).await.expect("read");
            got
        });
        let (sock, _) = listener.accept().await.expect("accept");
        let err = send_file(&sock, &file, 40, 200)
            .await
            .expect_err("the file ends before the range");
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        send_file(&sock, &file, 0, 40)
            .await
            .expect("a range within the file");
        drop(sock);
        let got = client.await.expect("client");
        assert_eq!(got, [&content[40..], &content[..40]].concat());
    }
}
