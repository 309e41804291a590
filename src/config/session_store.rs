//! Where sessions are kept when several router instances share them: `EXT_SESSION_MGT` as
//! approuter reads it, the Redis instance it names in the bindings, or a plain `REDIS_URL`.
//!
//! Accepted configurations (anything else is a configuration problem, never a silent fallback
//! to the in-memory store):
//! - `EXT_SESSION_MGT` = `{"instanceName", "storageType": "redis", "sessionSecret",
//!   "defaultRetryTimeout"?, "backOffMultiplier"?, "skipCertHostnameValidation"?,
//!   "rejectUnauthorized"?}`: the Redis instance named `instanceName` is looked up in
//!   `VCAP_SERVICES` (then in `SERVICE_BINDING_ROOT` bindings) and connected with its credentials
//!   `hostname`, `port`, `password`, `tls`, `cluster_mode` (or `uri` when there is no `hostname`).
//! - `EXT_SESSION_MGT` without `instanceName`, plus `REDIS_URL`: the URL names the server, the
//!   rest comes from `EXT_SESSION_MGT`.
//! - `REDIS_URL` alone (`redis://` or `rediss://`): the secret comes from
//!   `XSROUTER_SESSION_SECRET`; retries use approuter's defaults.
//!
//! `defaultRetryTimeout` (ms, default 2000) bounds the time one store operation may spend
//! retrying; `backOffMultiplier` (ms, default 50) spaces the retries: the n-th retry waits
//! n × `backOffMultiplier` ms (the linear schedule of approuter's Redis client).

use std::time::Duration;

use serde_json::{Map, Value};

use super::bindings::{Bindings, ServiceBinding};
use super::environment::Environment;
use super::problem::{Problems, child, syntax_reason};
use crate::secret::Secret;

pub const EXT_SESSION_MGT: &str = "EXT_SESSION_MGT";
pub const REDIS_URL: &str = "REDIS_URL";
/// The session secret when only `REDIS_URL` is set.
pub const SESSION_SECRET: &str = "XSROUTER_SESSION_SECRET";

/// Shortest `sessionSecret` accepted (approuter asks for at least 64 characters).
pub const MIN_SECRET_CHARS: usize = 32;
pub const DEFAULT_RETRY_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_BACKOFF_MULTIPLIER_MS: f64 = 50.0;
/// Longest `defaultRetryTimeout` accepted: a request should not wait longer for its session.
const MAX_RETRY_TIMEOUT_MS: u64 = 120_000;
/// The username platforms put into Redis URIs when there is none.
const NO_USERNAME: &str = "no-user-name-for-redis";

/// The external session store, validated.
#[derive(Debug, Clone)]
pub struct SessionStoreSettings {
    /// What errors name: the `instanceName`, or `REDIS_URL`.
    pub instance: String,
    pub redis: RedisEndpoint,
    /// `sessionSecret`: the store's encryption and key-naming keys are derived from it.
    pub secret: Secret,
    /// `defaultRetryTimeout`: the longest one store operation keeps retrying.
    pub retry_timeout: Duration,
    /// `backOffMultiplier`: the n-th retry waits n × this.
    pub backoff_step: Duration,
}

/// How to reach the Redis server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisEndpoint {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Database number (only from a URL path; cluster mode has only 0).
    pub db: i64,
    pub tls: bool,
    /// `cluster_mode`: the server is one node of a Redis cluster.
    pub cluster: bool,
    /// `rejectUnauthorized` (default true): verify the server certificate.
    pub verify_certificate: bool,
    /// Not `skipCertHostnameValidation`: the certificate must name the host.
    pub verify_hostname: bool,
}

/// Reads the external session store configuration; `None` keeps sessions in memory.
pub fn from_env(
    env: &Environment,
    bindings: &Bindings,
    problems: &mut Problems,
) -> Option<SessionStoreSettings> {
    let before = problems.len();
    let ext = env.non_empty(EXT_SESSION_MGT);
    let url = env.non_empty(REDIS_URL);
    let lone_secret = env.non_empty(SESSION_SECRET);
    let settings = match (ext, url) {
        (None, None) => {
            if lone_secret.is_some() {
                problems.push(
                    &env.origin(SESSION_SECRET),
                    "$",
                    format!("is set, but neither {REDIS_URL} nor {EXT_SESSION_MGT} configures a session store"),
                );
            }
            return None;
        }
        (Some(text), url) => from_ext_session_mgt(env, text, url, bindings, problems),
        (None, Some(url)) => {
            let origin = env.origin(REDIS_URL);
            let redis = parse_url(url, &origin, "$", false, problems);
            let secret = match lone_secret {
                Some(secret) => check_secret(secret, &env.origin(SESSION_SECRET), "$", problems),
                None => {
                    problems.push(
                        &origin,
                        "$",
                        format!("sessions in Redis are encrypted: set {SESSION_SECRET} (at least {MIN_SECRET_CHARS} characters, the same on every instance) or use {EXT_SESSION_MGT} with `sessionSecret`"),
                    );
                    None
                }
            };
            Some(SessionStoreSettings {
                instance: REDIS_URL.to_owned(),
                redis: redis?,
                secret: secret?,
                retry_timeout: Duration::from_millis(DEFAULT_RETRY_TIMEOUT_MS),
                backoff_step: Duration::from_secs_f64(DEFAULT_BACKOFF_MULTIPLIER_MS / 1000.0),
            })
        }
    };
    // Every problem is reported; settings are only returned when there was none.
    settings.filter(|_| problems.len() == before)
}

fn from_ext_session_mgt(
    env: &Environment,
    text: &str,
    url: Option<&str>,
    bindings: &Bindings,
    problems: &mut Problems,
) -> Option<SessionStoreSettings> {
    let origin = env.origin(EXT_SESSION_MGT);
    let doc = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(doc)) => doc,
        Ok(_) => {
            problems.push(
                &origin,
                "$",
                "must be a JSON object like {\"instanceName\": \"my-redis\", \"storageType\": \"redis\", \"sessionSecret\": \"...\"}",
            );
            return None;
        }
        Err(err) => {
            problems.push(&origin, "$", syntax_reason(&err));
            return None;
        }
    };
    for key in doc.keys() {
        match key.as_str() {
            "instanceName"
            | "storageType"
            | "sessionSecret"
            | "defaultRetryTimeout"
            | "backOffMultiplier"
            | "skipCertHostnameValidation"
            | "rejectUnauthorized" => {}
            "externalStoreFilePath" => problems.push(
                &origin,
                child("$", key),
                "custom (JavaScript) session store drivers are not supported; only `storageType` \"redis\" is",
            ),
            _ => problems.push(&origin, child("$", key), "unknown property"),
        }
    }
    match doc.get("storageType") {
        Some(Value::String(kind)) if kind == "redis" => {}
        Some(_) => problems.push(&origin, "$.storageType", "must be \"redis\""),
        None => problems.push(
            &origin,
            "$.storageType",
            "is required: the storage type, \"redis\"",
        ),
    }
    let secret = match doc.get("sessionSecret") {
        Some(Value::String(secret)) => check_secret(secret, &origin, "$.sessionSecret", problems),
        Some(_) => {
            problems.push(&origin, "$.sessionSecret", "must be a string");
            None
        }
        None => {
            problems.push(
                &origin,
                "$.sessionSecret",
                format!("is required: a secret of at least {MIN_SECRET_CHARS} characters (approuter asks for 64), the same on every instance; sessions in Redis are encrypted with it"),
            );
            None
        }
    };
    if env.non_empty(SESSION_SECRET).is_some() {
        problems.push(
            &env.origin(SESSION_SECRET),
            "$",
            format!(
                "conflicts with {EXT_SESSION_MGT} `sessionSecret`: set the secret in one place"
            ),
        );
    }
    let retry_timeout = match millis(&doc, "defaultRetryTimeout", &origin, problems) {
        Some(ms) if ms > MAX_RETRY_TIMEOUT_MS as f64 => {
            problems.push(
                &origin,
                "$.defaultRetryTimeout",
                format!("must be at most {MAX_RETRY_TIMEOUT_MS} (milliseconds)"),
            );
            None
        }
        Some(ms) => Some(Duration::from_secs_f64(ms / 1000.0)),
        None => Some(Duration::from_millis(DEFAULT_RETRY_TIMEOUT_MS)),
    };
    let backoff_step = match millis(&doc, "backOffMultiplier", &origin, problems) {
        Some(ms) if ms > MAX_RETRY_TIMEOUT_MS as f64 => {
            problems.push(
                &origin,
                "$.backOffMultiplier",
                format!("must be at most {MAX_RETRY_TIMEOUT_MS} (milliseconds)"),
            );
            None
        }
        Some(ms) => Some(Duration::from_secs_f64(ms / 1000.0)),
        None => Some(Duration::from_secs_f64(
            DEFAULT_BACKOFF_MULTIPLIER_MS / 1000.0,
        )),
    };
    let skip_hostname =
        flag(&doc, "skipCertHostnameValidation", &origin, problems).unwrap_or(false);
    let reject_unauthorized = flag(&doc, "rejectUnauthorized", &origin, problems).unwrap_or(true);

    let (instance, redis) = match (doc.get("instanceName"), url) {
        (Some(Value::String(name)), url) if !name.trim().is_empty() => {
            if url.is_some() {
                problems.push(
                    &env.origin(REDIS_URL),
                    "$",
                    format!("conflicts with {EXT_SESSION_MGT} `instanceName` `{name}`: name the Redis server in one place"),
                );
            }
            let redis = find_instance(name, bindings, &origin, problems)
                .and_then(|binding| from_binding(binding, problems));
            (name.clone(), redis)
        }
        (Some(_), _) => {
            problems.push(
                &origin,
                "$.instanceName",
                "must be the name of the bound Redis service instance",
            );
            (String::new(), None)
        }
        (None, Some(url)) => (
            REDIS_URL.to_owned(),
            parse_url(url, &env.origin(REDIS_URL), "$", false, problems),
        ),
        (None, None) => {
            problems.push(
                &origin,
                "$.instanceName",
                format!(
                    "is required: the name of the bound Redis service instance (or set {REDIS_URL})"
                ),
            );
            (String::new(), None)
        }
    };
    let mut redis = redis?;
    if !redis.tls && (skip_hostname || !reject_unauthorized) {
        let key = if skip_hostname {
            "skipCertHostnameValidation"
        } else {
            "rejectUnauthorized"
        };
        problems.push(
            &origin,
            child("$", key),
            format!("only applies to TLS connections, and Redis instance `{instance}` is not reached over TLS"),
        );
    }
    redis.verify_certificate = reject_unauthorized;
    redis.verify_hostname = !skip_hostname;
    Some(SessionStoreSettings {
        instance,
        redis,
        secret: secret?,
        retry_timeout: retry_timeout?,
        backoff_step: backoff_step?,
    })
}

fn check_secret(secret: &str, origin: &str, path: &str, problems: &mut Problems) -> Option<Secret> {
    if secret.chars().count() < MIN_SECRET_CHARS {
        problems.push(
            origin,
            path,
            format!("is too short: use at least {MIN_SECRET_CHARS} random characters (approuter asks for 64)"),
        );
        return None;
    }
    Some(Secret::new(secret))
}

/// A non-negative number of milliseconds (a JSON number or a numeric string).
fn millis(
    doc: &Map<String, Value>,
    key: &str,
    origin: &str,
    problems: &mut Problems,
) -> Option<f64> {
    let value = doc.get(key)?;
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match number {
        Some(n) if n.is_finite() && n >= 0.0 => Some(n),
        _ => {
            problems.push(
                origin,
                child("$", key),
                "must be a non-negative number (milliseconds)",
            );
            None
        }
    }
}

/// A boolean (or the string `true` / `false`).
fn flag(
    doc: &Map<String, Value>,
    key: &str,
    origin: &str,
    problems: &mut Problems,
) -> Option<bool> {
    match doc.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => {
            problems.push(origin, child("$", key), "must be a boolean");
            None
        }
    }
}

/// The bound service instance named `name`: `VCAP_SERVICES` first, then binding directories.
fn find_instance<'b>(
    name: &str,
    bindings: &'b Bindings,
    origin: &str,
    problems: &mut Problems,
) -> Option<&'b ServiceBinding> {
    let found = bindings
        .services
        .iter()
        .find(|b| b.name == name)
        .or_else(|| bindings.directories.iter().find(|b| b.name == name));
    if found.is_none() {
        let mut names: Vec<&str> = bindings
            .services
            .iter()
            .chain(&bindings.directories)
            .map(|b| b.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        let bound = if names.is_empty() {
            "no service instance is bound (VCAP_SERVICES is empty or unset)".to_owned()
        } else {
            format!("bound instances: {}", names.join(", "))
        };
        problems.push(
            origin,
            "$.instanceName",
            format!("no bound service instance is named `{name}`; {bound}"),
        );
    }
    found
}

/// The Redis endpoint in a binding's credentials.
fn from_binding(binding: &ServiceBinding, problems: &mut Problems) -> Option<RedisEndpoint> {
    let credentials = &binding.credentials;
    let base = child(&binding.path, "credentials");
    let at = |key: &str| child(&base, key);
    let text = |key: &str| match credentials.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    };
    let flag_at = |key: &str, problems: &mut Problems| match credentials.get(key) {
        None | Some(Value::Null) => Some(false),
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") || s.trim().is_empty() => {
            Some(false)
        }
        Some(_) => {
            problems.push(&binding.origin, at(key), "must be a boolean");
            None
        }
    };
    let tls = flag_at("tls", problems);
    let cluster = flag_at("cluster_mode", problems);
    let password = text("password").map(Secret::new);
    let endpoint = if let Some(host) = text("hostname") {
        let port = match credentials.get("port") {
            Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
            None => {
                problems.push(
                    &binding.origin,
                    at("port"),
                    format!(
                        "Redis instance `{}` has a `hostname` but no `port`",
                        binding.name
                    ),
                );
                return None;
            }
            Some(_) => None,
        };
        let Some(port) = port.filter(|p| *p != 0) else {
            problems.push(
                &binding.origin,
                at("port"),
                "must be a port number (1-65535)",
            );
            return None;
        };
        let (tls, cluster) = (tls?, cluster?);
        RedisEndpoint {
            host,
            port,
            username: None,
            password,
            db: 0,
            tls,
            cluster,
            verify_certificate: true,
            verify_hostname: true,
        }
    } else if let Some(uri) = text("uri") {
        let mut endpoint = parse_url(&uri, &binding.origin, &at("uri"), true, problems)?;
        if credentials.contains_key("tls") && tls? != endpoint.tls {
            problems.push(
                &binding.origin,
                at("tls"),
                "contradicts the scheme of `uri` (rediss:// is TLS, redis:// is not)",
            );
            return None;
        }
        if endpoint.password.is_none() {
            endpoint.password = password;
        }
        endpoint.cluster = cluster?;
        endpoint
    } else {
        problems.push(
            &binding.origin,
            base,
            format!(
                "service instance `{}` has neither `hostname` and `port` nor `uri`: is it a Redis instance?",
                binding.name
            ),
        );
        return None;
    };
    if endpoint.cluster && endpoint.db != 0 {
        problems.push(
            &binding.origin,
            at("uri"),
            "a Redis cluster has only database 0",
        );
        return None;
    }
    Some(endpoint)
}

/// A `redis://` or `rediss://` URL: `[user[:password]@]host[:port][/db]`. Secrets in the URL
/// never appear in problems.
fn parse_url(
    text: &str,
    origin: &str,
    path: &str,
    from_binding: bool,
    problems: &mut Problems,
) -> Option<RedisEndpoint> {
    let Ok(url) = url::Url::parse(text) else {
        problems.push(
            origin,
            path,
            "is not a URL like redis://[:password@]host[:port][/db] or rediss://...",
        );
        return None;
    };
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        other => {
            problems.push(
                origin,
                path,
                format!("scheme `{other}` is not supported: use redis:// or rediss://"),
            );
            return None;
        }
    };
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        problems.push(origin, path, "names no host");
        return None;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let db = match url.path().trim_matches('/') {
        "" => 0,
        n => match n.parse::<i64>() {
            Ok(db) if db >= 0 => db,
            _ => {
                problems.push(
                    origin,
                    path,
                    "the URL path must be a database number like /0",
                );
                return None;
            }
        },
    };
    if url.query().is_some() || url.fragment().is_some() {
        problems.push(
            origin,
            path,
            "query parameters and fragments are not supported in the Redis URL",
        );
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .ok()
    };
    let username = Some(url.username())
        .filter(|u| !u.is_empty())
        .and_then(decode)
        .filter(|u| !(from_binding && u == NO_USERNAME));
    let password = url.password().and_then(decode).filter(|p| !p.is_empty());
    Some(RedisEndpoint {
        host,
        port: url.port().unwrap_or(6379),
        username,
        password: password.map(Secret::new),
        db,
        tls,
        cluster: false,
        verify_certificate: true,
        verify_hostname: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-session-secret";

    fn load(pairs: &[(&str, String)]) -> Result<Option<SessionStoreSettings>, Vec<String>> {
        let env = Environment::from_pairs(pairs.iter().map(|(k, v)| (*k, v.clone())));
        let mut problems = Problems::default();
        let mut bindings = Bindings::default();
        if let Some(vcap) = env.non_empty("VCAP_SERVICES") {
            bindings.add_vcap_services(vcap, &env.origin("VCAP_SERVICES"), &mut problems);
        }
        let settings = from_env(&env, &bindings, &mut problems);
        match problems.into_result(()) {
            Ok(()) => Ok(settings),
            Err(err) => {
                assert!(settings.is_none(), "no settings with problems");
                Err(err.problems.iter().map(ToString::to_string).collect())
            }
        }
    }

    fn vcap(credentials: Value) -> String {
        json!({"redis-cache": [{"name": "my-redis", "label": "redis-cache", "credentials": credentials}],
               "xsuaa": [{"name": "uaa", "credentials": {}}]})
        .to_string()
    }

    fn ext(doc: Value) -> (&'static str, String) {
        (EXT_SESSION_MGT, doc.to_string())
    }

    fn problems_of(pairs: &[(&str, String)]) -> Vec<String> {
        load(pairs).expect_err("expected configuration problems")
    }

    fn has(problems: &[String], needle: &str) {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "no problem containing {needle:?} in {problems:#?}"
        );
    }

    #[test]
    fn nothing_configured_means_memory() {
        assert!(load(&[]).expect("valid").is_none());
    }

    #[test]
    fn ext_session_mgt_with_a_bound_instance() {
        let settings = load(&[
            ext(json!({"instanceName": "my-redis", "storageType": "redis", "sessionSecret": SECRET,
                       "defaultRetryTimeout": 10000, "backOffMultiplier": 10})),
            (
                "VCAP_SERVICES",
                vcap(json!({"hostname": "redis.example", "port": 1234, "password": "pw", "tls": true,
                            "cluster_mode": false, "uri": "rediss://no-user-name-for-redis:pw@redis.example:1234"})),
            ),
        ])
        .expect("valid")
        .expect("configured");
        assert_eq!(settings.instance, "my-redis");
        assert_eq!(settings.secret.expose(), SECRET);
        assert_eq!(settings.retry_timeout, Duration::from_secs(10));
        assert_eq!(settings.backoff_step, Duration::from_millis(10));
        let redis = settings.redis;
        assert_eq!(
            (redis.host.as_str(), redis.port, redis.tls, redis.cluster),
            ("redis.example", 1234, true, false)
        );
        assert_eq!(redis.password.as_ref().map(Secret::expose), Some("pw"));
        assert_eq!(redis.username, None);
        assert!(redis.verify_certificate && redis.verify_hostname);
    }

    #[test]
    fn defaults_and_string_typed_credentials() {
        // Binding directories (Kyma) carry every credential as text.
        let settings = load(&[
            ext(json!({"instanceName": "my-redis", "storageType": "redis", "sessionSecret": SECRET,
                       "skipCertHostnameValidation": true, "rejectUnauthorized": "false"})),
            (
                "VCAP_SERVICES",
                vcap(json!({"hostname": "h", "port": "6380", "password": "pw", "tls": "true", "cluster_mode": "true"})),
            ),
        ])
        .expect("valid")
        .expect("configured");
        assert_eq!(settings.retry_timeout, Duration::from_millis(2000));
        assert_eq!(settings.backoff_step, Duration::from_millis(50));
        let redis = settings.redis;
        assert_eq!((redis.port, redis.tls, redis.cluster), (6380, true, true));
        assert!(!redis.verify_certificate && !redis.verify_hostname);
    }

    #[test]
    fn uri_only_binding() {
        let settings = load(&[
            ext(json!({"instanceName": "my-redis", "storageType": "redis", "sessionSecret": SECRET})),
            (
                "VCAP_SERVICES",
                vcap(json!({"uri": "redis://no-user-name-for-redis:p%40ss@10.0.0.5:7000"})),
            ),
        ])
        .expect("valid")
        .expect("configured");
        let redis = settings.redis;
        assert_eq!(
            (redis.host.as_str(), redis.port, redis.tls),
            ("10.0.0.5", 7000, false)
        );
        assert_eq!(
            redis.username, None,
            "the platform's placeholder user is dropped"
        );
        assert_eq!(redis.password.as_ref().map(Secret::expose), Some("p@ss"));
    }

    #[test]
    fn redis_url_alone_or_with_ext_session_mgt() {
        let settings = load(&[
            (REDIS_URL, "rediss://app:pw@cache.local:6390/2".to_owned()),
            (SESSION_SECRET, SECRET.to_owned()),
        ])
        .expect("valid")
        .expect("configured");
        assert_eq!(settings.instance, "REDIS_URL");
        let redis = &settings.redis;
        assert_eq!(
            (redis.host.as_str(), redis.port, redis.db, redis.tls),
            ("cache.local", 6390, 2, true)
        );
        assert_eq!(redis.username.as_deref(), Some("app"));

        let settings = load(&[
            (REDIS_URL, "redis://127.0.0.1".to_owned()),
            ext(json!({"storageType": "redis", "sessionSecret": SECRET, "defaultRetryTimeout": "300"})),
        ])
        .expect("valid")
        .expect("configured");
        assert_eq!(settings.redis.port, 6379);
        assert_eq!(settings.retry_timeout, Duration::from_millis(300));
    }

    #[test]
    fn structural_errors() {
        has(
            &problems_of(&[(EXT_SESSION_MGT, "{".into())]),
            "env EXT_SESSION_MGT: $: invalid JSON",
        );
        has(
            &problems_of(&[(EXT_SESSION_MGT, "[]".into())]),
            "must be a JSON object",
        );
        let problems = problems_of(&[ext(json!({"instanceName": "my-redis"}))]);
        has(&problems, "$.storageType: is required");
        has(&problems, "$.sessionSecret: is required");
        let problems = problems_of(&[ext(json!({
            "instanceName": "my-redis", "storageType": "postgres", "sessionSecret": "short",
            "externalStoreFilePath": "./store", "sessionSecrett": "typo",
            "defaultRetryTimeout": -1, "backOffMultiplier": "fast", "rejectUnauthorized": "yes"
        }))]);
        has(&problems, "$.storageType: must be \"redis\"");
        has(&problems, "$.sessionSecret: is too short");
        has(
            &problems,
            "$.externalStoreFilePath: custom (JavaScript) session store drivers",
        );
        has(&problems, "$.sessionSecrett: unknown property");
        has(
            &problems,
            "$.defaultRetryTimeout: must be a non-negative number",
        );
        has(
            &problems,
            "$.backOffMultiplier: must be a non-negative number",
        );
        has(&problems, "$.rejectUnauthorized: must be a boolean");
        let problems = problems_of(&[ext(
            json!({"storageType": "redis", "sessionSecret": SECRET}),
        )]);
        has(&problems, "$.instanceName: is required");
        has(
            &problems_of(
                &[ext(json!({"storageType": "redis", "sessionSecret": SECRET,
                                      "instanceName": "x", "defaultRetryTimeout": 10_000_000}))],
            ),
            "$.defaultRetryTimeout: must be at most",
        );
    }

    #[test]
    fn the_instance_must_be_bound_and_usable() {
        let doc =
            json!({"instanceName": "my-redis", "storageType": "redis", "sessionSecret": SECRET});
        let problems = problems_of(&[ext(doc.clone())]);
        has(
            &problems,
            "env EXT_SESSION_MGT: $.instanceName: no bound service instance is named `my-redis`",
        );
        let problems = problems_of(&[
            ext(json!({"instanceName": "other", "storageType": "redis", "sessionSecret": SECRET})),
            ("VCAP_SERVICES", vcap(json!({"hostname": "h", "port": 1}))),
        ]);
        has(&problems, "bound instances: my-redis, uaa");
        let cases = [
            (
                json!({"password": "pw"}),
                "$.redis-cache[0].credentials: service instance `my-redis` has neither",
            ),
            (
                json!({"hostname": "h"}),
                "$.redis-cache[0].credentials.port: Redis instance `my-redis` has a `hostname` but no `port`",
            ),
            (
                json!({"hostname": "h", "port": 70000}),
                "credentials.port: must be a port number",
            ),
            (
                json!({"hostname": "h", "port": 1, "tls": "maybe"}),
                "credentials.tls: must be a boolean",
            ),
            (
                json!({"uri": "http://h:1"}),
                "credentials.uri: scheme `http` is not supported",
            ),
            (
                json!({"uri": "rediss://h:1", "tls": false}),
                "credentials.tls: contradicts the scheme",
            ),
            (
                json!({"uri": "redis://h:1/3", "cluster_mode": true}),
                "a Redis cluster has only database 0",
            ),
        ];
        for (credentials, expected) in cases {
            has(
                &problems_of(&[ext(doc.clone()), ("VCAP_SERVICES", vcap(credentials))]),
                expected,
            );
        }
    }

    #[test]
    fn inconsistent_combinations() {
        let doc =
            json!({"instanceName": "my-redis", "storageType": "redis", "sessionSecret": SECRET});
        let bound = ("VCAP_SERVICES", vcap(json!({"hostname": "h", "port": 1})));
        has(
            &problems_of(&[
                ext(doc.clone()),
                bound.clone(),
                (REDIS_URL, "redis://h".into()),
            ]),
            "env REDIS_URL: $: conflicts with EXT_SESSION_MGT `instanceName` `my-redis`",
        );
        has(
            &problems_of(&[
                ext(doc.clone()),
                bound.clone(),
                (SESSION_SECRET, SECRET.into()),
            ]),
            "env XSROUTER_SESSION_SECRET: $: conflicts with EXT_SESSION_MGT `sessionSecret`",
        );
        has(
            &problems_of(&[(SESSION_SECRET, SECRET.into())]),
            "env XSROUTER_SESSION_SECRET: $: is set, but neither",
        );
        has(
            &problems_of(&[(REDIS_URL, "redis://h".into())]),
            "env REDIS_URL: $: sessions in Redis are encrypted: set XSROUTER_SESSION_SECRET",
        );
        has(
            &problems_of(&[
                (REDIS_URL, "redis://h".into()),
                (SESSION_SECRET, "short".into()),
            ]),
            "env XSROUTER_SESSION_SECRET: $: is too short",
        );
        has(
            &problems_of(&[
                (REDIS_URL, "redis://h/x".into()),
                (SESSION_SECRET, SECRET.into()),
            ]),
            "must be a database number",
        );
        has(
            &problems_of(&[
                (REDIS_URL, "not a url".into()),
                (SESSION_SECRET, SECRET.into()),
            ]),
            "env REDIS_URL: $: is not a URL",
        );
        let mut tls_only = doc.clone();
        tls_only["skipCertHostnameValidation"] = true.into();
        has(
            &problems_of(&[ext(tls_only), bound]),
            "$.skipCertHostnameValidation: only applies to TLS connections",
        );
    }

    #[test]
    fn problems_never_show_secrets() {
        let problems = problems_of(&[
            ext(
                json!({"instanceName": "my-redis", "storageType": "redis", "sessionSecret": "tiny-secret-value"}),
            ),
            (
                "VCAP_SERVICES",
                vcap(json!({"uri": "redis://u:hunter2@h:1/x"})),
            ),
        ]);
        let all = problems.join("\n");
        assert!(
            !all.contains("tiny-secret-value") && !all.contains("hunter2"),
            "{all}"
        );
    }
}
