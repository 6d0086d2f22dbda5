//! The long-running fronts' shared plumbing: sockets, session limits,
//! shutdown and reload.

pub mod listen;
