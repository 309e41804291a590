//! Log output: human-readable by default, one JSON object per line with `LOG_FORMAT=json`; the
//! level from `RUST_LOG` or `LOG_LEVEL` (default `info`). Secrets never reach the log: they are
//! held in [`crate::secret::Secret`], which prints a mask.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (reads `LOG_FORMAT`, `RUST_LOG`, `LOG_LEVEL` once, at start).
pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("LOG_LEVEL"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    super::access_log::install(if json {
        super::access_log::Format::Json
    } else {
        super::access_log::Format::Human
    });
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}
