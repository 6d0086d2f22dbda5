//! Offline resolver from RFC 1035 master files (`--dns-zone FILE`).
