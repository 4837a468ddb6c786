//! The socket writer of a WebSocket connection: drains the [`Outbox`] into the socket's
//! write half at the client's pace, and tells the outbox when the transport is gone.
//!
//! It holds no buffer of its own between writes: each chunk the outbox encodes (at most
//! 64 KiB) is written and dropped, so an idle connection costs nothing here.

use std::{future::poll_fn, pin::Pin, sync::Arc};

use tokio::io::AsyncWrite;

use super::Outbox;

/// Writes until the close frame is out or the socket fails, then shuts the write side.
pub async fn run<W: AsyncWrite + Unpin>(outbox: Arc<Outbox>, mut io: W) {
    // Dropped before `io` (locals go before parameters): the outbox forgets the raw fd
    // while the socket is still open.
    let _gone = Gone(outbox.clone());
    while let Some(chunk) = poll_fn(|cx| outbox.poll_chunk(cx)).await {
        if write_all(&mut io, &chunk).await.is_err() {
            return;
        }
    }
    let _ = poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx)).await;
}

async fn write_all<W: AsyncWrite + Unpin>(io: &mut W, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

struct Gone(Arc<Outbox>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.transport_gone();
    }
}
