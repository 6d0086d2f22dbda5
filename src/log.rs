//! Log set-up: `tracing` to stderr, as text or JSON.
//!
//! Owns: the subscriber and its filter. The per-message line itself is
//! [`crate::outcome::Record::log`]. Must not: decide anything.

/// Output format of the log on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `key=value` text (journald/syslog friendly).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up logging to stderr. `RUST_LOG` overrides the default level (`info`
/// for the daemons, `warn` for one-shot commands).
pub fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
