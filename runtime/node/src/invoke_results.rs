//! [`InvokeResults`]: the results of [`Client::invoke_streaming`](crate::Client::invoke_streaming),
//! read from the coordinator's `InvokeOnStream` as each node's result arrives.

use crate::client::ClientError;
use crate::coordinator::NodeResult;
use steinadler_proto::v1 as pb;
use steinadler_proto::v1::invoke_on_event::Event;
use tonic::Status;

/// Each node's result of one call, as it arrives.
#[derive(Debug)]
pub struct InvokeResults {
    stream: tonic::Streaming<pb::InvokeOnEvent>,
    selected: usize,
    received: usize,
    done: bool,
}

impl InvokeResults {
    /// Reads the stream's first event, the number of nodes selected.
    pub(crate) async fn start(
        mut stream: tonic::Streaming<pb::InvokeOnEvent>,
    ) -> Result<Self, ClientError> {
        match stream.message().await? {
            Some(pb::InvokeOnEvent {
                event: Some(Event::Selected(n)),
            }) => Ok(Self {
                stream,
                selected: usize::try_from(n).unwrap_or(usize::MAX),
                received: 0,
                done: false,
            }),
            other => Err(ClientError::Status(Status::internal(format!(
                "the node's result stream began with {other:?}, not the number of nodes selected"
            )))),
        }
    }

    /// How many nodes the target selected: the number of results to come.
    pub fn selected(&self) -> usize {
        self.selected
    }

    /// How many results have arrived so far.
    pub fn received(&self) -> usize {
        self.received
    }

    /// The next node's result, or `None` after the last.
    ///
    /// # Errors
    ///
    /// [`ClientError::Status`] if the stream broke, or ended before every selected node's
    /// result.
    pub async fn next(&mut self) -> Option<Result<NodeResult, ClientError>> {
        if self.done {
            return None;
        }
        match self.stream.message().await {
            Ok(Some(pb::InvokeOnEvent {
                event: Some(Event::Result(reply)),
            })) => {
                self.received += 1;
                Some(Ok(NodeResult::from_reply(reply)))
            }
            Ok(None) if self.received >= self.selected => {
                self.done = true;
                None
            }
            Ok(None) => Some(Err(self.broken(format!(
                "the result stream ended after {} of {} results",
                self.received, self.selected
            )))),
            Ok(Some(other)) => Some(Err(self.broken(format!(
                "an unexpected event in the result stream: {other:?}"
            )))),
            Err(status) => {
                self.done = true;
                Some(Err(ClientError::Status(status)))
            }
        }
    }

    /// Marks the stream done, so that the next call returns `None`, and makes the error.
    fn broken(&mut self, why: String) -> ClientError {
        self.done = true;
        ClientError::Status(Status::unavailable(why))
    }
}
