//! Production resolver on hickory-resolver.
