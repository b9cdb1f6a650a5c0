//! Bytes in and out: the node's UDP socket wrapped so every datagram it sends or
//! receives (QUIC for clients, admin and peers; gossip) is counted in
//! [`Metrics::bytes_in`] / [`Metrics::bytes_out`]. One relaxed add per send or receive
//! call; the datagrams themselves are untouched.

use crate::context::Metrics;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

/// A socket that counts what passes through `inner`.
#[derive(Debug)]
pub struct CountingSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    metrics: Arc<Metrics>,
}

impl CountingSocket {
    /// Wraps `inner`, counting into `metrics`.
    pub fn wrap(inner: Arc<dyn AsyncUdpSocket>, metrics: Arc<Metrics>) -> Arc<dyn AsyncUdpSocket> {
        Arc::new(Self { inner, metrics })
    }
}

impl AsyncUdpSocket for CountingSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.inner.try_send(transmit)?;
        self.metrics
            .bytes_out
            .fetch_add(transmit.contents.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let polled = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(count)) = &polled {
            let bytes: usize = meta.iter().take(*count).map(|m| m.len).sum();
            self.metrics
                .bytes_in
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
        polled
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}
