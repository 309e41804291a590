//! ES256 JSON Web Tokens for the demo token service: signing with a key made at start-up, the
//! key's JWK for `/token_keys`, and verification for the demo backend.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde_json::{Value, json};

/// The key id the demo token service publishes.
pub const KEY_ID: &str = "xsrouter-demo-key";

/// Why a key could not be made or a token not signed.
#[derive(Debug, thiserror::Error)]
#[error("JWT signing key: {0}")]
pub struct SigningError(String);

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("not a JWT")]
    Malformed,
    #[error("the signature does not verify with the demo token service's key")]
    Signature,
}

/// The token service's signing key.
pub struct JwtSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

/// The public half, for whoever checks the tokens.
#[derive(Clone)]
pub struct JwtVerifier {
    public_key: Vec<u8>,
}

impl JwtSigner {
    pub fn generate() -> Result<Self, SigningError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| SigningError("cannot generate a P-256 key".into()))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| SigningError(e.to_string()))?;
        Ok(Self { key, rng })
    }

    /// `header.claims.signature`, with `alg: ES256` and the key id.
    pub fn sign(&self, claims: &Value, jku: &str) -> Result<String, SigningError> {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": KEY_ID, "jku": jku});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| SigningError("signing failed".into()))?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    pub fn verifier(&self) -> JwtVerifier {
        JwtVerifier {
            public_key: self.key.public_key().as_ref().to_vec(),
        }
    }

    /// The public key as a JWK set (`/token_keys`).
    pub fn jwks(&self) -> Value {
        // An uncompressed P-256 point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = self.key.public_key().as_ref();
        let coordinates = point.get(1..).unwrap_or_default();
        let (x, y) = coordinates.split_at(coordinates.len() / 2);
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": KEY_ID,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        }]})
    }
}

impl JwtVerifier {
    /// The claims of `token` when its signature verifies.
    pub fn verify(&self, token: &str) -> Result<Value, VerifyError> {
        let (input, signature) = token.rsplit_once('.').ok_or(VerifyError::Malformed)?;
        let payload = input.split_once('.').ok_or(VerifyError::Malformed)?.1;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| VerifyError::Malformed)?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public_key)
            .verify(input.as_bytes(), &signature)
            .map_err(|_| VerifyError::Signature)?;
        let claims = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| VerifyError::Malformed)?;
        serde_json::from_slice(&claims).map_err(|_| VerifyError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not() {
        let signer = JwtSigner::generate().expect("key");
        let token = signer
            .sign(&json!({"sub": "demo"}), "https://127.0.0.1/token_keys")
            .expect("sign");
        assert_eq!(
            signer.verifier().verify(&token).expect("verifies")["sub"],
            "demo"
        );
        let other = JwtSigner::generate().expect("key");
        assert_eq!(other.verifier().verify(&token), Err(VerifyError::Signature));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"sub":"admin"}"#);
        parts[1] = &forged;
        assert_eq!(
            signer.verifier().verify(&parts.join(".")),
            Err(VerifyError::Signature)
        );
        assert_eq!(signer.verifier().verify("abc"), Err(VerifyError::Malformed));
        let jwks = signer.jwks();
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwks["keys"][0]["x"].as_str().expect("x"))
                .expect("b64")
                .len(),
            32
        );
    }
}
