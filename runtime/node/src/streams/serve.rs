//! The producer's side of a stream: demand in, batches out.

use super::frame::{self, Frames};
use super::{BATCH_BYTES, BATCH_ITEMS};
use crate::node::Inner;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::stream_control::Op;
use tokio::sync::{Notify, mpsc};
use tokio_stream::Stream;
use tonic::{Status, Streaming};

/// What the consumer's control messages say, shared with the producing loop.
#[derive(Debug, Default)]
struct Demand {
    credit: std::sync::Mutex<(u64, bool)>,
    changed: Notify,
}

impl Demand {
    fn add(&self, n: u64) {
        let mut c = self.credit.lock().unwrap_or_else(|e| e.into_inner());
        c.0 = c.0.saturating_add(n);
        self.changed.notify_one();
    }

    fn cancel(&self) {
        self.credit.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.changed.notify_one();
    }

    /// Waits for demand; `None` once cancelled.
    async fn wait(&self) -> Option<u64> {
        loop {
            {
                let c = self.credit.lock().unwrap_or_else(|e| e.into_inner());
                if c.1 {
                    return None;
                }
                if c.0 > 0 {
                    return Some(c.0);
                }
            }
            self.changed.notified().await;
        }
    }

    fn take(&self, n: u64) {
        let mut c = self.credit.lock().unwrap_or_else(|e| e.into_inner());
        c.0 = c.0.saturating_sub(n);
    }
}

/// Opens the stream the first control message asks for and produces it in the background.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    mut control: Streaming<pb::StreamControl>,
) -> Result<Frames, Status> {
    let open = match control.message().await? {
        Some(pb::StreamControl {
            op: Some(Op::Open(open)),
        }) => open,
        _ => {
            return Err(Status::invalid_argument(
                "a stream starts with an `open` control message",
            ));
        }
    };
    if !open.process.is_empty() {
        return super::outlet::serve(inner, open, control).await;
    }
    let (id, origin) = crate::coordinator::resolve_module(&inner, &open.module).await?;
    let module = crate::fetch::ensure(&inner, id, &origin)
        .await
        .map_err(|e| Status::not_found(e.to_string()))?;
    let limits = inner.host.default_limits();
    let producer = inner
        .host
        .open_stream(&module, &open.function, &open.args, &limits)
        .await
        .map_err(|e| crate::wire::status_of(&e, &format!("opening stream {}", open.function)))?;
    let demand = Arc::new(Demand::default());
    let reader = {
        let demand = demand.clone();
        tokio::spawn(async move {
            loop {
                match control.message().await {
                    Ok(Some(pb::StreamControl {
                        op: Some(Op::Request(n)),
                    })) => demand.add(n),
                    // A cancel, the end of the requests, or a broken link: stop.
                    _ => {
                        demand.cancel();
                        return;
                    }
                }
            }
        })
    };
    let (tx, rx) = mpsc::channel(2);
    inner.stats.streams_open.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(module = %open.module, function = %open.function, "stream opened");
    tokio::spawn(produce(inner, producer, demand, tx, reader, open.function));
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

async fn produce(
    inner: Arc<Inner>,
    mut producer: steinadler_host::Producer,
    demand: Arc<Demand>,
    tx: mpsc::Sender<Result<bytes::Bytes, Status>>,
    reader: tokio::task::JoinHandle<()>,
    function: String,
) {
    let mut stopping = inner.stopping.clone();
    let end = loop {
        let credit = tokio::select! {
            c = demand.wait() => c,
            _ = async { stopping.wait_for(|s| *s).await.is_ok() } => {
                break Some(Err(Status::unavailable("the producer's node is stopping")));
            }
        };
        let Some(credit) = credit else {
            tracing::debug!(%function, produced = producer.produced(), "stream cancelled");
            break None;
        };
        let max = u32::try_from(credit).unwrap_or(u32::MAX).min(BATCH_ITEMS);
        match producer.next(max, BATCH_BYTES).await {
            Ok(batch) => {
                demand.take(u64::from(batch.count));
                inner
                    .stats
                    .stream_items_produced
                    .fetch_add(u64::from(batch.count), Ordering::Relaxed);
                let (done, batch_count) = (batch.done, batch.count);
                if batch_count > 0 {
                    let message = frame::batch(batch);
                    let size = message.len() - frame::GRPC_PREFIX;
                    if size > inner.config.max_message_bytes {
                        break Some(Ok(format!(
                            "the producer made a batch of {size} bytes, over this node's \
                             message limit of {} bytes: make smaller items, or raise the limit",
                            inner.config.max_message_bytes
                        )));
                    }
                    if tx.send(Ok(message)).await.is_err() {
                        break None;
                    }
                    crate::metrics::stream_batch("function", u64::from(batch_count), size);
                }
                if done {
                    break Some(Ok(String::new()));
                }
            }
            Err(e) => break Some(Ok(format!("the producer failed: {e}"))),
        }
    };
    match end {
        Some(Ok(error)) => {
            let _ = tx.send(Ok(frame::end(error))).await;
        }
        Some(Err(status)) => {
            let _ = tx.send(Err(status)).await;
        }
        None => {}
    }
    reader.abort();
    // The instance is freed here, with the producer.
    drop(producer);
    inner.stats.streams_open.fetch_sub(1, Ordering::Relaxed);
}

pub(crate) type ItemStream = Pin<Box<dyn Stream<Item = Result<pb::StreamItems, Status>> + Send>>;

/// The baseline: the same batch `count` times, as fast as the link takes it.
pub(crate) fn echo(req: pb::StreamEchoRequest) -> ItemStream {
    let per = u32::try_from(req.items_per_batch).unwrap_or(u32::MAX);
    Box::pin(futures::stream::iter((0..req.count).map(move |_| {
        Ok(pb::StreamItems {
            items: req.batch.clone(),
            count: per,
        })
    })))
}
