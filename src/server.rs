//! Runs the gateway: the public listener and the metrics listener, sharing one shutdown.

use std::future::Future;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::AppState;
use crate::http::listener::{self, ServeOptions};
use crate::http::router;

/// Serves `state` on the pre-bound listeners until `shutdown` resolves, then drains both.
pub async fn run(
    state: AppState,
    public: TcpListener,
    metrics: Option<TcpListener>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
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
    let public_task = listener::serve(
        public,
        router::router(state.clone()),
        options,
        stopped(stop_rx),
    );
    tokio::pin!(public_task);
    tokio::select! {
        () = &mut public_task => {}
        () = shutdown => {
            let _ = stop_tx.send(true);
            public_task.await;
        }
    }
    let _ = stop_tx.send(true);
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    state.store.close().await;
}
