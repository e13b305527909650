//! The crate's error types: [`SecurityError`] for certificate, key, file and TLS-config work,
//! [`AuthError`] for request and join authentication, and [`TokenError`] for join-token parsing.
//!
//! Every message says what went wrong and, where there is something to do, what to do.

use std::path::PathBuf;

/// What a join token looks like; appended to every token parse error.
const TOKEN_SHAPE: &str = "a join token looks like SA1-<64 hex>-<64 hex>";

/// An error from certificate, key, file or TLS-config handling.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum SecurityError {
    /// A file or directory could not be read or written.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A required file is missing.
    #[error("{} is missing: {hint}", path.display())]
    MissingFile {
        /// The file.
        path: PathBuf,
        /// What the file is and how to get one.
        hint: String,
    },

    /// A file exists and would be overwritten.
    #[error("refusing to overwrite {}: {hint}", path.display())]
    AlreadyExists {
        /// The file.
        path: PathBuf,
        /// Why this matters and what to do.
        hint: String,
    },

    /// A file has the wrong contents (bad hex, wrong length, ...).
    #[error("{} is not valid: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// PEM text holds no usable item of the expected kind.
    #[error("invalid PEM for {what}: {reason}")]
    Pem {
        /// What was being read ("certificate", "private key", ...).
        what: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A certificate could not be parsed or lacks something this crate needs.
    #[error("invalid certificate: {0}")]
    Certificate(String),

    /// The certificate's extended key usage makes it neither a node nor a client certificate.
    #[error(
        "the certificate is neither a node certificate (extended key usage serverAuth) nor a \
         client certificate (extended key usage clientAuth); issue it from the cluster CA with \
         the right usage"
    )]
    NoRole,

    /// A node certificate was expected and the certificate is not one.
    #[error(
        "the certificate is not a node certificate (it lacks the serverAuth extended key usage); \
         use a certificate issued for a node, not for a client"
    )]
    NotANodeCertificate,

    /// The CA certificate is not a CA, or the CA key does not belong to it.
    #[error("invalid cluster CA: {0}")]
    BadCa(String),

    /// Certificate or key generation failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(String),

    /// A certificate signing request could not be used.
    #[error("invalid certificate signing request: {0}")]
    Csr(String),

    /// A node or client name is unusable.
    #[error("{0}")]
    BadName(String),

    /// A rustls configuration could not be built.
    #[error("TLS configuration failed: {0}")]
    Tls(String),

    /// A join token could not be parsed.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Why a request or a join request was not authenticated.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The request carries no cookie.
    #[error(
        "missing cluster cookie (the request has no x-steinadler-cookie header; is the sender \
         part of this secure cluster?)"
    )]
    Missing,
    /// The cookie or MAC is not well formed.
    #[error("malformed cluster cookie: {0}")]
    Malformed(String),
    /// The timestamp is too far from this node's clock. Positive: the request is from the future.
    #[error(
        "request timestamp is {} s away from this node's clock; the window is ±30 s (check the \
         clocks, e.g. NTP)",
        seconds.unsigned_abs()
    )]
    Skew {
        /// Request time minus local time, in whole seconds.
        seconds: i64,
    },
    /// The MAC does not match.
    #[error("wrong cluster cookie (the request's MAC does not match this cluster's secret)")]
    BadMac,
    /// The nonce was seen before, or is too far behind the sender's newest.
    #[error(
        "replayed request (nonce already seen, or more than 65536 requests behind the sender's newest)"
    )]
    Replay,
}

/// Why a string is not a join token.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The token does not start with `SA1-`.
    #[error("the join token does not start with \"SA1-\"; {TOKEN_SHAPE}")]
    Prefix,
    /// The token does not have two 64-character parts after the prefix.
    #[error("the join token has the wrong shape; {TOKEN_SHAPE}")]
    Shape,
    /// A part is not hex.
    #[error("the join token's {part} is not hexadecimal; {TOKEN_SHAPE}")]
    Hex {
        /// Which part: "CA hash" or "secret".
        part: &'static str,
    },
}

/// Maps any displayable error into [`SecurityError::Rcgen`].
pub(crate) fn rcgen_err(err: impl std::fmt::Display) -> SecurityError {
    SecurityError::Rcgen(err.to_string())
}

/// Maps any displayable error into [`SecurityError::Tls`].
pub(crate) fn tls_err(err: impl std::fmt::Display) -> SecurityError {
    SecurityError::Tls(err.to_string())
}
