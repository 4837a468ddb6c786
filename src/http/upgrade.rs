//! The upgrade service: requests carrying `Upgrade: websocket` leave actix-http's h1
//! dispatcher here, with their socket.
//!
//! The request runs through the same actix-web application as any other (routing,
//! logging, `GET /ws`'s origin and credential checks in [`super::ws::upgrade`]). When
//! the answer is a 101 carrying a [`Handover`], the 101 is written, the dispatcher's
//! buffers are dropped, and the connection runs on its own: the session actor reads
//! the socket's read half ([`SocketReader`]), and this future writes the outbox to the
//! write half ([`crate::conn::writer`]) until the connection ends. Any other answer is
//! written as is and the connection is closed.
//!
//! The writer is a task of its own on the worker, so the dispatcher (and this
//! request's futures) are freed once the connection is handed over; the server no
//! longer counts the connection, so [`open_connections`] does, and a graceful stop
//! waits for it to reach zero (the 1001 close frames are flushed) before it stops the
//! workers.

use std::{
    cell::Cell,
    future::poll_fn,
    pin::Pin,
    rc::Rc,
    sync::atomic::{AtomicUsize, Ordering},
};

use actix::{Actor, AsyncContext};
use actix_codec::Framed;
use actix_http::{
    body::{BodySize, MessageBody},
    h1::{Codec, Message},
    ConnectionType, Request, Response,
};
use actix_service::Service;
use actix_web::{dev::ServiceResponse, http::StatusCode, rt::net::TcpStream, HttpMessage, HttpResponse, ResponseError};
use bytes::Bytes;

use super::ws::{Handover, ViaUpgrade};
use crate::{
    conn::writer,
    error::AppError,
    session::{socket::SocketReader, transport::FrameReader, Session},
};

/// WebSocket connections one worker serves at most; beyond, the upgrade is answered
/// 503 (the bound of the per-worker connection state).
pub const MAX_WS_PER_WORKER: usize = 100_000;

thread_local! {
    /// WebSocket connections open on this worker.
    static OPEN: Cell<usize> = const { Cell::new(0) };
}

/// WebSocket connections open in the process (every worker).
static OPEN_ALL: AtomicUsize = AtomicUsize::new(0);

/// WebSocket connections open now, handshaking ones included.
pub fn open_connections() -> usize {
    OPEN_ALL.load(Ordering::Relaxed)
}

/// Counts one open WebSocket connection of this worker while alive.
struct Open;

impl Open {
    fn enter() -> Option<Open> {
        OPEN.with(|n| {
            (n.get() < MAX_WS_PER_WORKER).then(|| {
                n.set(n.get() + 1);
                OPEN_ALL.fetch_add(1, Ordering::Relaxed);
                Open
            })
        })
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.with(|n| n.set(n.get().saturating_sub(1)));
        OPEN_ALL.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one request that asked for an upgrade, with `app` (the application's service
/// on this worker).
pub async fn serve<S, B>(app: Rc<S>, req: Request, framed: Framed<TcpStream, Codec>) -> Result<(), actix_web::Error>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    let Some(open) = Open::enter() else {
        let res = AppError::unavailable("too many connections").error_response();
        return respond(framed, res).await;
    };
    req.extensions_mut().insert(ViaUpgrade);
    let mut res: HttpResponse = match app.call(req).await {
        Ok(res) => res.into_parts().1.map_into_boxed_body(),
        Err(e) => e.error_response(),
    };
    let handover = res.extensions_mut().remove::<Handover>();
    match handover {
        Some(h) if res.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let (head, _) = res.into_parts();
            run(head, h, framed, open).await
        }
        _ => respond(framed, res).await,
    }
}

/// Writes the 101 and hands the socket over: the session actor reads, a task of its
/// own writes (both on this worker).
async fn run(
    head: HttpResponse<()>,
    h: Handover,
    mut framed: Framed<TcpStream, Codec>,
    open: Open,
) -> Result<(), actix_web::Error> {
    let head: Response<()> = head.into();
    Pin::new(&mut framed).write(Message::Item((head, BodySize::None)))?;
    if poll_fn(|cx| Pin::new(&mut framed).flush(cx)).await.is_err() {
        h.outbox.close(crate::protocol::close::NORMAL, "", false);
        return Ok(());
    }
    // What the client sent after its request (its first frames) is copied out for the
    // reader; the dispatcher's buffers (kilobytes of capacity each) are dropped here,
    // not kept for the life of the connection.
    let parts = framed.into_parts();
    let first = Bytes::copy_from_slice(&parts.read_buf);
    drop((parts.read_buf, parts.write_buf, parts.codec));
    let (read, write) = parts.io.into_split();
    let reader = FrameReader::new(SocketReader::new(read, first), h.max_frame);
    let session = h.session;
    Session::create(move |ctx| {
        ctx.add_stream(reader);
        session
    });
    let outbox = h.outbox;
    actix_web::rt::spawn(async move {
        writer::run(outbox, write).await;
        drop(open);
    });
    Ok(())
}

/// Writes a whole (non-101) response and ends the connection.
async fn respond<B: MessageBody>(
    mut framed: Framed<TcpStream, Codec>,
    res: HttpResponse<B>,
) -> Result<(), actix_web::Error> {
    let (head, body) = res.into_parts();
    let body: Bytes = actix_web::body::to_bytes(body).await.unwrap_or_default();
    let mut head: Response<()> = head.into();
    head.head_mut().set_connection_type(ConnectionType::Close);
    let f = Pin::new(&mut framed);
    f.write(Message::Item((head, BodySize::Sized(body.len() as u64))))?;
    if !body.is_empty() {
        Pin::new(&mut framed).write(Message::Chunk(Some(body)))?;
    }
    Pin::new(&mut framed).write(Message::Chunk(None))?;
    let _ = poll_fn(|cx| Pin::new(&mut framed).flush(cx)).await;
    Ok(())
}
