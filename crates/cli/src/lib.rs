//! What `assent-relay`, `assent-agent` and `assent-viewer` share on their
//! command line: the `--log-format` flag and the logger it selects, and
//! the man pages and shell completions generated from their clap
//! definitions ([`assets`]).

#![forbid(unsafe_code)]

pub mod assets;

use std::io::IsTerminal as _;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

/// How diagnostics are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line an event (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object a line, for log shippers (fields in INTERFACE.md).
    Json,
}

/// `--log-format`, flattened into each program's top-level arguments.
/// Global, so it may also follow the subcommand.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LogArgs {
    /// Diagnostics on stderr: `text` for people, `json` (one object a line) for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

type Logger = Box<dyn tracing::Subscriber + Send + Sync>;

/// The logger for `format`, writing through `writer`.
fn logger<W>(format: LogFormat, filter: EnvFilter, writer: W, ansi: bool) -> Logger
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        // Event fields at the top level beside `message`, and the spans the
        // event is in (e.g. the relay's `conn` span with the peer address).
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .finish(),
        ),
    }
}

/// Installs the global logger: stderr, filtered by `filter`, in `format`.
pub fn init_logging(format: LogFormat, filter: EnvFilter) {
    let ansi = std::io::stderr().is_terminal();
    logger(format, filter, std::io::stderr, ansi).init();
}

/// `RUST_LOG` when set, else `default`.
pub fn env_filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn emit(format: LogFormat) -> String {
        let buf = Buffer::default();
        let out = buf.clone();
        let logger = logger(format, "info".into(), move || out.clone(), false);
        tracing::subscriber::with_default(logger, || {
            let span = tracing::info_span!("conn", peer = "127.0.0.1:5000");
            let _in = span.enter();
            tracing::info!(session = "abc", "session started");
        });
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_lines_parse_with_the_documented_fields() {
        let text = emit(LogFormat::Json);
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect(&text);
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "session started");
        assert_eq!(line["session"], "abc");
        assert!(line["target"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(line["spans"][0]["name"], "conn");
        assert_eq!(line["spans"][0]["peer"], "127.0.0.1:5000");
    }

    #[test]
    fn text_stays_the_default() {
        assert_eq!(LogArgs::default().log_format, LogFormat::Text);
        let text = emit(LogFormat::Text);
        assert!(text.contains("INFO") && text.contains("session started"));
        assert!(serde_json::from_str::<serde_json::Value>(text.trim()).is_err());
    }
}
