//! Steinadler's gRPC API, generated from `proto/steinadler.proto`.
//!
//! This crate owns only the wire types and the service stubs. Conversions between these types
//! and the core types (`InvokeError`, `ModuleId`) live in one place, the node crate's `wire`
//! module, so that `tonic::Status` and these messages are the only things that cross the wire.

#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

/// Version 1 of the API, package `steinadler.v1`.
pub mod v1 {
    tonic::include_proto!("steinadler.v1");
}

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("steinadler_descriptor");
