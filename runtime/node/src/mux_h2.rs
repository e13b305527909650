//! The gRPC form of the invoke stream, `InvokeStream`: one bidirectional HTTP/2 stream per
//! peer, frames matched by id. Nodes now open invoke streams as framed connections
//! ([`steinadler_transport::Mux`]); this method still answers peers that use gRPC, with the same
//! frames and the same rules ([`crate::answer::answer`]).

use crate::answer::answer;
use crate::node::Inner;
use std::pin::Pin;
use std::sync::Arc;
use steinadler_proto::v1 as pb;
use steinadler_transport::result_of;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Status, Streaming};

pub(crate) type ResultStream = Pin<Box<dyn Stream<Item = Result<pb::InvokeResult, Status>> + Send>>;

/// The receiving side: each frame runs as its own task; results go back as they finish.
/// The stream ends when the node stops, so that a graceful shutdown is not held up by it.
pub(crate) fn serve(inner: Arc<Inner>, mut frames: Streaming<pb::InvokeFrame>) -> ResultStream {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut stopping = inner.stopping.clone();
    tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                _ = async { stopping.wait_for(|s| *s).await.is_ok() } => break,
                frame = frames.message() => match frame {
                    Ok(Some(frame)) => frame,
                    _ => break,
                },
            };
            let (inner, tx) = (inner.clone(), tx.clone());
            tokio::spawn(async move {
                let id = frame.id;
                let _ = tx.send(Ok(result_of(id, answer(&inner, frame).await)));
            });
        }
    });
    // In-flight calls still hold senders; the stream ends once they have answered.
    Box::pin(UnboundedReceiverStream::new(rx))
}
