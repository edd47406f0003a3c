//! The listener's connection slots: who may hold one, and for how long without a request.
//!
//! - At most `max_connections` are open. When all are taken and another connection arrives,
//!   the connection that has been idle (no request in flight) the longest is closed to make
//!   room; if none is idle, new connections wait until one closes. Idle connections therefore
//!   never keep a client with a request out.
//! - At most `max_connections_per_ip` come from one address (trusted proxies are exempt);
//!   beyond that a new connection is closed at once.
//! - A connection with no request in flight must deliver a request head within
//!   `header_timeout` of opening or of its previous request's end. That covers the TLS
//!   handshake, protocol detection, an HTTP/2 preface with nothing after it, and idle
//!   keep-alive connections of both protocols.
//! - A request body must arrive in full within `body_timeout` of its head ([`TimedBody`]).
//!
//! The deadlines live in the connection's I/O ([`GuardedIo`]): once one has passed, reads and
//! writes fail, and hyper closes the connection. Eviction works the same way.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::client_ip::TrustedProxies;

/// A connection idle for less than this is not closed to make room: it may be about to send
/// its request, or still be writing its last response.
const MIN_IDLE_TO_EVICT: Duration = Duration::from_secs(1);
/// How often a full table is looked at again while no connection can be closed.
const FULL_RECHECK: Duration = Duration::from_millis(20);

/// The limits of [`Connections`].
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    /// 0: no limit.
    pub max_per_ip: usize,
    /// Exempt from `max_per_ip`: every client of a load balancer arrives from its address.
    pub trusted_proxies: TrustedProxies,
    pub header_timeout: Duration,
}

/// The open connections of one listener.
pub struct Connections {
    table: Mutex<Table>,
    limits: ConnectionLimits,
    /// Origin of the slots' idle timestamps.
    epoch: Instant,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Arc<Slot>>,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections told to close to make room, not yet gone: their slots count as free.
    evicted: usize,
}

/// One open connection's state, shared by its I/O, its requests and the table.
pub struct Slot {
    id: u64,
    ip: IpAddr,
    in_flight: AtomicUsize,
    /// When the last request ended (or the connection opened), in nanoseconds since `epoch`.
    idle_since: AtomicU64,
    evicted: AtomicBool,
    /// The connection's task, woken when its deadline moves or it is evicted.
    waker: AtomicWaker,
    epoch: Instant,
}

impl Slot {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// When this connection must close unless a request starts: `None` while one is in flight.
    fn deadline(&self, header_timeout: Duration) -> Option<(u64, Instant)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.idle_since.load(Ordering::Acquire);
        Some((
            since,
            self.epoch + Duration::from_nanos(since) + header_timeout,
        ))
    }

    /// Marks a request in flight until the returned guard is dropped.
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }
}

/// A request in flight on a connection; dropping it (response produced, or the request
/// abandoned) may start the connection's idle deadline.
pub struct InFlight(Arc<Slot>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let slot = &self.0;
        slot.idle_since.store(slot.now(), Ordering::Release);
        if slot.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            slot.waker.wake(); // so the I/O arms the idle deadline
        }
    }
}

/// A connection's place in the table, given up when dropped.
pub struct Admitted {
    connections: Arc<Connections>,
    pub slot: Arc<Slot>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.release(&self.slot);
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyFromAddress;

impl Connections {
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::default(),
            limits,
            epoch: Instant::now(),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic cannot leave the table inconsistent (each update is a few plain writes).
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves when one more connection may be admitted: a slot is free, or the connection
    /// idle the longest has been told to close to free one. Called with a client waiting, so
    /// an idle connection is only ever closed for another that is there.
    pub async fn room(&self) {
        loop {
            if self.make_room() {
                return;
            }
            tokio::time::sleep(FULL_RECHECK).await;
        }
    }

    fn make_room(&self) -> bool {
        let mut table = self.table();
        if table.open.len() - table.evicted < self.limits.max_connections {
            return true;
        }
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let min_idle = u64::try_from(MIN_IDLE_TO_EVICT.as_nanos()).unwrap_or(u64::MAX);
        let victim = table
            .open
            .values()
            .filter(|s| !s.evicted.load(Ordering::Acquire))
            .filter(|s| s.in_flight.load(Ordering::Acquire) == 0)
            .map(|s| (s.idle_since.load(Ordering::Acquire), s))
            .filter(|(since, _)| now.saturating_sub(*since) >= min_idle)
            .min_by_key(|(since, _)| *since)
            .map(|(_, s)| s.clone());
        let Some(victim) = victim else {
            return false;
        };
        victim.evicted.store(true, Ordering::Release);
        victim.waker.wake();
        table.evicted += 1;
        tracing::debug!(ip = %victim.ip, "closing the longest-idle connection to make room");
        true
    }

    /// False when `ip` already holds its share of the slots.
    pub fn may_admit(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let capped = self.limits.max_per_ip > 0 && !self.limits.trusted_proxies.contains(ip);
        !capped || self.table().per_ip.get(&ip).copied().unwrap_or(0) < self.limits.max_per_ip
    }

    /// Registers a connection from `ip`, unless that address already holds its share.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, TooManyFromAddress> {
        if !self.may_admit(ip) {
            return Err(TooManyFromAddress);
        }
        let ip = ip.to_canonical();
        let mut table = self.table();
        table.next_id += 1;
        let slot = Arc::new(Slot {
            id: table.next_id,
            ip,
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(
                u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX),
            ),
            evicted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            epoch: self.epoch,
        });
        table.open.insert(slot.id, slot.clone());
        *table.per_ip.entry(ip).or_default() += 1;
        Ok(Admitted {
            connections: self.clone(),
            slot,
        })
    }

    fn release(&self, slot: &Slot) {
        let mut table = self.table();
        if table.open.remove(&slot.id).is_none() {
            return;
        }
        if slot.evicted.load(Ordering::Acquire) {
            table.evicted -= 1;
        }
        if let Some(count) = table.per_ip.get_mut(&slot.ip) {
            *count -= 1;
            if *count == 0 {
                table.per_ip.remove(&slot.ip);
            }
        }
    }

    /// Wraps a connection's I/O so that its deadlines and eviction apply.
    pub fn guard<I>(&self, io: I, slot: &Arc<Slot>) -> GuardedIo<I> {
        GuardedIo {
            inner: io,
            slot: slot.clone(),
            header_timeout: self.limits.header_timeout,
            sleep: Box::pin(tokio::time::sleep_until(
                Instant::now() + Duration::from_secs(86_400),
            )),
            armed_for: None,
        }
    }
}

/// A connection's I/O that fails once the connection is past its deadline or evicted.
pub struct GuardedIo<I> {
    inner: I,
    slot: Arc<Slot>,
    header_timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    /// The `idle_since` the sleep is set for.
    armed_for: Option<u64>,
}

impl<I> GuardedIo<I> {
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.slot.waker.register(cx.waker());
        if self.slot.evicted.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for another connection",
            ));
        }
        let Some((since, deadline)) = self.slot.deadline(self.header_timeout) else {
            return Ok(());
        };
        if self.armed_for != Some(since) {
            self.sleep.as_mut().reset(deadline);
            self.armed_for = Some(since);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request within server.header_timeout_seconds",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for GuardedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for GuardedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The request body did not arrive within `server.body_timeout_seconds`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within server.body_timeout_seconds")]
pub struct BodyTimedOut;

/// True when `error`, or an error it wraps, is [`BodyTimedOut`].
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// A request body that must arrive in full by a deadline, however it trickles in.
pub struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    /// Made only when the body has to be waited for (most requests have none).
    sleep: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    pub fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Instant::now() + timeout,
            sleep: None,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        // Checked before reading, so a body that trickles in a byte at a time is cut off too.
        if Instant::now() >= this.deadline {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
