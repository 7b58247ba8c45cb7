//! The TCP connection under each request: what is set on it when it is accepted, and how a
//! WebSocket actor ends it once the closing handshake is over.
//!
//! - TCP_USER_TIMEOUT (`session.write_timeout_ms`): when a peer acknowledges nothing for that long
//!   (a reader that stopped reading keeps a zero window; a vanished one never answers), the kernel
//!   drops the connection. actix stops polling a session whose socket is full, so its own 1013
//!   close could never be written; this is what actually frees such a connection.
//! - [`ConnSocket`]: after a WebSocket ends, actix-http keeps the upgraded connection open until the
//!   *client* closes it or its linger timer (`client_disconnect_timeout`) fires, because the upgrade
//!   payload never reaches an end of its own. RFC 6455 §7.1.1 wants the server to close the TCP
//!   connection first. Shutting down the socket's read half makes actix-http see the end of the
//!   payload: it flushes what is queued (the Close frame included) and then closes the connection.
//! - [`ConnSocket::peer_gone`]: whether the client of a long-lived HTTP request (long-poll, SSE)
//!   has hung up, so its connection slot is freed within a second.

use std::any::Any;
use std::cell::Cell;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;

/// How long actix-http keeps reading (and discarding) from a connection whose response ended
/// before its request did: an early 413 still reaches a client that is sending a big body, and a
/// peer told to close (drain, expired token) has time to answer with its own Close and hang up.
/// Connections the server ends itself ([`ConnSocket::hang_up`]) do not wait for it.
pub const LINGER: Duration = Duration::from_secs(5);

/// The `on_connect` hook of the HTTP server.
pub fn on_connect(
    write_timeout: Duration,
) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |conn, data| {
        // Plain TCP, or TCP under in-process TLS (`http.tls_cert`).
        let tls = conn.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<TcpStream>>();
        let Some(tcp) = conn
            .downcast_ref::<TcpStream>()
            .or_else(|| tls.map(|t| t.get_ref().0))
        else {
            return;
        };
        if let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(write_timeout)) {
            tracing::warn!(error = %e, "cannot set TCP_USER_TIMEOUT");
        }
        let open = Rc::new(Cell::new(true));
        data.insert(ConnSocket {
            fd: tcp.as_raw_fd(),
            open: open.clone(),
        });
        data.insert(OpenWhileHeld(open));
    }
}

/// The socket of one connection, as seen by the actor serving it. Holds no file descriptor of its
/// own: it knows the number, and whether the connection still owns it.
#[derive(Clone)]
pub struct ConnSocket {
    fd: RawFd,
    /// True until the connection's data is dropped. actix-http's dispatcher holds that data for
    /// the connection's life; a request also holds it, but only until it returns to actix-web's
    /// request pool, which clears it. On an upgraded connection the upgrade request was the last
    /// request and its handler has returned, so the dispatcher is the last holder: the flag falls
    /// when the dispatcher drops the connection, and with it the socket.
    open: Rc<Cell<bool>>,
}

/// Lives in the connection's data; clears [`ConnSocket::open`] when the connection is dropped.
struct OpenWhileHeld(Rc<Cell<bool>>);

impl Drop for OpenWhileHeld {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl ConnSocket {
    /// The connection of `req`, if it is a plain TCP connection.
    pub fn of(req: &HttpRequest) -> Option<ConnSocket> {
        req.conn_data::<ConnSocket>().cloned()
    }

    /// Whether the client has gone away (sent FIN or reset the connection), checked without
    /// reading anything: a long-poll or SSE handler calls it while its request is in flight, so a
    /// client that left frees its connection slot within a check instead of at the timeout.
    pub fn peer_gone(&self) -> bool {
        if !self.open.get() {
            return true;
        }
        // SAFETY: as in `hang_up`: while `open` is true the dispatcher holds the socket, and a
        // handler of a request on this connection runs on the connection's own worker thread.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        // The socket is non-blocking (tokio's): no data yet is `WouldBlock`, the end is `Ok(0)`.
        match socket2::SockRef::from(&fd).peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ),
        }
    }

    /// Resolves once [`Self::peer_gone`] says so (checked every quarter second); never for a
    /// connection whose socket is unknown (`None`: e.g. not plain TCP).
    pub async fn gone(conn: Option<&ConnSocket>) {
        let Some(conn) = conn else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            if conn.peer_gone() {
                return;
            }
        }
    }

    /// Ends the connection once actix-http has written what is queued for it: reading stops, the
    /// server sees the end of the upgrade payload, flushes, sends FIN and drops the connection.
    /// Call it when the closing handshake is complete or the connection has failed; never while
    /// the peer may still send something the server needs.
    pub fn hang_up(&self) {
        if !self.open.get() {
            return;
        }
        // SAFETY: `open` is true only while the connection's dispatcher holds the socket (see the
        // field: only WebSocket actors call this, after their upgrade handler has returned), so
        // `fd` is that socket and not a number reused by a later connection. The check and this
        // call run on the connection's own worker thread (an `Rc` cannot leave it), so the
        // connection cannot be dropped in between.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        if let Err(e) = socket2::SockRef::from(&fd).shutdown(Shutdown::Read) {
            tracing::debug!(error = %e, "shutdown(read) after the closing handshake");
        }
    }
}
