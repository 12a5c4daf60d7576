//! Response bodies: a whole body (nearly every answer), or chunks produced by a task while
//! the answer is being sent (the CSV export), with backpressure: the producer waits while
//! the client reads slowly, so a large export holds a few chunks in memory, not the file.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Frame;
use tokio::sync::mpsc;

pub type Body = Either<Full<Bytes>, Chunks>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Left(Full::new(bytes.into()))
}

/// Why a streamed body stopped before its end; hyper then aborts the response (no final
/// chunk), so the client sees a failed transfer, never a silently truncated file.
#[derive(Debug, thiserror::Error)]
#[error("the response stopped: {0}")]
pub struct ChunkError(pub String);

/// The receiving end of a streamed body.
pub struct Chunks {
    rx: mpsc::Receiver<Result<Bytes, ChunkError>>,
}

/// The producing end: `send` waits while `capacity` chunks are unread.
pub type ChunkSender = mpsc::Sender<Result<Bytes, ChunkError>>;

/// A streamed body and its sender.
pub fn chunks(capacity: usize) -> (ChunkSender, Body) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (tx, Either::Right(Chunks { rx }))
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = ChunkError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ChunkError>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| c.map(Frame::data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn chunks_arrive_in_order_and_an_error_ends_the_body_as_an_error() {
        let (tx, body) = chunks(2);
        tokio::spawn(async move {
            for part in ["a,b\n", "1,2\n"] {
                tx.send(Ok(Bytes::from(part))).await.expect("send");
            }
        });
        let all = body.collect().await.expect("whole").to_bytes();
        assert_eq!(&all[..], b"a,b\n1,2\n");

        let (tx, body) = chunks(1);
        tokio::spawn(async move {
            tx.send(Ok(Bytes::from("a\n"))).await.expect("send");
            tx.send(Err(ChunkError("database gone".into())))
                .await
                .expect("send");
        });
        assert!(body.collect().await.is_err());
    }
}
