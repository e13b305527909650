//! The consumer's side of a stream: [`StreamRef`].

use futures::StreamExt as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use steinadler_core::Term;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::stream_control::Op;
use steinadler_proto::v1::streams_client::StreamsClient;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

/// How a stream is consumed.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Items in flight and buffered at most: the producer never runs further ahead of the
    /// consumer than this. Demand is granted again each time half of it has been taken.
    pub window: u32,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self { window: 1024 }
    }
}

/// Why a stream ended early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The producer failed: it trapped (the message carries the panic), ran out of time or
    /// memory, or returned an error.
    #[error("{0}")]
    Producer(String),
    /// The link to the producer's node broke, or the node refused the stream.
    #[error("{0}")]
    Link(String),
}

/// A stream of items from a producer on some node. A `futures::Stream` of
/// `Result<Term, StreamError>`: items in order, then the end (`None`), or one error.
///
/// Dropping it cancels the producer; so does [`StreamRef::cancel`].
#[derive(Debug)]
pub struct StreamRef {
    events: Streaming<pb::StreamEvent>,
    control: mpsc::Sender<pb::StreamControl>,
    /// The batch being taken from.
    buffered: std::vec::IntoIter<Term>,
    window: u64,
    /// Taken since demand was last granted.
    taken: u64,
    received: u64,
    finished: bool,
}

impl StreamRef {
    /// Opens `module`'s stream `function` with `args` on the node behind `channel`.
    pub(crate) async fn open(
        channel: tonic::transport::Channel,
        module: &str,
        function: &str,
        args: &Term,
        options: StreamOptions,
    ) -> Result<Self, Status> {
        let window = u64::from(options.window.max(1));
        let (control, rx) = mpsc::channel(16);
        let open = pb::StreamControl {
            op: Some(Op::Open(pb::StreamOpen {
                module: module.to_owned(),
                function: function.to_owned(),
                args: args.encode().into(),
            })),
        };
        // The channel has room for both: these cannot fail.
        let _ = control.try_send(open);
        let _ = control.try_send(pb::StreamControl {
            op: Some(Op::Request(window)),
        });
        let events = StreamsClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .open(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Self {
            events,
            control,
            buffered: Vec::new().into_iter(),
            window,
            taken: 0,
            received: 0,
            finished: false,
        })
    }

    /// Items received from the producer so far (taken or still buffered).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Items received and not yet taken.
    pub fn pending_items(&self) -> usize {
        self.buffered.len()
    }

    /// Stops the producer: it sends nothing more than the batch it may be producing.
    pub async fn cancel(self) {
        let _ = self
            .control
            .send(pb::StreamControl {
                op: Some(Op::Cancel(true)),
            })
            .await;
    }

    /// Grants demand for what was taken, once half the window is.
    fn grant(&mut self) {
        if self.taken * 2 < self.window {
            return;
        }
        let request = pb::StreamControl {
            op: Some(Op::Request(self.taken)),
        };
        // A full control channel keeps the demand for the next grant.
        if self.control.try_send(request).is_ok() {
            self.taken = 0;
        }
    }
}

impl futures::Stream for StreamRef {
    type Item = Result<Term, StreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.buffered.next() {
                self.taken += 1;
                self.grant();
                return Poll::Ready(Some(Ok(item)));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            let event = ready!(self.events.poll_next_unpin(cx));
            match event.map(|r| r.map(|e| e.event)) {
                Some(Ok(Some(pb::stream_event::Event::Items(items)))) => {
                    match Term::decode(&items.items) {
                        Ok(Term::List(items)) => {
                            self.received += items.len() as u64;
                            self.buffered = items.into_iter();
                        }
                        other => {
                            self.finished = true;
                            let why = match other {
                                Err(e) => e.to_string(),
                                Ok(t) => format!("a {} instead of an array", t.kind()),
                            };
                            return Poll::Ready(Some(Err(StreamError::Producer(format!(
                                "a batch of items did not decode: {why}"
                            )))));
                        }
                    }
                }
                Some(Ok(Some(pb::stream_event::Event::End(end)))) => {
                    self.finished = true;
                    if !end.error.is_empty() {
                        return Poll::Ready(Some(Err(StreamError::Producer(end.error))));
                    }
                }
                Some(Ok(None)) => {}
                Some(Err(status)) => {
                    self.finished = true;
                    return Poll::Ready(Some(Err(StreamError::Link(status.message().to_owned()))));
                }
                None => {
                    self.finished = true;
                    return Poll::Ready(Some(Err(StreamError::Link(
                        "the producer's node closed the stream without an end".into(),
                    ))));
                }
            }
        }
    }
}
