//! DNS integration tests.
