//! A token as the token service issued it, and what may be requested.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::secret::Secret;

/// An OAuth grant.
#[derive(Debug, Clone)]
pub enum Grant {
    ClientCredentials,
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` with the user's token as assertion.
    JwtBearer {
        assertion: Secret,
    },
    RefreshToken {
        refresh_token: Secret,
    },
    /// The login callback's code, with the redirect URI and PKCE verifier of the login.
    AuthorizationCode {
        code: Secret,
        redirect_uri: String,
        code_verifier: Option<Secret>,
    },
}

impl Grant {
    pub fn name(&self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::JwtBearer { .. } => "urn:ietf:params:oauth:grant-type:jwt-bearer",
            Self::RefreshToken { .. } => "refresh_token",
            Self::AuthorizationCode { .. } => "authorization_code",
        }
    }

    /// The user-specific input of the grant, whose hash keys the cache.
    pub fn subject(&self) -> Option<&Secret> {
        match self {
            Self::ClientCredentials => None,
            Self::JwtBearer { assertion } => Some(assertion),
            Self::RefreshToken { refresh_token } => Some(refresh_token),
            Self::AuthorizationCode { code, .. } => Some(code),
        }
    }
}

/// One token request: the grant and what the token is for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub grant: Grant,
    pub scope: Option<String>,
    /// Sent as `audience` (Destination service `audience`).
    pub audience: Option<String>,
    /// IAS `resource`, e.g. `urn:sap:identity:application:provider:name:<dependency>`.
    pub resource: Option<String>,
}

impl TokenRequest {
    /// A request for `grant` with no scope, audience or resource.
    pub fn new(grant: Grant) -> Self {
        Self {
            grant,
            scope: None,
            audience: None,
            resource: None,
        }
    }
}

/// An issued token.
#[derive(Debug, Clone)]
pub struct Token {
    pub access_token: Secret,
    pub token_type: String,
    pub refresh_token: Option<Secret>,
    pub id_token: Option<Secret>,
    pub issued_at: Instant,
    /// How long the token service said the token lives.
    pub lifetime: Duration,
    /// How long the cache hands it out: until shortly before it expires.
    pub cache_for: Duration,
    /// `Bearer <access token>`, built once: a cached token is sent many times.
    bearer: Secret,
}

impl Token {
    pub fn new(
        access_token: Secret,
        token_type: String,
        refresh_token: Option<Secret>,
        id_token: Option<Secret>,
        lifetime: Duration,
        cache_for: Duration,
    ) -> Self {
        Self {
            bearer: Secret::new(format!("Bearer {}", access_token.expose())),
            access_token,
            token_type,
            refresh_token,
            id_token,
            issued_at: Instant::now(),
            lifetime,
            cache_for,
        }
    }

    /// Whether the cache would still hand it out.
    pub fn fresh(&self) -> bool {
        self.issued_at.elapsed() < self.cache_for
    }

    /// The `Authorization` header value (`Bearer <token>`).
    pub fn authorization(&self) -> Secret {
        self.bearer.clone()
    }
}

/// The JSON a token endpoint answers with (RFC 6749 §5.1).
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<serde_json::Value>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
}

/// An OAuth error answer (RFC 6749 §5.2).
#[derive(Debug, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
}

impl TokenResponse {
    /// Lifetime from `expires_in`, else from the JWT's `exp` claim.
    pub fn lifetime(&self, now_unix: i64) -> Option<Duration> {
        let from_field = match &self.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        from_field
            .or_else(|| {
                jwt_exp(&self.access_token).map(|exp| exp.saturating_sub(now_unix).max(0) as u64)
            })
            .map(Duration::from_secs)
    }
}

/// The `exp` claim of a JWT, without verifying it (the token service is trusted for its own token).
pub fn jwt_exp(token: &str) -> Option<i64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}
