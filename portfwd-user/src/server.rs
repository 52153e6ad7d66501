//! The accept loop both HTTP servers (UPnP on the LAN address, the owner's API) share: peers
//! the server does not admit are closed before a byte is read, at most
//! [`Limits::max_connections`] connections are served at once (more are closed at once), each
//! must send its headers within [`Limits::header_timeout`], fit them in
//! [`Limits::max_header_bytes`] and be done within [`Limits::connection_timeout`].
//!
//! Shutdown is bounded: when `shutdown` completes the loop stops accepting, every connection
//! is told to finish gracefully (hyper answers what is in flight and closes idle keep-alives),
//! and what has not finished within [`DRAIN`] (a long poll of the event log) is aborted, so a
//! stopping daemon never waits on a client.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
    task::JoinSet,
};

/// How long connections have to finish once the server stops.
pub const DRAIN: Duration = Duration::from_secs(1);

/// Bounds on one server's connections.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub connection_timeout: Duration,
}

impl Limits {
    /// What a control plane for one LAN needs: 32 connections, headers within 5 s and
    /// 8 KiB, 30 s per connection.
    pub const CONTROL: Self = Self {
        max_connections: 32,
        header_timeout: Duration::from_secs(5),
        max_header_bytes: 8 * 1024,
        connection_timeout: Duration::from_secs(30),
    };
}

/// Serves `listener` until `shutdown` completes. `admit` says whether a peer is served, and
/// what `handle` is told of it; `name` is what the log calls the server.
pub async fn serve<P, H, F>(
    name: &'static str,
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    admit: impl Fn(SocketAddr) -> Option<P>,
    handle: H,
) where
    P: Copy + Send + 'static,
    H: Fn(P, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Reap finished connections as we go, so the set holds only live ones.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => {
                let _ = stop.send(true);
                let drained = tokio::time::timeout(DRAIN, async {
                    while connections.join_next().await.is_some() {}
                })
                .await;
                if drained.is_err() {
                    tracing::debug!("{name}: {} connection(s) cut at shutdown", connections.len());
                    connections.abort_all();
                }
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!("{name} accept: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(client) = admit(peer) else {
            tracing::debug!("{name} connection from {peer} refused: not served there");
            continue;
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!("{name} connection from {peer} refused: too many connections");
            continue;
        };
        let handle = handle.clone();
        let stopping = stopping.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let response = handle(client, request);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let served = async {
                tokio::select! {
                    result = connection.as_mut() => result,
                    () = stopped(stopping) => {
                        connection.as_mut().graceful_shutdown();
                        connection.as_mut().await
                    }
                }
            };
            match tokio::time::timeout(limits.connection_timeout, served).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!("{name} connection from {peer}: {err}"),
                Err(_) => tracing::debug!("{name} connection from {peer}: timed out"),
            }
            drop(permit);
        });
    }
}

/// Completes once `stop` says true (never, if its sender went away first).
async fn stopped(mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
