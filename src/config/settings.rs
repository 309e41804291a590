//! Scalar settings taken from environment variables (`PORT`, `SEND_XFRAMEOPTIONS`, ...).
//!
//! Layered with the `config` crate: built-in defaults, then the environment snapshot (which
//! already includes `default-env.json`). JSON-valued variables (`destinations`, `httpHeaders`,
//! `VCAP_SERVICES`) are parsed by their own modules with serde, where errors can name a path.

use std::time::Duration;

use serde::Deserialize;

use super::environment::Environment;
use super::problem::Problems;

/// Variables read through this module, by their exact (case-sensitive) names (`--help` lists
/// them all; a test checks it).
pub const KEYS: &[&str] = &[
    "PORT",
    "XS_BIND_ADDRESS",
    "SEND_XFRAMEOPTIONS",
    "DESTINATION_HOST_PATTERN",
    "SESSION_TIMEOUT",
    "XSROUTER_SHUTDOWN_TIMEOUT",
    "XSROUTER_CREDENTIALS_POLL_INTERVAL",
    "JWT_REFRESH",
    "MINIMUM_TOKEN_VALIDITY",
    "SKIP_CLIENT_CREDENTIALS_TOKENS_LOAD",
    "XSROUTER_TOKEN_CACHE_SIZE",
    "XSROUTER_DESTINATION_CACHE_TTL",
    "SESSION_COOKIE_NAME",
    "SECURE_SESSION_COOKIE",
    "STATE_PARAMETER_SECRET",
    "PKCE_ENABLED",
    "XSROUTER_MANAGEMENT_PORT",
    "COMPRESSION",
    "CORS",
    "RETURN_ERROR_SOURCE",
    "INCOMING_REQUEST_TIMEOUT",
    "INCOMING_CONNECTION_TIMEOUT",
    "SERVER_KEEP_ALIVE",
    "XSROUTER_MAX_HEADER_SIZE",
    "XSROUTER_MAX_HEADER_COUNT",
    "XSROUTER_MAX_URL_LENGTH",
    "XSROUTER_HEADER_READ_TIMEOUT",
    "XSROUTER_MAX_BODY_SIZE",
    "XSROUTER_TRUSTED_PROXIES",
    "XSROUTER_TRUSTED_PROXY_CERTS",
    "XSROUTER_FORWARDED_CLIENT_CERT",
    "XSROUTER_FORWARDED_CLIENT_CERT_VERIFY",
    "XSROUTER_XFCC_MODE",
    "XSROUTER_XFCC_FIELDS",
    "XSROUTER_CLIENT_CERT_HEADERS_MAX_BYTES",
    // Parsed by config::inbound_tls (listed here so --help and the README stay complete).
    "XSROUTER_CLIENT_CERT_PERMISSIVE",
    "XSROUTER_CLIENT_ISSUERS",
    "XSROUTER_CLIENT_CHAIN_DEPTH",
    "XSROUTER_CLIENT_CRL",
    "XSROUTER_CLIENT_CRL_SCOPE",
    "XSROUTER_CLIENT_CRL_ALLOW_UNKNOWN_STATUS",
    "XSROUTER_CLIENT_CRL_ENFORCE_EXPIRATION",
    "XSROUTER_TLS_HOSTS",
    // Parsed by websocket::origins.
    "WS_ALLOWED_ORIGINS",
    // Parsed by plugins.
    "plugins",
    // Parsed by tenants.
    "TENANT_HOST_PATTERN",
    "EXTERNAL_REVERSE_PROXY",
];

#[derive(Debug, Clone, Deserialize)]
struct RawSettings {
    port: u16,
    xs_bind_address: String,
    send_xframeoptions: bool,
    destination_host_pattern: Option<String>,
    session_timeout: Option<u64>,
    xsrouter_shutdown_timeout: u64,
    xsrouter_credentials_poll_interval: u64,
    jwt_refresh: u64,
    minimum_token_validity: u64,
    skip_client_credentials_tokens_load: bool,
    xsrouter_token_cache_size: u64,
    xsrouter_destination_cache_ttl: u64,
    session_cookie_name: String,
    secure_session_cookie: Option<bool>,
    state_parameter_secret: bool,
    pkce_enabled: bool,
    xsrouter_management_port: Option<u16>,
    return_error_source: bool,
    incoming_request_timeout: u64,
    incoming_connection_timeout: u64,
    server_keep_alive: u64,
    xsrouter_max_header_size: usize,
    xsrouter_max_header_count: usize,
    xsrouter_max_url_length: usize,
    xsrouter_header_read_timeout: u64,
    xsrouter_max_body_size: Option<u64>,
}

/// Settings from the environment, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `PORT` (default 5000; 0 picks a free port).
    pub port: u16,
    /// `XS_BIND_ADDRESS` (default `0.0.0.0`).
    pub bind_address: String,
    /// `SEND_XFRAMEOPTIONS` (default true): add `x-frame-options: SAMEORIGIN`.
    pub send_x_frame_options: bool,
    /// `DESTINATION_HOST_PATTERN`: regex on the host; group 1 names the destination of `*` routes.
    pub destination_host_pattern: Option<String>,
    /// `SESSION_TIMEOUT` in minutes, overriding xs-app.json `sessionTimeout`.
    pub session_timeout_minutes: Option<u64>,
    /// `XSROUTER_SHUTDOWN_TIMEOUT` in seconds (default 30): how long in-flight requests may
    /// finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// `XSROUTER_CREDENTIALS_POLL_INTERVAL` in seconds (default 10): how often the bound
    /// certificates are re-read for rotation (SIGHUP re-reads at once).
    pub credentials_poll_interval: Duration,
    /// `JWT_REFRESH` (minutes, default 5): tokens are renewed this long before they expire.
    pub jwt_refresh: Duration,
    /// `MINIMUM_TOKEN_VALIDITY` (seconds, default 0).
    pub minimum_token_validity: Duration,
    /// `SKIP_CLIENT_CREDENTIALS_TOKENS_LOAD` (default false): no token fetch at start-up.
    pub skip_client_credentials_tokens_load: bool,
    /// `XSROUTER_TOKEN_CACHE_SIZE` (default 10000): most tokens cached.
    pub token_cache_size: u64,
    /// `XSROUTER_DESTINATION_CACHE_TTL` (seconds, default 300): longest a Destination service
    /// lookup is kept (never past the expiry of a token it carries).
    pub destination_cache_ttl: Duration,
    /// `SESSION_COOKIE_NAME` (default `JSESSIONID`).
    pub session_cookie_name: String,
    /// `SECURE_SESSION_COOKIE`: force `Secure` on or off (default: on for HTTPS requests).
    pub secure_session_cookie: Option<bool>,
    /// `STATE_PARAMETER_SECRET` (default true): OAuth `state` on login.
    pub state_parameter: bool,
    /// `PKCE_ENABLED` (default true): PKCE on login.
    pub pkce: bool,
    /// `COOKIES`: `{"SameSite": "...", "Partitioned": true}` for the session cookie.
    pub cookie_same_site: Option<String>,
    pub cookie_partitioned: bool,
    /// `XSROUTER_MANAGEMENT_PORT`: health and metrics on this port (off when unset).
    pub management_port: Option<u16>,
    /// `RETURN_ERROR_SOURCE` (false): `x-error-source: gateway` on the router's own errors.
    pub return_error_source: bool,
    /// `INCOMING_REQUEST_TIMEOUT` (ms, 300000; 0: none): time to receive a whole request (408).
    pub incoming_request_timeout: Option<Duration>,
    /// `INCOMING_CONNECTION_TIMEOUT` (ms, 120000; 0: none): a client connection with no bytes
    /// either way for this long is closed.
    pub incoming_connection_timeout: Option<Duration>,
    /// `SERVER_KEEP_ALIVE` (ms, 0: none): an idle keep-alive connection (no request in
    /// progress) is closed after this long.
    pub server_keep_alive: Option<Duration>,
    /// `XSROUTER_MAX_HEADER_SIZE` (16384), `XSROUTER_MAX_HEADER_COUNT` (100),
    /// `XSROUTER_MAX_URL_LENGTH` (16384), `XSROUTER_HEADER_READ_TIMEOUT` (60 s),
    /// `XSROUTER_MAX_BODY_SIZE` (unlimited): what a client may send.
    pub limits: crate::limits::Limits,
}

impl Settings {
    pub fn from_env(env: &Environment, problems: &mut Problems) -> Option<Self> {
        let mut source: config::Map<String, String> = KEYS
            .iter()
            .filter_map(|key| Some((key.to_string(), env.non_empty(key)?.to_owned())))
            .collect();
        // Each variable on its own first, so every bad one is reported under its own name; a bad
        // one is then left out so the others are still checked against the defaults.
        for key in KEYS {
            let Some(value) = source.get(*key).cloned() else {
                continue;
            };
            let single = config::Map::from([(key.to_string(), value)]);
            if let Err(err) = layered(single) {
                let reason = err.to_string().replace(&key.to_ascii_lowercase(), key);
                problems.push(&env.origin(key), "$", reason);
                source.remove(*key);
            }
        }
        let built = layered(source);
        let cookies = cookie_options(env, problems);
        match built {
            Ok(raw) => {
                for (key, value, minimum) in [
                    (
                        "XSROUTER_MAX_HEADER_SIZE",
                        raw.xsrouter_max_header_size as u64,
                        crate::limits::MIN_HEADER_SIZE as u64,
                    ),
                    (
                        "XSROUTER_MAX_HEADER_COUNT",
                        raw.xsrouter_max_header_count as u64,
                        8,
                    ),
                    (
                        "XSROUTER_MAX_URL_LENGTH",
                        raw.xsrouter_max_url_length as u64,
                        64,
                    ),
                    (
                        "XSROUTER_HEADER_READ_TIMEOUT",
                        raw.xsrouter_header_read_timeout,
                        1,
                    ),
                ] {
                    if value < minimum {
                        problems.push(&env.origin(key), "$", format!("must be at least {minimum}"));
                    }
                }
                if raw.session_timeout == Some(0) {
                    problems.push(
                        &env.origin("SESSION_TIMEOUT"),
                        "$",
                        "must be at least 1 (minutes)",
                    );
                }
                Some(Settings {
                    port: raw.port,
                    bind_address: raw.xs_bind_address,
                    send_x_frame_options: raw.send_xframeoptions,
                    destination_host_pattern: raw.destination_host_pattern,
                    session_timeout_minutes: raw.session_timeout,
                    shutdown_timeout: Duration::from_secs(raw.xsrouter_shutdown_timeout),
                    credentials_poll_interval: Duration::from_secs(
                        raw.xsrouter_credentials_poll_interval.max(1),
                    ),
                    jwt_refresh: Duration::from_secs(raw.jwt_refresh * 60),
                    minimum_token_validity: Duration::from_secs(raw.minimum_token_validity),
                    skip_client_credentials_tokens_load: raw.skip_client_credentials_tokens_load,
                    token_cache_size: raw.xsrouter_token_cache_size.max(1),
                    destination_cache_ttl: Duration::from_secs(raw.xsrouter_destination_cache_ttl),
                    session_cookie_name: raw.session_cookie_name,
                    secure_session_cookie: raw.secure_session_cookie,
                    state_parameter: raw.state_parameter_secret,
                    pkce: raw.pkce_enabled,
                    cookie_same_site: cookies.0,
                    cookie_partitioned: cookies.1,
                    management_port: raw.xsrouter_management_port,
                    return_error_source: raw.return_error_source,
                    incoming_request_timeout: millis(raw.incoming_request_timeout),
                    incoming_connection_timeout: millis(raw.incoming_connection_timeout),
                    server_keep_alive: millis(raw.server_keep_alive),
                    limits: crate::limits::Limits {
                        max_header_size: raw.xsrouter_max_header_size,
                        max_header_count: raw.xsrouter_max_header_count,
                        max_url_length: raw.xsrouter_max_url_length,
                        // SERVER_KEEP_ALIVE: an idle keep-alive connection waits this long at
                        // most for the next request head.
                        header_read_timeout: millis(raw.server_keep_alive).map_or(
                            Duration::from_secs(raw.xsrouter_header_read_timeout),
                            |keep_alive| {
                                keep_alive
                                    .min(Duration::from_secs(raw.xsrouter_header_read_timeout))
                            },
                        ),
                        max_body_size: raw.xsrouter_max_body_size,
                    },
                })
            }
            Err(err) => {
                problems.push("environment", "$", err.to_string());
                None
            }
        }
    }
}

/// `COOKIES`: a JSON object with `SameSite` (`Strict`, `Lax`, `None`) and `Partitioned`.
fn cookie_options(env: &Environment, problems: &mut Problems) -> (Option<String>, bool) {
    let Some(text) = env.non_empty("COOKIES") else {
        return (None, false);
    };
    let origin = env.origin("COOKIES");
    let Ok(serde_json::Value::Object(doc)) = serde_json::from_str::<serde_json::Value>(text) else {
        problems.push(
            &origin,
            "$",
            "must be a JSON object like {\"SameSite\": \"None\"}",
        );
        return (None, false);
    };
    let same_site = match doc.get("SameSite").map(|v| v.as_str()) {
        None => None,
        Some(Some(v @ ("Strict" | "Lax" | "None"))) => Some(v.to_owned()),
        Some(_) => {
            problems.push(&origin, "$.SameSite", "must be `Strict`, `Lax` or `None`");
            None
        }
    };
    let partitioned = match doc.get("Partitioned") {
        None => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(_) => {
            problems.push(&origin, "$.Partitioned", "must be a boolean");
            false
        }
    };
    (same_site, partitioned)
}

/// Milliseconds, 0 meaning "no timeout" (as approuter's timeout variables).
fn millis(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Defaults, then the given variables, deserialized.
fn layered(source: config::Map<String, String>) -> Result<RawSettings, config::ConfigError> {
    config::Config::builder()
        .set_default("port", 5000)?
        .set_default("xs_bind_address", "0.0.0.0")?
        .set_default("send_xframeoptions", true)?
        .set_default("xsrouter_shutdown_timeout", 30)?
        .set_default("xsrouter_credentials_poll_interval", 10)?
        .set_default("jwt_refresh", 5)?
        .set_default("minimum_token_validity", 0)?
        .set_default("skip_client_credentials_tokens_load", false)?
        .set_default("xsrouter_token_cache_size", 10_000)?
        .set_default("xsrouter_destination_cache_ttl", 300)?
        .set_default("session_cookie_name", "JSESSIONID")?
        .set_default("state_parameter_secret", true)?
        .set_default("pkce_enabled", true)?
        .set_default("return_error_source", false)?
        .set_default("incoming_request_timeout", 300_000)?
        .set_default("incoming_connection_timeout", 120_000)?
        .set_default("server_keep_alive", 0)?
        .set_default("xsrouter_max_header_size", 16 * 1024)?
        .set_default("xsrouter_max_header_count", 100)?
        .set_default("xsrouter_max_url_length", 16 * 1024)?
        .set_default("xsrouter_header_read_timeout", 60)?
        .add_source(
            config::Environment::default()
                .source(Some(source))
                .try_parsing(true),
        )
        .build()?
        .try_deserialize::<RawSettings>()
}
