//! A round-robin TCP load balancer on loopback: what stands in front of fedgate replicas, so
//! that a registry's single `realm` reaches all of them. Each new connection goes to the next
//! backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Balancer {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    task: JoinHandle<()>,
}

impl Balancer {
    /// Balances over `backends` (`host:port`).
    pub async fn start(backends: Vec<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let backend =
                    backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()].clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { url, task }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
