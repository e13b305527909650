//! The consumer's side of a stream: [`StreamRef`].

use futures::StreamExt as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use steinadler_core::codec::Sequence;
use steinadler_core::{Limits, Term};
use steinadler_host::StreamSource;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::stream_control::Op;
use steinadler_proto::v1::streams_client::StreamsClient;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

/// The items of a batch as it came off the wire, to be decoded as they are taken. The gRPC
/// message bound has limited the batch's size already; nesting is bounded as for any value.
pub(crate) fn batch_items(
    items: bytes::Bytes,
) -> Result<Sequence<bytes::Bytes>, steinadler_core::DecodeError> {
    let limits = Limits {
        max_size: usize::MAX,
        ..Limits::DEFAULT
    };
    Sequence::new(items, &limits)
}

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
    /// The batch being taken from, decoded an item at a time as the items are taken.
    buffered: Option<Sequence<bytes::Bytes>>,
    window: u64,
    /// Taken since demand was last granted.
    taken: u64,
    received: u64,
    finished: bool,
}

impl StreamRef {
    /// Opens a stream from `source` with `args` on the node behind `channel`.
    pub(crate) async fn open(
        channel: tonic::transport::Channel,
        source: &StreamSource,
        args: &Term,
        options: StreamOptions,
    ) -> Result<Self, Status> {
        let window = u64::from(options.window.max(1));
        let (control, rx) = mpsc::channel(16);
        let mut open = pb::StreamOpen {
            args: args.encode().into(),
            ..Default::default()
        };
        match source {
            StreamSource::Function { module, function } => {
                open.module.clone_from(module);
                open.function.clone_from(function);
            }
            StreamSource::Process(process) => open.process.clone_from(process),
        }
        let open = pb::StreamControl {
            op: Some(Op::Open(open)),
        };
        // The channel has room for both: these cannot fail.
        let _ = control.try_send(open);
        let _ = control.try_send(pb::StreamControl {
            op: Some(Op::Request(window)),
        });
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        crate::telemetry::inject(request.metadata_mut());
        let events = StreamsClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .open(request)
            .await?
            .into_inner();
        Ok(Self {
            events,
            control,
            buffered: None,
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
        self.buffered.as_ref().map_or(0, |b| b.remaining() as usize)
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

    /// The next batch of items as it arrived, or what is left of the batch being taken:
    /// for consumers that take many small items, one poll a batch instead of one an item. The
    /// whole batch counts as taken, so demand is granted for it at once.
    ///
    /// `None` once the stream has ended well. An item that does not decode is an error from
    /// the returned [`Sequence`], which ends that batch; the next call goes on with the next
    /// batch, so stop there if the stream's items must all arrive.
    ///
    /// # Errors
    ///
    /// As the items of the `futures::Stream`: the producer failed or the link broke.
    pub async fn next_batch(&mut self) -> Option<Result<Sequence<bytes::Bytes>, StreamError>> {
        std::future::poll_fn(|cx| self.poll_batch(cx)).await
    }

    fn poll_batch(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Sequence<bytes::Bytes>, StreamError>>> {
        // `Ok(true)` leaves a batch with items in `buffered`.
        Poll::Ready(match ready!(self.poll_refill(cx)) {
            Ok(true) => self.buffered.take().map(|batch| {
                self.taken += u64::from(batch.remaining());
                self.grant();
                Ok(batch)
            }),
            Ok(false) => None,
            Err(error) => Some(Err(error)),
        })
    }

    /// Takes the next event from the producer's node: a batch into `buffered`, or the end.
    /// `Some` for an error, which ends the stream.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<StreamError>> {
        let event = ready!(self.events.poll_next_unpin(cx));
        Poll::Ready(match event.map(|r| r.map(|e| e.event)) {
            Some(Ok(Some(pb::stream_event::Event::Items(items)))) => {
                match batch_items(items.items) {
                    Ok(items) => {
                        self.received += u64::from(items.remaining());
                        self.buffered = Some(items);
                        None
                    }
                    Err(e) => Some(self.undecodable(&e.to_string())),
                }
            }
            Some(Ok(Some(pb::stream_event::Event::End(end)))) => {
                self.finished = true;
                (!end.error.is_empty()).then_some(StreamError::Producer(end.error))
            }
            Some(Ok(None)) => None,
            Some(Err(status)) => {
                self.finished = true;
                Some(StreamError::Link(status.message().to_owned()))
            }
            None => {
                self.finished = true;
                Some(StreamError::Link(
                    "the producer's node closed the stream without an end".into(),
                ))
            }
        })
    }

    /// Ends the stream on a batch that does not decode.
    fn undecodable(&mut self, why: &str) -> StreamError {
        self.finished = true;
        self.buffered = None;
        StreamError::Producer(format!("a batch of items did not decode: {why}"))
    }

    /// Grants demand for what was taken, once half the window is.
    #[inline(always)]
    fn grant(&mut self) {
        if self.taken * 2 >= self.window {
            self.send_grant();
        }
    }

    /// Sends the grant. Kept out of line: it is rare, and `poll_item`, which may call it, is
    /// inlined into every consumer's loop.
    #[inline(never)]
    fn send_grant(&mut self) {
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
        self.poll_item(cx)
    }
}

/// The future of [`StreamRef::next`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct NextItem<'a> {
    stream: &'a mut StreamRef,
}

impl std::future::Future for NextItem<'_> {
    type Output = Option<Result<Term, StreamError>>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let stream = &mut *self.get_mut().stream;
        // An integer, the commonest small item, without the general decoder (as `Typed`).
        if let Some(i) = stream.take_int(Some) {
            return Poll::Ready(Some(Ok(Term::Int(i))));
        }
        stream.poll_item(cx)
    }
}

impl StreamRef {
    /// The next item, as `StreamExt::next` gives it (this method is found first), but with
    /// the common case, an item from the batch being taken, inlined into the caller's loop.
    /// Through `StreamExt::next` each item is returned from a call: the 48-byte `Term` is
    /// written in 8-byte pieces and read back in 16-byte ones, a store-forwarding stall that
    /// `perf` put at about half of the consumer's time.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(mut stream: steinadler_node::StreamRef) -> Result<(), steinadler_node::StreamError> {
    /// while let Some(item) = stream.next().await {
    ///     println!("{}", item?);
    /// }
    /// # Ok(()) }
    /// ```
    #[inline]
    #[expect(
        clippy::should_implement_trait,
        reason = "it shadows `StreamExt::next`, not `Iterator::next`: the stream is async"
    )]
    pub fn next(&mut self) -> NextItem<'_> {
        NextItem { stream: self }
    }

    /// An item from the batch being taken, or the next batch's first. Only this inlined path
    /// makes an item: the out-of-line part fetches batches and returns no `Term`, so the item
    /// is not merged through memory with what a call returned.
    #[inline(always)]
    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Term, StreamError>>> {
        loop {
            if self.buffered.as_ref().is_some_and(|b| b.remaining() > 0) {
                // Counted before decoding, so that the decoded item goes straight out.
                self.taken += 1;
                self.grant();
                return Poll::Ready(Some(
                    match self.buffered.as_mut().and_then(Iterator::next) {
                        Some(Ok(item)) => Ok(item),
                        other => Err(self.undecodable_item(other)),
                    },
                ));
            }
            match ready!(self.poll_refill(cx)) {
                Ok(true) => {}
                Ok(false) => return Poll::Ready(None),
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }

    /// The next item if it is an integer that `fit` turns into a `T`, taken from the batch
    /// being taken: the fast path of [`Typed`](super::Typed) and of [`StreamRef::next`], inlined
    /// into the consumer's loop.
    #[inline(always)]
    pub(super) fn take_int<T>(&mut self, fit: impl FnOnce(i64) -> Option<T>) -> Option<T> {
        let item = self.buffered.as_mut()?.take_int(fit)?;
        self.taken += 1;
        self.grant();
        Some(item)
    }

    /// The next item, made by `decode` from its encoded bytes (checked as a Term's would be).
    /// An item that `decode` refuses ends the stream with its error, as one that does not
    /// decode as a Term does.
    pub(super) fn poll_decoded<R>(
        &mut self,
        cx: &mut Context<'_>,
        decode: impl FnOnce(&[u8], &Limits) -> Result<R, String>,
    ) -> Poll<Option<Result<R, StreamError>>> {
        loop {
            if let Some(batch) = self.buffered.as_mut().filter(|b| b.remaining() > 0) {
                let limits = *batch.limits();
                let item = match batch.next_encoded() {
                    Some(Ok(bytes)) => decode(bytes, &limits),
                    Some(Err(e)) => Err(e.to_string()),
                    None => Err("the batch ended early".to_owned()),
                };
                self.taken += 1;
                self.grant();
                return Poll::Ready(Some(item.map_err(|why| self.undecodable(&why))));
            }
            match ready!(self.poll_refill(cx)) {
                Ok(true) => {}
                Ok(false) => return Poll::Ready(None),
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }

    /// The item that did not decode, as the stream's error.
    #[cold]
    #[inline(never)]
    fn undecodable_item(
        &mut self,
        taken: Option<Result<Term, steinadler_core::DecodeError>>,
    ) -> StreamError {
        let why = match taken {
            Some(Err(e)) => e.to_string(),
            _ => "the batch ended early".to_owned(),
        };
        self.undecodable(&why)
    }

    /// Waits for a batch with items in it: `Ok(true)` once there is one, `Ok(false)` at the
    /// end.
    #[inline(never)]
    fn poll_refill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, StreamError>> {
        loop {
            if self.buffered.as_ref().is_some_and(|b| b.remaining() > 0) {
                return Poll::Ready(Ok(true));
            }
            self.buffered = None;
            if self.finished {
                return Poll::Ready(Ok(false));
            }
            if let Some(error) = ready!(self.poll_event(cx)) {
                return Poll::Ready(Err(error));
            }
        }
    }
}
