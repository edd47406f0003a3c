//! Runs the gateway: the public listener and the metrics listener, sharing one shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::AppState;
use crate::http::listener::{self, ServeOptions};
use crate::http::router;
use crate::shared;
use crate::shutdown::{Shutdown, Stop};

/// How often the keyring directory is checked for `keys rotate` and `keys activate` (staged
/// keys activate no sooner than twice this after any change: `signing::ACTIVATION_MARGIN_SECONDS`).
const KEYRING_CHECK: Duration =
    Duration::from_secs(crate::tokens::signing::RELOAD_INTERVAL_SECONDS as u64);
/// How often expired replay records are deleted.
const REPLAY_PURGE: Duration = Duration::from_secs(60);

/// Serves `state` on the pre-bound listeners until `shutdown` asks to stop, then drains:
/// `/readyz` answers 503 at once; for `server.drain_seconds` (unless the request was
/// [`Stop::Now`] or another request comes) new connections are still accepted, so requests
/// a load balancer routes here while it takes this replica out are answered, not refused;
/// then the public listener closes and in-flight requests get `options.grace_period`.
pub async fn run(
    state: AppState,
    public: TcpListener,
    metrics: Option<TcpListener>,
    options: ServeOptions,
    mut shutdown: Shutdown,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let metrics_task = metrics.map(|listener| {
        let router = router::metrics_router(state.metrics.clone());
        let options = ServeOptions {
            tls: None,
            ..options.clone()
        };
        tokio::spawn(listener::serve(
            listener,
            router,
            options,
            stopped(stop_rx.clone()),
        ))
    });
    let maintenance = tokio::spawn(maintain(state.clone(), stopped(stop_rx.clone())));
    let changes = tokio::spawn(shared::changes::follow(
        state.clone(),
        stopped(stop_rx.clone()),
    ));
    let notices = state.shared.redis().cloned().map(|redis| {
        let (on_notice, on_gap) = (state.clone(), state.clone());
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            redis
                .subscribe(
                    move |robot| on_notice.robots.invalidate(&robot),
                    move || on_gap.robots.clear(),
                    stop,
                )
                .await;
        })
    });
    let drain = Duration::from_secs(state.config.server.drain_seconds);
    let draining = state.clone();
    let stop_accepting = async move {
        let first = shutdown.next().await;
        draining.start_draining();
        if first == Stop::Drain && !drain.is_zero() {
            tracing::info!(
                drain_seconds = drain.as_secs(),
                "draining: /readyz answers 503, new requests are still served until the window ends"
            );
            tokio::select! {
                () = tokio::time::sleep(drain) => {}
                _ = shutdown.next() => tracing::info!("drain window cut short"),
            }
        }
        tracing::info!("no longer accepting connections; finishing in-flight requests");
    };
    listener::serve(
        public,
        router::router(state.clone()),
        options,
        stop_accepting,
    )
    .await;
    let _ = stop_tx.send(true);
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    let _ = maintenance.await;
    let _ = changes.await;
    if let Some(task) = notices {
        let _ = task.await;
    }

    state.store.close().await;
}

/// Background upkeep until `stop`: pick up rotated signing keys, report the caches' sizes,
/// drop expired replay records and old entries of the change log.
async fn maintain(state: AppState, stop: impl Future<Output = ()>) {
    let mut keyring_tick = tokio::time::interval(KEYRING_CHECK);
    let mut purge_tick = tokio::time::interval(REPLAY_PURGE);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = keyring_tick.tick() => {
                if let Err(e) = state.reload_keyring() {
                    tracing::error!(error = %e, "cannot reload the signing keyring; keeping the current one");
                }
                let bytes = &state.metrics.cache_bytes;
                let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                bytes.with_label_values(&["robots"]).set(gauge(state.robots.weight()));
                bytes.with_label_values(&["jwks"]).set(gauge(state.key_cache.weight()));
            }
            _ = purge_tick.tick() => {
                match state.store.purge_replay_records(state.clock.unix()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(purged = n, "expired replay records removed"),
                    Err(e) => tracing::warn!(error = %e, "cannot purge replay records"),
                }
                if let Err(e) = state.store.purge_changes(shared::changes::KEEP).await {
                    tracing::warn!(error = %e, "cannot purge the change log");
                }
            }
        }
    }
}
