//! JWT validation for tokens from XSUAA or IAS: RS256 signature against the service's keys
//! (JWKS, fetched once and cached; fetched again when a token names an unknown `kid`), expiry,
//! issuer and audience. The claims are checked before any key is fetched.
//!
//! A token whose signature verified is remembered (by its SHA-256, for [`VERIFIED_TTL`]) with its
//! claims, so a client sending the same bearer token on every request pays for the RSA
//! verification once; expiry, issuer and audience are still checked on every use.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tokio::sync::RwLock;

use crate::secret::Secret;

/// Clock skew tolerated on `nbf` (a token issued a moment "in the future"). `exp` is strict:
/// an expired token is never accepted.
const LEEWAY: i64 = 30;
/// Shortest time between two JWKS fetches triggered by unknown key ids.
const REFETCH_PAUSE: Duration = Duration::from_secs(10);
/// How long a verified signature is remembered (bounded, so that a key the token service drops
/// stops being honoured soon).
const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// How many verified tokens are remembered.
const VERIFIED_CAPACITY: u64 = 10_000;

/// Why a token was refused. Never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not a JWT")]
    Malformed,
    #[error("unsupported algorithm `{0}`")]
    Algorithm(String),
    #[error("no key `{0}` at the token service")]
    UnknownKey(String),
    #[error("signature invalid")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong issuer")]
    Issuer,
    #[error("token not meant for this application (audience)")]
    Audience,
    #[error("token keys unavailable: {0}")]
    Keys(String),
}

/// What a valid token must match.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// Accepted `iss` values (prefix match on the token service URL).
    pub issuer_prefixes: Vec<String>,
    /// The token's `aud` (or `cid`/`azp`) must contain one of these, or a scope must start
    /// with `<xsappname>.`.
    pub audiences: Vec<String>,
    pub xsappname: Option<String>,
}

/// Validates tokens of one token service.
#[derive(Debug)]
pub struct JwtValidator {
    jwks_url: String,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    expect: Expectations,
    /// Claims of tokens whose signature verified, by the token's SHA-256.
    verified: moka::future::Cache<[u8; 32], Arc<Value>>,
}

#[derive(Debug, Default)]
struct KeySet {
    keys: HashMap<String, Arc<RsaKey>>,
    fetched_at: Option<tokio::time::Instant>,
}

#[derive(Debug)]
struct RsaKey {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl JwtValidator {
    pub fn new(jwks_url: String, http: reqwest::Client, expect: Expectations) -> Self {
        Self {
            jwks_url,
            http,
            keys: RwLock::new(KeySet::default()),
            expect,
            verified: moka::future::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_live(VERIFIED_TTL)
                .build(),
        }
    }

    /// The claims of a valid token.
    pub async fn validate(&self, token: &Secret, now: i64) -> Result<Arc<Value>, JwtError> {
        let fingerprint = *token.fingerprint();
        if let Some(claims) = self.verified.get(&fingerprint).await {
            self.check_claims(&claims, now)?;
            return Ok(claims);
        }
        let claims = Arc::new(self.verify(token.expose(), now).await?);
        self.verified.insert(fingerprint, claims.clone()).await;
        Ok(claims)
    }

    /// The full check: structure, algorithm, claims, then the signature.
    async fn verify(&self, token: &str, now: i64) -> Result<Value, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Value = decode_json(header)?;
        let claims: Value = decode_json(payload)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| JwtError::Malformed)?;
        let alg = header["alg"].as_str().unwrap_or_default();
        if alg != "RS256" {
            return Err(JwtError::Algorithm(alg.to_owned()));
        }
        // The claims first: a token that could not pass anyway (another tenant's issuer, expired)
        // never makes the validator fetch keys.
        self.check_claims(&claims, now)?;
        let kid = header["kid"].as_str().unwrap_or_default().to_owned();
        let key = self.key(&kid).await?;
        let signed = &token.as_bytes()[..header_and_payload_len(token)];
        ring::signature::RsaPublicKeyComponents {
            n: &key.n,
            e: &key.e,
        }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            signed,
            &signature,
        )
        .map_err(|_| JwtError::Signature)?;
        Ok(claims)
    }

    fn check_claims(&self, claims: &Value, now: i64) -> Result<(), JwtError> {
        match claims["exp"].as_i64() {
            Some(exp) if exp > now => {}
            _ => return Err(JwtError::Expired),
        }
        if let Some(nbf) = claims["nbf"].as_i64()
            && nbf - LEEWAY > now
        {
            return Err(JwtError::NotYetValid);
        }
        let iss = claims["iss"].as_str().unwrap_or_default();
        if !self
            .expect
            .issuer_prefixes
            .iter()
            .any(|p| issuer_matches(iss, p))
        {
            return Err(JwtError::Issuer);
        }
        let mut audiences: Vec<&str> = match &claims["aud"] {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        audiences.extend(["cid", "azp"].iter().filter_map(|k| claims[*k].as_str()));
        let audience_ok = audiences
            .iter()
            .any(|a| self.expect.audiences.iter().any(|x| x == a));
        let scope_ok = self.expect.xsappname.as_deref().is_some_and(|app| {
            scopes(claims).iter().any(|s| {
                s.strip_prefix(app)
                    .is_some_and(|rest| rest.starts_with('.'))
            })
        });
        if audience_ok || scope_ok {
            Ok(())
        } else {
            Err(JwtError::Audience)
        }
    }

    async fn key(&self, kid: &str) -> Result<Arc<RsaKey>, JwtError> {
        {
            let set = self.keys.read().await;
            if let Some(key) = set.keys.get(kid) {
                return Ok(key.clone());
            }
            if set.fetched_at.is_some_and(|t| t.elapsed() < REFETCH_PAUSE) {
                return Err(JwtError::UnknownKey(kid.to_owned()));
            }
        }
        let mut set = self.keys.write().await;
        // Another task may have fetched while this one waited for the lock.
        if let Some(key) = set.keys.get(kid) {
            return Ok(key.clone());
        }
        if set.fetched_at.is_none_or(|t| t.elapsed() >= REFETCH_PAUSE) {
            set.keys = self.fetch().await?;
            set.fetched_at = Some(tokio::time::Instant::now());
        }
        set.keys
            .get(kid)
            .cloned()
            .ok_or_else(|| JwtError::UnknownKey(kid.to_owned()))
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<RsaKey>>, JwtError> {
        let response = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .map_err(|e| JwtError::Keys(e.to_string()))?;
        if !response.status().is_success() {
            return Err(JwtError::Keys(format!(
                "{} answered {}",
                self.jwks_url,
                response.status()
            )));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| JwtError::Keys(e.to_string()))?;
        let doc: Value =
            serde_json::from_slice(&bytes).map_err(|e| JwtError::Keys(e.to_string()))?;
        let mut keys = HashMap::new();
        for key in doc["keys"].as_array().into_iter().flatten() {
            if key["kty"] != "RSA" {
                continue;
            }
            let (Some(n), Some(e)) = (key["n"].as_str(), key["e"].as_str()) else {
                continue;
            };
            let (Ok(n), Ok(e)) = (
                URL_SAFE_NO_PAD.decode(n.trim_end_matches('=')),
                URL_SAFE_NO_PAD.decode(e.trim_end_matches('=')),
            ) else {
                continue;
            };
            let kid = key["kid"].as_str().unwrap_or_default().to_owned();
            keys.insert(kid, Arc::new(RsaKey { n, e }));
        }
        Ok(keys)
    }
}

/// Whether `iss` is the token service URL `base` or a URL below it (`<base>/oauth/token`): a host
/// that merely starts like it (`<base>.evil.example`) is another issuer.
fn issuer_matches(iss: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    iss.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The scopes of a token (`scope` as array or space-separated string).
pub fn scopes(claims: &Value) -> Vec<&str> {
    match &claims["scope"] {
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        Value::String(s) => s.split_whitespace().collect(),
        _ => Vec::new(),
    }
}

fn decode_json(part: &str) -> Result<Value, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator(xsappname: Option<&str>) -> JwtValidator {
        crate::install_crypto_provider();
        JwtValidator::new(
            "http://127.0.0.1:9/token_keys".into(),
            reqwest::Client::new(),
            Expectations {
                issuer_prefixes: vec!["https://uaa.example".into()],
                audiences: vec!["sb-app".into()],
                xsappname: xsappname.map(str::to_owned),
            },
        )
    }

    #[test]
    fn claims_checks() {
        let v = validator(Some("app!t1"));
        let ok = serde_json::json!({"exp": 2000, "iss": "https://uaa.example/oauth/token", "aud": ["sb-app"]});
        assert_eq!(v.check_claims(&ok, 1000), Ok(()));
        assert_eq!(v.check_claims(&ok, 3000), Err(JwtError::Expired));
        let wrong_iss = serde_json::json!({"exp": 2000, "iss": "https://evil.example/oauth/token", "aud": ["sb-app"]});
        assert_eq!(v.check_claims(&wrong_iss, 1000), Err(JwtError::Issuer));
        // Another host that only starts like the token service's (a tenant's look-alike).
        for iss in [
            "https://uaa.example.evil.example/oauth/token",
            "https://uaa.examplex/oauth/token",
            "https://uaa.example:8443/oauth/token",
        ] {
            let look_alike = serde_json::json!({"exp": 2000, "iss": iss, "aud": ["sb-app"]});
            assert_eq!(
                v.check_claims(&look_alike, 1000),
                Err(JwtError::Issuer),
                "{iss}"
            );
        }
        let other_aud = serde_json::json!({"exp": 2000, "iss": "https://uaa.example/x", "aud": ["other"], "cid": "other"});
        assert_eq!(v.check_claims(&other_aud, 1000), Err(JwtError::Audience));
        let by_scope = serde_json::json!({"exp": 2000, "iss": "https://uaa.example/x", "aud": [], "scope": ["app!t1.Read"]});
        assert_eq!(v.check_claims(&by_scope, 1000), Ok(()));
        let prefix_trick = serde_json::json!({"exp": 2000, "iss": "https://uaa.example/x", "scope": ["app!t1x.Read"]});
        assert_eq!(v.check_claims(&prefix_trick, 1000), Err(JwtError::Audience));
    }

    #[tokio::test]
    async fn remembered_tokens_skip_the_signature_but_never_the_expiry() {
        let v = validator(None);
        let token = Secret::new("remembered.token.value");
        let digest = ring::digest::digest(&ring::digest::SHA256, token.expose().as_bytes());
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(digest.as_ref());
        let claims = Arc::new(
            serde_json::json!({"exp": 2000, "iss": "https://uaa.example/oauth/token", "aud": ["sb-app"]}),
        );
        v.verified.insert(fingerprint, claims.clone()).await;
        // The keys are unreachable: only the remembered verification can pass it.
        assert_eq!(v.validate(&token, 1000).await, Ok(claims));
        assert_eq!(v.validate(&token, 2000).await, Err(JwtError::Expired));
        assert_eq!(
            v.validate(&Secret::new("other.token.value"), 1000).await,
            Err(JwtError::Malformed),
            "a token not remembered is checked in full"
        );
    }

    #[tokio::test]
    async fn malformed_and_unsigned_tokens_are_refused() {
        let v = validator(None);
        assert_eq!(
            v.validate(&Secret::new("abc"), 0).await,
            Err(JwtError::Malformed)
        );
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode("{}")
        );
        assert_eq!(
            v.validate(&Secret::new(none), 0).await,
            Err(JwtError::Algorithm("none".into()))
        );
    }
}
