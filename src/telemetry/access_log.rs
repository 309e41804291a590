//! The access log: one line per request (method, path without query, route, destination,
//! status, duration, bytes, request id), target `xsrouter::access` at level `INFO`.
//!
//! Lines are written directly, in the same shape the log subscriber uses (human-readable, or one
//! JSON object with `LOG_FORMAT=json`): formatting them through the generic event machinery cost
//! about a seventh of the router's own CPU per proxied request (see `docs/benchmarks.md`). The
//! level filter (`LOG_LEVEL`/`RUST_LOG`, e.g. `xsrouter::access=warn`) still decides whether a
//! line is written. Where the process has not installed its log output ([`install`]: library
//! use, in-process tests), entries go through `tracing` as ordinary events.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::SystemTime;

/// The shape of the lines, chosen once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

static FORMAT: OnceLock<Format> = OnceLock::new();

/// Makes the access log write its own lines in `format` (called by the log set-up).
pub fn install(format: Format) {
    let _ = FORMAT.set(format);
}

/// One request, as the access log records it.
pub struct Entry<'a> {
    pub method: &'a http::Method,
    /// The path, never the query (which may carry secrets).
    pub path: &'a str,
    pub route: Option<usize>,
    pub destination: Option<&'a str>,
    pub status: u16,
    pub duration_ms: u64,
    pub bytes: Option<u64>,
    pub request_id: &'a str,
}

const TARGET: &str = "xsrouter::access";

thread_local! {
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(256));
}

/// Records one request (if the level filter lets `xsrouter::access` info lines through).
pub fn record(entry: &Entry<'_>) {
    if !tracing::enabled!(target: "xsrouter::access", tracing::Level::INFO) {
        return;
    }
    let Some(format) = FORMAT.get().copied() else {
        tracing::info!(
            target: "xsrouter::access",
            method = %entry.method,
            path = %entry.path,
            route = entry.route,
            destination = entry.destination,
            status = entry.status,
            duration_ms = entry.duration_ms,
            bytes = entry.bytes,
            request_id = entry.request_id,
            "request"
        );
        return;
    };
    LINE.with(|line| {
        let Ok(mut line) = line.try_borrow_mut() else {
            return;
        };
        line.clear();
        match format {
            Format::Human => human(&mut line, entry),
            Format::Json => json(&mut line, entry),
        }
        line.push('\n');
        // One write per line: lines of concurrent requests never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    });
}

fn human(line: &mut String, entry: &Entry<'_>) {
    timestamp(line, SystemTime::now());
    let _ = write!(
        line,
        "  INFO {TARGET}: request method={} path={}",
        entry.method, entry.path
    );
    if let Some(route) = entry.route {
        let _ = write!(line, " route={route}");
    }
    if let Some(destination) = entry.destination {
        let _ = write!(line, " destination={destination}");
    }
    let _ = write!(
        line,
        " status={} duration_ms={}",
        entry.status, entry.duration_ms
    );
    if let Some(bytes) = entry.bytes {
        let _ = write!(line, " bytes={bytes}");
    }
    let _ = write!(line, " request_id={}", entry.request_id);
}

fn json(line: &mut String, entry: &Entry<'_>) {
    line.push_str("{\"timestamp\":\"");
    timestamp(line, SystemTime::now());
    line.push_str("\",\"level\":\"INFO\",\"message\":\"request\",\"method\":");
    json_string(line, entry.method.as_str());
    line.push_str(",\"path\":");
    json_string(line, entry.path);
    if let Some(route) = entry.route {
        let _ = write!(line, ",\"route\":{route}");
    }
    if let Some(destination) = entry.destination {
        line.push_str(",\"destination\":");
        json_string(line, destination);
    }
    let _ = write!(
        line,
        ",\"status\":{},\"duration_ms\":{}",
        entry.status, entry.duration_ms
    );
    if let Some(bytes) = entry.bytes {
        let _ = write!(line, ",\"bytes\":{bytes}");
    }
    line.push_str(",\"request_id\":");
    json_string(line, entry.request_id);
    let _ = write!(line, ",\"target\":\"{TARGET}\"}}");
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
fn json_string(line: &mut String, value: &str) {
    line.push('"');
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(line, "\\u{:04x}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// RFC 3339 in UTC with microseconds, as the log subscriber writes it.
fn timestamp(line: &mut String, now: SystemTime) {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let (year, month, day, hour, minute, second) =
        crate::civil_time::civil(i64::try_from(since.as_secs()).unwrap_or(i64::MAX));
    let _ = write!(
        line,
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{:06}Z",
        since.subsec_micros()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(path: &str) -> Entry<'_> {
        Entry {
            method: &http::Method::GET,
            path,
            route: Some(2),
            destination: Some("backend"),
            status: 200,
            duration_ms: 7,
            bytes: None,
            request_id: "id-1",
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let mut line = String::new();
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_449_072_123_456);
        timestamp(&mut line, at);
        assert_eq!(line, "2026-11-23T15:51:12.123456Z");
        line.clear();
        timestamp(
            &mut line,
            SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400),
        );
        assert_eq!(line, "2000-02-29T00:00:00.000000Z", "leap day");
    }

    #[test]
    fn json_lines_are_valid_json_with_escaped_values() {
        let mut line = String::new();
        json(&mut line, &entry("/a\"b\\c\u{1}"));
        let value: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(value["path"], "/a\"b\\c\u{1}");
        assert_eq!(value["target"], "xsrouter::access");
        assert_eq!(value["destination"], "backend");
        assert_eq!(value["route"], 2);
        assert_eq!(value["status"], 200);
        assert!(value.get("bytes").is_none(), "absent values are left out");
    }

    #[test]
    fn human_lines_name_every_field_present() {
        let mut line = String::new();
        human(&mut line, &entry("/x"));
        let after_time = line.split_once("  ").expect("timestamp").1;
        assert_eq!(
            after_time,
            "INFO xsrouter::access: request method=GET path=/x route=2 destination=backend status=200 duration_ms=7 request_id=id-1"
        );
    }
}
