//! Importing other programs' configuration into authgate's.
//!
//! Owns: translating foreign configuration text into authgate TOML. Must
//! not: read files itself (the caller passes a reader) or print.

pub mod opendkim;
