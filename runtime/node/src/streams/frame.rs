//! The producer's side of the wire: each `StreamEvent` as a finished gRPC message (the 5-byte
//! length prefix and the protobuf), and the HTTP body that sends them.
//!
//! tonic's generated server encodes each message into a buffer of its own, a copy of every
//! byte. Here a batch is framed where the producer copied it out of the guest's memory: the
//! headers go into the room the host leaves in front of the items
//! ([`steinadler_host::BATCH_ROOM`]), and the items are not copied again on this node. The
//! consumer's side is plain tonic, which decodes these messages as any other.
//! [`route`](super::route) serves `Streams.Open` with [`FramedBody`].

use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use prost::Message;
use prost::encoding::{encode_varint, encoded_len_varint};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use steinadler_proto::v1 as pb;
use tokio_stream::Stream;
use tonic::Status;

/// The messages of one stream, in order; an error ends it with that status.
pub(crate) type Frames = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// The gRPC message prefix: a compression flag and the message's length (u32, big-endian).
pub(crate) const GRPC_PREFIX: usize = 5;

/// Field 1, length-delimited: `StreamEvent.items`, and `StreamItems.items`.
const FIELD_1_BYTES: u8 = 0x0a;
/// Field 2, varint: `StreamItems.count`.
const FIELD_2_VARINT: u8 = 0x10;

/// A batch's headers at most: the gRPC prefix, then three tags and three varints of at most
/// five bytes (the lengths and the count are under 4 GiB).
const PREFIX: usize = GRPC_PREFIX + 3 * 6;
const _: () = assert!(PREFIX <= steinadler_host::BATCH_ROOM);

/// A batch from a guest producer as the message `StreamEvent { items: { items, count } }`,
/// without copying its items.
pub(crate) fn batch(batch: steinadler_host::Batch) -> Bytes {
    let items = batch.items().len() as u64;
    let count = u64::from(batch.count);
    // `StreamItems`: the count first (fields may come in any order), then the items.
    let inner = 1 + encoded_len_varint(count) + 1 + encoded_len_varint(items) + items as usize;
    let message = 1 + encoded_len_varint(inner as u64) + inner;
    let mut prefix = [0u8; PREFIX];
    let mut head = &mut prefix[..];
    head.put_u8(0);
    head.put_u32(u32::try_from(message).unwrap_or(u32::MAX));
    head.put_u8(FIELD_1_BYTES);
    encode_varint(inner as u64, &mut head);
    head.put_u8(FIELD_2_VARINT);
    encode_varint(count, &mut head);
    head.put_u8(FIELD_1_BYTES);
    encode_varint(items, &mut head);
    let len = PREFIX - head.len();
    batch.framed(&prefix[..len])
}

/// Any event, encoded (the items a process emits, an end).
pub(crate) fn event(event: &pb::StreamEvent) -> Bytes {
    let len = event.encoded_len();
    let mut buf = BytesMut::with_capacity(GRPC_PREFIX + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    event.encode_raw(&mut buf);
    buf.freeze()
}

/// The items of a batch (a MessagePack array of `count`) as an event.
pub(crate) fn items(items: Bytes, count: u32) -> Bytes {
    event(&pb::StreamEvent {
        event: Some(pb::stream_event::Event::Items(pb::StreamItems {
            items,
            count,
        })),
    })
}

/// The end of a stream: well for an empty `error`.
pub(crate) fn end(error: String) -> Bytes {
    event(&pb::StreamEvent {
        event: Some(pb::stream_event::Event::End(pb::StreamEnd { error })),
    })
}

/// A gRPC response body of finished messages, then the status in the trailers: `OK` when the
/// messages end, or the error one of them was.
pub(crate) struct FramedBody {
    frames: Frames,
    ended: bool,
}

impl FramedBody {
    pub(crate) fn new(frames: Frames) -> Self {
        Self {
            frames,
            ended: false,
        }
    }
}

impl http_body::Body for FramedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let status = match ready!(self.frames.as_mut().poll_next(cx)) {
            Some(Ok(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        self.ended = true;
        let mut trailers = http::HeaderMap::new();
        if status.add_header(&mut trailers).is_err() {
            // Only a message that cannot be a header fails; the code alone still can.
            let _ = Status::new(status.code(), "").add_header(&mut trailers);
        }
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steinadler_core::Term;

    /// The event in a finished message, decoded as the consumer's tonic does.
    fn decode(message: &[u8]) -> pb::StreamEvent {
        let (head, body) = message.split_at(GRPC_PREFIX);
        assert_eq!(head[0], 0, "not compressed");
        assert_eq!(
            u32::from_be_bytes(head[1..].try_into().unwrap()) as usize,
            body.len()
        );
        pb::StreamEvent::decode(body).unwrap()
    }

    #[tokio::test]
    async fn a_framed_batch_decodes_as_the_event_prost_would_encode() {
        let module = steinadler_test_modules::RANGE_WASM;
        let host = steinadler_host::Host::new(Default::default()).unwrap();
        let module = host.load(module).unwrap();
        let limits = host.default_limits();
        // Sizes whose lengths take one, two and three varint bytes.
        for (n, size) in [(3, 10), (4, 1_000), (2, 70_000)] {
            let args = Term::list([Term::Int(n), Term::Int(size)]).encode();
            let mut producer = host
                .open_stream(&module, "blobs", &args, &limits)
                .await
                .unwrap();
            let batch = producer.next(16, 1 << 20).await.unwrap();
            let expected = items(Bytes::copy_from_slice(batch.items()), batch.count);
            let framed = super::batch(batch);
            assert_eq!(decode(&framed), decode(&expected));
            let Some(pb::stream_event::Event::Items(got)) = decode(&framed).event else {
                panic!("not items");
            };
            assert_eq!(got.count, n as u32);
            assert_eq!(
                Term::decode(&got.items).unwrap(),
                Term::list((0..n).map(|i| Term::Bytes(vec![i as u8; size as usize])))
            );
        }
    }

    #[test]
    fn an_end_is_one_message() {
        let framed = end("boom".into());
        assert_eq!(
            decode(&framed).event,
            Some(pb::stream_event::Event::End(pb::StreamEnd {
                error: "boom".into()
            }))
        );
    }
}
