//! Conversions between core types and the wire: the only place they happen.
//!
//! Function outcomes travel inside `InvokeReply` as an [`pb::Error`] with a typed code, so one
//! node's result in a fan-out can fail while the others succeed. `tonic::Status` carries what
//! concerns the call itself: admission (`RESOURCE_EXHAUSTED`), malformed requests
//! (`INVALID_ARGUMENT`) and unknown modules on deploy paths (`NOT_FOUND`).

use steinadler_core::{InvokeError, ModuleId, Term};
use steinadler_proto::v1 as pb;
use tonic::Status;

use pb::error::Code;

/// Reads a 32-byte module id.
///
/// # Errors
///
/// `INVALID_ARGUMENT` if the bytes are not 32 long.
pub fn module_id(bytes: &[u8]) -> Result<ModuleId, Status> {
    let raw: [u8; 32] = bytes.try_into().map_err(|_| {
        Status::invalid_argument(format!("a module id is 32 bytes, got {}", bytes.len()))
    })?;
    Ok(ModuleId::from_bytes(raw))
}

/// A typed invocation error as a wire error.
pub fn error_to_wire(err: &InvokeError) -> pb::Error {
    let mut e = pb::Error {
        message: err.to_string(),
        ..Default::default()
    };
    let code = match err {
        InvokeError::ModuleNotFound(name) => {
            e.message = name.clone();
            Code::ModuleNotFound
        }
        InvokeError::FunctionNotFound {
            module,
            function,
            available,
        } => {
            e.message = format!("{module}\n{function}");
            e.available = available.clone();
            Code::FunctionNotFound
        }
        InvokeError::InvalidModule(m) => plain(&mut e, m, Code::InvalidModule),
        InvokeError::BadArguments(m) => plain(&mut e, m, Code::BadArguments),
        InvokeError::Trap { message, backtrace } => {
            e.message = message.clone();
            e.backtrace = backtrace.clone();
            Code::Trap
        }
        InvokeError::Timeout { limit_ms } => {
            e.limit = *limit_ms;
            Code::Timeout
        }
        InvokeError::OutOfMemory { limit_bytes } => {
            e.limit = *limit_bytes;
            Code::OutOfMemory
        }
        InvokeError::BadOutput(m) => plain(&mut e, m, Code::BadOutput),
        InvokeError::Overloaded(m) => plain(&mut e, m, Code::Overloaded),
        InvokeError::GuestError(term) => {
            e.term = term.encode().into();
            Code::GuestError
        }
    };
    e.set_code(code);
    e
}

fn plain(e: &mut pb::Error, message: &str, code: Code) -> Code {
    e.message = message.to_owned();
    code
}

/// What a node reported, as seen by the caller.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    /// The function failed on the node, with a typed error.
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// The node did not hold the arguments named by their hash.
    #[error("the node does not hold the cached arguments; resend them")]
    ArgsMissing,
    /// The node could not be reached, or failed before answering.
    #[error("node unavailable: {0}")]
    Unavailable(String),
}

/// What a node reported, as a wire error: the inverse of [`error_from_wire`].
pub fn remote_error_to_wire(err: &RemoteError) -> pb::Error {
    match err {
        RemoteError::Invoke(e) => error_to_wire(e),
        RemoteError::ArgsMissing => {
            let mut e = pb::Error::default();
            e.set_code(Code::ArgsMissing);
            e
        }
        RemoteError::Unavailable(message) => {
            let mut e = pb::Error {
                message: message.clone(),
                ..Default::default()
            };
            e.set_code(Code::Unavailable);
            e
        }
    }
}

/// A wire error back into a typed error.
pub fn error_from_wire(e: &pb::Error) -> RemoteError {
    let msg = e.message.clone();
    let err = match e.code() {
        Code::ModuleNotFound => InvokeError::ModuleNotFound(msg),
        Code::FunctionNotFound => {
            let (module, function) = msg.split_once('\n').unwrap_or(("?", &msg));
            InvokeError::FunctionNotFound {
                module: module.to_owned(),
                function: function.to_owned(),
                available: e.available.clone(),
            }
        }
        Code::InvalidModule => InvokeError::InvalidModule(msg),
        Code::BadArguments => InvokeError::BadArguments(msg),
        Code::Trap => InvokeError::Trap {
            message: msg,
            backtrace: e.backtrace.clone(),
        },
        Code::Timeout => InvokeError::Timeout { limit_ms: e.limit },
        Code::OutOfMemory => InvokeError::OutOfMemory {
            limit_bytes: e.limit,
        },
        Code::BadOutput => InvokeError::BadOutput(msg),
        Code::Overloaded => InvokeError::Overloaded(msg),
        Code::GuestError => match Term::decode(&e.term) {
            Ok(term) => InvokeError::GuestError(term),
            Err(err) => InvokeError::BadOutput(format!("undecodable guest error: {err}")),
        },
        Code::ArgsMissing => return RemoteError::ArgsMissing,
        Code::Unavailable | Code::Unspecified => return RemoteError::Unavailable(msg),
    };
    RemoteError::Invoke(err)
}

/// An invocation error as the `Status` of a call that failed as a whole (opening a stream),
/// with `context` in front of the message.
pub(crate) fn status_of(err: &InvokeError, context: &str) -> Status {
    let message = match err {
        // The guest's own words, without the quotes of a Term string.
        InvokeError::GuestError(Term::String(why)) => format!("{context}: {why}"),
        _ => format!("{context}: {err}"),
    };
    match err {
        InvokeError::ModuleNotFound(_) | InvokeError::FunctionNotFound { .. } => {
            Status::not_found(message)
        }
        InvokeError::BadArguments(_) | InvokeError::GuestError(_) => {
            Status::invalid_argument(message)
        }
        InvokeError::Overloaded(_) => Status::resource_exhausted(message),
        InvokeError::InvalidModule(_) => Status::failed_precondition(message),
        _ => Status::aborted(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_round_trips() {
        let errors = [
            InvokeError::ModuleNotFound("m".into()),
            InvokeError::FunctionNotFound {
                module: "abc".into(),
                function: "f".into(),
                available: "a, b".into(),
            },
            InvokeError::InvalidModule("x".into()),
            InvokeError::BadArguments("y".into()),
            InvokeError::Trap {
                message: "boom".into(),
                backtrace: "0: f".into(),
            },
            InvokeError::Timeout { limit_ms: 5 },
            InvokeError::OutOfMemory { limit_bytes: 7 },
            InvokeError::BadOutput("z".into()),
            InvokeError::Overloaded("busy".into()),
            InvokeError::GuestError(Term::tuple([Term::atom("error"), Term::Int(1)])),
        ];
        for err in errors {
            assert_eq!(
                error_from_wire(&error_to_wire(&err)),
                RemoteError::Invoke(err)
            );
        }
    }
}
