//! quinn over turmoil: a `quinn::AsyncUdpSocket` on a `turmoil::net::UdpSocket`.
//!
//! turmoil's UDP never blocks on send (no back-pressure), so the poller is always
//! writable; a receive waits on turmoil's `readable()` future, kept between polls.

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

type Readable = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// A simulated UDP socket quinn can drive.
pub(crate) struct SimUdpSocket {
    socket: Arc<turmoil::net::UdpSocket>,
    /// The host's address with the bound port (turmoil reports `0.0.0.0:port`).
    local: SocketAddr,
    readable: Mutex<Option<Readable>>,
}

impl fmt::Debug for SimUdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimUdpSocket")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl SimUdpSocket {
    /// Binds `0.0.0.0:port` on the current simulated host, whose address is `ip`
    /// (`port` 0: an ephemeral one). Must run inside the simulation (a host or client
    /// future).
    pub(crate) fn bind(ip: IpAddr, port: u16) -> io::Result<Arc<SimUdpSocket>> {
        use futures::FutureExt;
        let bind = turmoil::net::UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port)));
        // turmoil binds synchronously inside its async fn.
        let socket = bind
            .now_or_never()
            .ok_or_else(|| io::Error::other("turmoil's bind did not complete at once"))??;
        let bound = socket.local_addr()?;
        Ok(Arc::new(SimUdpSocket {
            socket: Arc::new(socket),
            local: SocketAddr::new(ip, bound.port()),
            readable: Mutex::new(None),
        }))
    }
}

#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for SimUdpSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        match self
            .socket
            .try_send_to(transmit.contents, transmit.destination)
        {
            Ok(_) => Ok(()),
            // Like a real network: an unroutable datagram is lost, not an error.
            Err(error) if error.kind() != io::ErrorKind::WouldBlock => {
                tracing::trace!(%error, to = %transmit.destination, "simulated datagram dropped");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        loop {
            let mut readable = self.readable.lock().unwrap_or_else(PoisonError::into_inner);
            if readable.is_none() {
                match self.socket.try_recv_from(buf) {
                    Ok((len, from)) => {
                        *slot = RecvMeta {
                            addr: from,
                            len,
                            stride: len,
                            ecn: None,
                            dst_ip: Some(self.local.ip()),
                        };
                        return Poll::Ready(Ok(1));
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Poll::Ready(Err(error)),
                }
            }
            let socket = Arc::clone(&self.socket);
            let wait =
                readable.get_or_insert_with(|| Box::pin(async move { socket.readable().await }));
            match wait.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    *readable = None;
                    result?;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn may_fragment(&self) -> bool {
        false
    }
}
