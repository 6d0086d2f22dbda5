//! DMARC reports, both ways (RFC 9990 aggregate, RFC 9991 failure): the
//! rows authgate records per message, the store they go to, the reports
//! sent from them, and the reports others send us.
//!
//! Owns: everything under `report`. Sits above `outcome` (a row is made
//! from a [`crate::outcome::Fate`]) and below `cli`/`daemon`, which start
//! the writer and the daily run.

pub mod db;
pub mod row;
pub mod store;

pub use db::{Db, DbError, Value};
pub use row::{DkimRow, Row};
