//! DKIM (RFC 6376, RFC 8301, RFC 8463): canonicalization, signatures, keys,
//! signing and verification. Everything here is pure; key lookups arrive as
//! DNS answers handed in by the pipeline.

pub mod canon;
pub mod key;
pub mod sign;
pub mod signature;
pub mod tag;
pub mod verify;
