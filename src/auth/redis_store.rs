//! Sessions in Redis, shared by every router instance that uses the same Redis and the same
//! `sessionSecret`.
//!
//! What is stored, and how:
//! - **Key**: `xsrouter:session:{<hex HMAC-SHA256(name key, session id)>}`. The name key is
//!   derived from the secret, so the keys in a Redis dump do not reveal session ids (which are
//!   what a browser presents). The braces make it a cluster hash tag, so the logout marker
//!   `xsrouter:ended:{...}` of the same session lives in the same slot.
//! - **Value**: `0x01 ‖ nonce (12) ‖ AES-256-GCM(deflate(JSON(session)))`, sealed with a key
//!   derived from the secret by HKDF-SHA256, a random nonce per write, and the session id bound
//!   as additional authenticated data: a stolen dump yields no tokens, and a record cannot be
//!   moved to another session id. A record that does not open (another secret, tampering) is
//!   treated as no session.
//! - **Expiry**: the session idle timeout as a `PX` TTL, refreshed by every load (sliding).
//!
//! Nothing is cached locally, so a change or a logout on one instance is what the next request
//! on any instance sees. A logout leaves a marker for one idle timeout that stops a request
//! still in flight elsewhere from writing the ended session back.
//!
//! Every operation is a small Lua script (one round trip, atomic, cluster-safe). Failures are
//! retried — the n-th retry after n × `backOffMultiplier` — until `defaultRetryTimeout` is spent;
//! then the store answers [`StoreError`] (the request gets a 503). The connection is re-established
//! in the background, so the router recovers on its own when Redis is back.

use std::fmt;
use std::future::Future;
use std::io::{Read, Write};
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{
    ConnectionAddr, ConnectionInfo, FromRedisValue, IntoConnectionInfo, RedisConnectionInfo,
    RedisError, Script, ScriptInvocation, TlsCertificates,
};
use ring::rand::SecureRandom;
use ring::{aead, hkdf, hmac};
use rustls::pki_types::CertificateDer;

use super::session::{Session, SessionStore, StoreError};
use crate::config::session_store::{RedisEndpoint, SessionStoreSettings};

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const HKDF_SALT: &[u8] = b"xsrouter session store";
const ENCRYPTION_INFO: &[u8] = b"xsrouter session encryption v1";
const NAMING_INFO: &[u8] = b"xsrouter session key names v1";
const AAD_PREFIX: &[u8] = b"xsrouter session v1\0";
/// Sessions larger than this after decompression are refused (a guard, not a limit in practice).
const MAX_SESSION_BYTES: u64 = 16 * 1024 * 1024;
/// Longer "session ids" are not ours: they are refused without asking Redis.
const MAX_ID_LEN: usize = 256;
/// One attempt may always take this long, even when the retry budget is smaller.
const MIN_ATTEMPT_TIME: Duration = Duration::from_secs(1);
/// Shortest pause between retries (`backOffMultiplier` 0 does not mean a busy loop).
const MIN_RETRY_PAUSE: Duration = Duration::from_millis(5);
/// How long establishing one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Returns the record and restarts its idle timer. KEYS: session. ARGV: ttl ms.
const LOAD_SCRIPT: &str = r"
local value = redis.call('GET', KEYS[1])
if value then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return value
";
/// Returns the record and removes it, in one step (a record taken once, e.g. a login in
/// progress). KEYS: record.
const TAKE_SCRIPT: &str = r"
local value = redis.call('GET', KEYS[1])
if value then redis.call('DEL', KEYS[1]) end
return value
";
/// Writes the record unless the session was ended. KEYS: session, marker. ARGV: value, ttl ms.
const SAVE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";
/// Removes the record and marks the session ended. KEYS: session, marker. ARGV: ttl ms.
const DELETE_SCRIPT: &str = r"
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return 1
";

/// Why a stored session could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    #[error("the session secret yields no key")]
    KeyDerivation,
    #[error("no random nonce available")]
    Random,
    #[error("session could not be encoded: {0}")]
    Encode(String),
    #[error("stored session has an unknown format")]
    Format,
    #[error("stored session does not open with this secret and session id")]
    Open,
    #[error("stored session is not valid after decryption: {0}")]
    Decode(String),
}

/// Encryption and key naming for sessions, both derived from the session secret.
pub struct SessionCipher {
    key: aead::LessSafeKey,
    names: hmac::Key,
    rng: ring::rand::SystemRandom,
}

impl fmt::Debug for SessionCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionCipher(***)")
    }
}

impl SessionCipher {
    pub fn new(secret: &str) -> Result<Self, CipherError> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret.as_bytes());
        let encryption = prk
            .expand(&[ENCRYPTION_INFO], &aead::AES_256_GCM)
            .map_err(|_| CipherError::KeyDerivation)?;
        let naming = prk
            .expand(&[NAMING_INFO], hmac::HMAC_SHA256)
            .map_err(|_| CipherError::KeyDerivation)?;
        Ok(Self {
            key: aead::LessSafeKey::new(aead::UnboundKey::from(encryption)),
            names: hmac::Key::from(naming),
            rng: ring::rand::SystemRandom::new(),
        })
    }

    fn tag(&self, id: &str) -> String {
        let mac = hmac::sign(&self.names, id.as_bytes());
        mac.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The Redis key of a session.
    pub fn redis_key(&self, id: &str) -> String {
        format!("xsrouter:session:{{{}}}", self.tag(id))
    }

    /// The key that marks a session as ended (logged out).
    pub fn ended_key(&self, id: &str) -> String {
        format!("xsrouter:ended:{{{}}}", self.tag(id))
    }

    fn aad(id: &str) -> Vec<u8> {
        [AAD_PREFIX, id.as_bytes()].concat()
    }

    /// Compresses, then encrypts a session for its id.
    pub fn seal(&self, session: &Session) -> Result<Vec<u8>, CipherError> {
        let json = serde_json::to_vec(session).map_err(|e| CipherError::Encode(e.to_string()))?;
        let mut deflate = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(json.len() / 2 + 64),
            flate2::Compression::default(),
        );
        deflate
            .write_all(&json)
            .map_err(|e| CipherError::Encode(e.to_string()))?;
        let mut sealed = deflate
            .finish()
            .map_err(|e| CipherError::Encode(e.to_string()))?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| CipherError::Random)?;
        self.key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(Self::aad(&session.id)),
                &mut sealed,
            )
            .map_err(|_| CipherError::Encode("encryption failed".to_owned()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts and decompresses the record of session `id`.
    pub fn open(&self, id: &str, record: &[u8]) -> Result<Session, CipherError> {
        let (&version, rest) = record.split_first().ok_or(CipherError::Format)?;
        if version != FORMAT_V1 || rest.len() < NONCE_LEN + aead::AES_256_GCM.tag_len() {
            return Err(CipherError::Format);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce =
            aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| CipherError::Format)?;
        let mut sealed = sealed.to_vec();
        let compressed = self
            .key
            .open_in_place(nonce, aead::Aad::from(Self::aad(id)), &mut sealed)
            .map_err(|_| CipherError::Open)?;
        let mut json = Vec::new();
        flate2::read::DeflateDecoder::new(&compressed[..])
            .take(MAX_SESSION_BYTES + 1)
            .read_to_end(&mut json)
            .map_err(|e| CipherError::Decode(e.to_string()))?;
        if json.len() as u64 > MAX_SESSION_BYTES {
            return Err(CipherError::Decode("too large".to_owned()));
        }
        let session: Session =
            serde_json::from_slice(&json).map_err(|e| CipherError::Decode(e.to_string()))?;
        if session.id != id {
            return Err(CipherError::Decode("session id mismatch".to_owned()));
        }
        Ok(session)
    }
}

/// How long store operations retry, and how they space their retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `defaultRetryTimeout`: the time one operation may spend retrying.
    pub budget: Duration,
    /// `backOffMultiplier`: retry n waits n × this.
    pub step: Duration,
}

impl RetryPolicy {
    /// The pause before retry `n` (1-based).
    pub fn pause(&self, n: u32) -> Duration {
        self.step
            .saturating_mul(n)
            .max(MIN_RETRY_PAUSE)
            .min(self.budget.max(MIN_RETRY_PAUSE))
    }

    /// Runs `op` until it succeeds, fails for good, or the budget is spent. `op` gets the
    /// attempt number (1-based).
    async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, (u32, String)>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let deadline = tokio::time::Instant::now() + self.budget;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let limit = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(MIN_ATTEMPT_TIME);
            let reason = match tokio::time::timeout(limit, op(attempt)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) if !retriable(&err) => return Err((attempt, err.to_string())),
                Ok(Err(err)) => err.to_string(),
                Err(_) => format!("no answer within {} ms", limit.as_millis()),
            };
            let pause = self.pause(attempt);
            if tokio::time::Instant::now() + pause > deadline {
                return Err((attempt, reason));
            }
            tracing::debug!(attempt, error = %reason, "Redis operation failed; retrying");
            tokio::time::sleep(pause).await;
        }
    }
}

/// Errors worth another attempt: connections, timeouts, a server loading or failing over.
fn retriable(err: &RedisError) -> bool {
    use redis::{ErrorKind, RetryMethod, ServerErrorKind};
    err.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || !matches!(err.retry_method(), RetryMethod::NoRetry)
}

/// A connection to one server (reconnecting) or to a cluster.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    async fn invoke<T: FromRedisValue>(
        &mut self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        match self {
            Connection::Single(c) => invocation.invoke_async(c).await,
            Connection::Cluster(c) => invocation.invoke_async(c).await,
        }
    }

    async fn ping(&mut self) -> Result<(), RedisError> {
        let ping = redis::cmd("PING");
        match self {
            Connection::Single(c) => ping.query_async::<()>(c).await,
            Connection::Cluster(c) => ping.query_async::<()>(c).await,
        }
    }
}

/// The Redis session store.
pub struct RedisStore {
    connection: Connection,
    cipher: SessionCipher,
    instance: String,
    ttl_ms: u64,
    retry: RetryPolicy,
    load: Script,
    take: Script,
    save: Script,
    delete: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("instance", &self.instance)
            .field("ttl_ms", &self.ttl_ms)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// The connection settings for one endpoint.
fn connection_info(endpoint: &RedisEndpoint) -> Result<ConnectionInfo, RedisError> {
    let addr = if endpoint.tls {
        ConnectionAddr::TcpTls {
            host: endpoint.host.clone(),
            port: endpoint.port,
            insecure: !endpoint.verify_certificate,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(endpoint.host.clone(), endpoint.port)
    };
    let mut redis = RedisConnectionInfo::default().set_db(endpoint.db);
    if let Some(username) = &endpoint.username {
        redis = redis.set_username(username);
    }
    if let Some(password) = &endpoint.password {
        redis = redis.set_password(password.expose());
    }
    Ok(addr.into_connection_info()?.set_redis_settings(redis))
}

/// What a TLS connection to Redis trusts: the system's CA certificates plus `XS_CACERT_PATH`.
fn trusted_roots(extra: &[CertificateDer<'static>]) -> TlsCertificates {
    use base64::Engine;
    let native = rustls_native_certs::load_native_certs();
    if let Some(err) = native.errors.first() {
        tracing::debug!(error = %err, "some system CA certificates could not be read");
    }
    let mut pem = String::new();
    for cert in native.certs.iter().chain(extra) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.into_bytes()),
    }
}

/// `skipCertHostnameValidation` (without `rejectUnauthorized: false`, which skips every check).
fn skips_hostname_check(endpoint: &RedisEndpoint) -> bool {
    endpoint.tls && endpoint.verify_certificate && !endpoint.verify_hostname
}

/// The client for one server: TLS with the trusted roots, and optionally without the check
/// that the certificate names the host (`skipCertHostnameValidation`).
fn single_client(
    endpoint: &RedisEndpoint,
    info: ConnectionInfo,
    roots: &[CertificateDer<'static>],
) -> Result<redis::Client, RedisError> {
    if !endpoint.tls {
        return redis::Client::open(info);
    }
    let client = redis::Client::build_with_tls(info, trusted_roots(roots))?;
    if !skips_hostname_check(endpoint) {
        return Ok(client);
    }
    let info = client.get_connection_info().clone();
    let mut addr = info.addr().clone();
    addr.set_danger_accept_invalid_hostnames(true);
    redis::Client::open(info.set_addr(addr))
}

async fn connect(
    endpoint: &RedisEndpoint,
    roots: &[CertificateDer<'static>],
    attempt_time: Duration,
) -> Result<Connection, RedisError> {
    let info = connection_info(endpoint)?;
    let mut connection = if endpoint.cluster {
        let mut builder = redis::cluster::ClusterClient::builder(vec![info])
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(attempt_time)
            .retries(1);
        if endpoint.tls {
            builder = builder.certs(trusted_roots(roots));
            if skips_hostname_check(endpoint) {
                builder = builder.danger_accept_invalid_hostnames(true);
            }
        }
        Connection::Cluster(builder.build()?.get_async_connection().await?)
    } else {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(attempt_time))
            // One connection attempt per reconnect: the store's own retries pace the rest.
            .set_number_of_retries(0);
        let client = single_client(endpoint, info, roots)?;
        Connection::Single(ConnectionManager::new_with_config(client, config).await?)
    };
    connection.ping().await?;
    Ok(connection)
}

impl RedisStore {
    /// Connects (retrying within the configured budget) and checks the server answers. Sessions
    /// expire after `idle` without use. TLS connections trust the system's CA certificates and
    /// `extra_roots` (`XS_CACERT_PATH`).
    pub async fn connect(
        settings: &SessionStoreSettings,
        idle: Duration,
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<Self, StoreError> {
        let endpoint = &settings.redis;
        let described = format!(
            "Redis instance `{}` at {}:{}{}",
            settings.instance,
            endpoint.host,
            endpoint.port,
            if endpoint.tls { " (TLS)" } else { "" }
        );
        let cipher = SessionCipher::new(settings.secret.expose())
            .map_err(|e| StoreError(format!("{described}: {e}")))?;
        let retry = RetryPolicy {
            budget: settings.retry_timeout,
            step: settings.backoff_step,
        };
        let attempt_time = settings.retry_timeout.max(MIN_ATTEMPT_TIME);
        let connection = retry
            .run(|_| connect(endpoint, extra_roots, attempt_time))
            .await
            .map_err(|(attempts, reason)| {
                StoreError(format!(
                    "cannot use {described} for sessions ({attempts} attempt(s)): {reason}"
                ))
            })?;
        tracing::info!(
            instance = %settings.instance,
            "sessions are kept in {described}, shared by every instance with the same secret"
        );
        Ok(Self {
            connection,
            cipher,
            instance: settings.instance.clone(),
            ttl_ms: u64::try_from(idle.as_millis()).unwrap_or(u64::MAX).max(1),
            retry,
            load: Script::new(LOAD_SCRIPT),
            take: Script::new(TAKE_SCRIPT),
            save: Script::new(SAVE_SCRIPT),
            delete: Script::new(DELETE_SCRIPT),
        })
    }

    /// The cipher (and key naming) this store uses.
    pub fn cipher(&self) -> &SessionCipher {
        &self.cipher
    }

    /// Runs one script with retries; failures name the instance and the operation.
    async fn script<T: FromRedisValue>(
        &self,
        what: &str,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let invocation = &invocation;
        self.retry
            .run(|_| {
                let mut connection = self.connection.clone();
                async move { connection.invoke::<T>(invocation).await }
            })
            .await
            .map_err(|(attempts, reason)| {
                tracing::warn!(instance = %self.instance, attempts, error = %reason, "session {what} failed");
                StoreError(format!(
                    "Redis instance `{}`: session {what} failed after {attempts} attempt(s): {reason}",
                    self.instance
                ))
            })
    }

    async fn load_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        if id.len() > MAX_ID_LEN {
            return Ok(None);
        }
        let ttl = self.ttl_ms.to_string();
        let record: Option<Vec<u8>> = self
            .script(
                "load",
                &self.load,
                &[&self.cipher.redis_key(id)],
                &[ttl.as_bytes()],
            )
            .await?;
        Ok(self.open(id, record))
    }

    async fn take_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        if id.len() > MAX_ID_LEN {
            return Ok(None);
        }
        let record: Option<Vec<u8>> = self
            .script("take", &self.take, &[&self.cipher.redis_key(id)], &[])
            .await?;
        Ok(self.open(id, record))
    }

    fn open(&self, id: &str, record: Option<Vec<u8>>) -> Option<Session> {
        match self.cipher.open(id, &record?) {
            Ok(session) => Some(session),
            Err(err) => {
                // Another secret (a rotation) or tampering: the user logs in again.
                tracing::warn!(instance = %self.instance, error = %err, "stored session ignored");
                None
            }
        }
    }

    async fn save_session(&self, session: Session) -> Result<(), StoreError> {
        if session.id.len() > MAX_ID_LEN {
            return Err(StoreError("session id too long".to_owned()));
        }
        let record = self
            .cipher
            .seal(&session)
            .map_err(|e| StoreError(format!("Redis instance `{}`: {e}", self.instance)))?;
        let ttl = self.ttl_ms.to_string();
        let keys = [
            self.cipher.redis_key(&session.id),
            self.cipher.ended_key(&session.id),
        ];
        let written: i64 = self
            .script(
                "save",
                &self.save,
                &[&keys[0], &keys[1]],
                &[&record, ttl.as_bytes()],
            )
            .await?;
        if written == 0 {
            tracing::debug!("session ended elsewhere; not written back");
        }
        Ok(())
    }

    async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        if id.len() > MAX_ID_LEN {
            return Ok(());
        }
        let ttl = self.ttl_ms.to_string();
        let keys = [self.cipher.redis_key(id), self.cipher.ended_key(id)];
        self.script::<i64>(
            "delete",
            &self.delete,
            &[&keys[0], &keys[1]],
            &[ttl.as_bytes()],
        )
        .await
        .map(drop)
    }
}

impl SessionStore for RedisStore {
    fn load(&self, id: &str) -> BoxFuture<'_, Result<Option<Session>, StoreError>> {
        let id = id.to_owned();
        Box::pin(async move { self.load_session(&id).await })
    }

    fn save(&self, session: Session) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.save_session(session))
    }

    fn delete(&self, id: &str) -> BoxFuture<'_, Result<(), StoreError>> {
        let id = id.to_owned();
        Box::pin(async move { self.delete_session(&id).await })
    }

    fn take(&self, id: &str) -> BoxFuture<'_, Result<Option<Session>, StoreError>> {
        let id = id.to_owned();
        Box::pin(async move { self.take_session(&id).await })
    }

    fn shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::session::UserSession;
    use crate::secret::Secret;

    const SECRET: &str = "an-example-session-secret-of-sufficient-length";

    fn session() -> Session {
        let mut session = Session::new();
        let user: UserSession = serde_json::from_value(serde_json::json!({
            "access_token": "eyJhbGciOiJSUzI1NiJ9.access-token-of-alice.sig",
            "refresh_token": "refresh-token-of-alice", "id_token": null,
            "claims": {"user_name": "alice", "scope": ["openid"]},
            "expires_at": 1_900_000_000_i64, "provider": "Xsuaa"
        }))
        .expect("user session");
        session.user = Some(user);
        session.csrf_token = Some(Secret::new("csrf-token-value"));
        session
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[test]
    fn sealed_sessions_round_trip_and_hide_their_content() {
        let cipher = SessionCipher::new(SECRET).expect("cipher");
        let original = session();
        let sealed = cipher.seal(&original).expect("seal");
        for secret in [
            "alice",
            "access-token",
            "refresh-token",
            "csrf-token",
            &original.id,
        ] {
            assert!(!contains(&sealed, secret), "{secret} is visible");
        }
        let opened = cipher.open(&original.id, &sealed).expect("open");
        assert_eq!(opened.id, original.id);
        let user = opened.user.expect("user");
        assert_eq!(user.claims["user_name"], "alice");
        assert_eq!(
            user.access_token.expose(),
            "eyJhbGciOiJSUzI1NiJ9.access-token-of-alice.sig"
        );
        assert_eq!(
            opened.csrf_token.map(|t| t.expose().to_owned()).as_deref(),
            Some("csrf-token-value")
        );
        // A fresh nonce every time.
        assert_ne!(sealed, cipher.seal(&original).expect("seal"));
    }

    #[test]
    fn records_only_open_with_the_secret_and_for_their_session() {
        let cipher = SessionCipher::new(SECRET).expect("cipher");
        let original = session();
        let sealed = cipher.seal(&original).expect("seal");
        let other = SessionCipher::new("another-secret-of-sufficient-length-here").expect("cipher");
        assert!(matches!(
            other.open(&original.id, &sealed),
            Err(CipherError::Open)
        ));
        assert!(matches!(
            cipher.open("another-session-id", &sealed),
            Err(CipherError::Open)
        ));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(
            cipher.open(&original.id, &tampered),
            Err(CipherError::Open)
        ));
        let mut wrong_version = sealed;
        wrong_version[0] = 9;
        assert!(matches!(
            cipher.open(&original.id, &wrong_version),
            Err(CipherError::Format)
        ));
        assert!(matches!(
            cipher.open(&original.id, b""),
            Err(CipherError::Format)
        ));
    }

    #[test]
    fn sessions_are_compressed() {
        let cipher = SessionCipher::new(SECRET).expect("cipher");
        let mut big = session();
        let cookies = (0..200)
            .map(|i| {
                (
                    format!("cookie{i}"),
                    Secret::new(format!("value-{i}-{}", "x".repeat(40))),
                )
            })
            .collect();
        big.backend_cookies.insert("backend".to_owned(), cookies);
        let json = serde_json::to_vec(&big).expect("json");
        let sealed = cipher.seal(&big).expect("seal");
        assert!(
            sealed.len() * 4 < json.len(),
            "{} vs {}",
            sealed.len(),
            json.len()
        );
    }

    #[test]
    fn keys_do_not_reveal_session_ids_and_depend_on_the_secret() {
        let cipher = SessionCipher::new(SECRET).expect("cipher");
        let id = Session::new().id;
        let key = cipher.redis_key(&id);
        assert!(
            key.starts_with("xsrouter:session:{") && key.ends_with('}'),
            "{key}"
        );
        assert_eq!(key.len(), "xsrouter:session:{}".len() + 64);
        assert!(!key.contains(&id));
        assert_eq!(key, cipher.redis_key(&id), "stable");
        let other = SessionCipher::new("another-secret-of-sufficient-length-here").expect("cipher");
        assert_ne!(key, other.redis_key(&id));
        let ended = cipher.ended_key(&id);
        assert_eq!(
            ended.split_once('{').map(|p| p.1),
            key.split_once('{').map(|p| p.1),
            "same hash tag"
        );
    }

    #[test]
    fn retry_pauses_grow_linearly_within_the_budget() {
        let policy = RetryPolicy {
            budget: Duration::from_millis(2000),
            step: Duration::from_millis(50),
        };
        assert_eq!(policy.pause(1), Duration::from_millis(50));
        assert_eq!(policy.pause(4), Duration::from_millis(200));
        assert_eq!(policy.pause(100), Duration::from_millis(2000));
        let zero = RetryPolicy {
            budget: Duration::ZERO,
            step: Duration::ZERO,
        };
        assert_eq!(zero.pause(1), MIN_RETRY_PAUSE);
    }

    #[tokio::test]
    async fn retries_stop_when_the_budget_is_spent() {
        let policy = RetryPolicy {
            budget: Duration::from_millis(300),
            step: Duration::from_millis(20),
        };
        let started = std::time::Instant::now();
        let refused = || {
            RedisError::from(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            ))
        };
        let result: Result<(), _> = policy.run(|_| async { Err(refused()) }).await;
        let (attempts, reason) = result.expect_err("fails");
        let elapsed = started.elapsed();
        assert!(attempts >= 3, "{attempts} attempts");
        assert!(reason.contains("refused"), "{reason}");
        assert!(elapsed <= Duration::from_millis(600), "{elapsed:?}");
        // Success after failures, and no retries for errors that will not go away.
        let ok = policy
            .run(|n| async move { if n < 3 { Err(refused()) } else { Ok(n) } })
            .await
            .expect("third attempt");
        assert_eq!(ok, 3);
        let wrong_type = RedisError::from((redis::ErrorKind::UnexpectedReturnType, "wrong type"));
        let (attempts, _) = policy
            .run(|_| {
                let err = wrong_type.clone();
                async move { Err::<(), _>(err) }
            })
            .await
            .expect_err("fails");
        assert_eq!(attempts, 1);
    }
}
