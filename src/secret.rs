//! A string that must never reach a log: tokens, client secrets, passwords. Its `Debug` and
//! `Display` print a mask; the value is only available through [`Secret::expose`].

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

/// Cheap to clone: clones share the value and its [`Secret::fingerprint`].
#[derive(Clone)]
pub struct Secret(Arc<Shared>);

struct Shared {
    value: Box<str>,
    fingerprint: OnceLock<[u8; 32]>,
    header: OnceLock<Option<http::HeaderValue>>,
}

impl Secret {
    pub fn new(value: impl Into<Box<str>>) -> Self {
        Self(Arc::new(Shared {
            value: value.into(),
            fingerprint: OnceLock::new(),
            header: OnceLock::new(),
        }))
    }

    /// The secret value; use it only where it is sent, never where it is logged.
    pub fn expose(&self) -> &str {
        &self.0.value
    }

    /// SHA-256 of the value: what caches key on (verified JWTs, tokens exchanged for a user's
    /// token) instead of the secret itself. Computed once, on first use, for this secret and
    /// all its clones: a request's user token is hashed once however many caches it meets.
    pub fn fingerprint(&self) -> &[u8; 32] {
        self.0.fingerprint.get_or_init(|| {
            let digest = ring::digest::digest(&ring::digest::SHA256, self.0.value.as_bytes());
            let mut out = [0u8; 32];
            out.copy_from_slice(digest.as_ref());
            out
        })
    }

    /// The value as a header value marked sensitive (HPACK never indexes it, `Debug` masks it),
    /// or `None` if it cannot be one. Built once and shared like the fingerprint: a cached
    /// token is validated and copied into a header value once, not on every request.
    pub fn header_value(&self) -> Option<http::HeaderValue> {
        self.0
            .header
            .get_or_init(|| {
                let mut value = http::HeaderValue::from_str(&self.0.value).ok()?;
                value.set_sensitive(true);
                Some(value)
            })
            .clone()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl Hash for Secret {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.expose().hash(state);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Serialized as the plain value: only for stores that protect it (the Redis session store
/// encrypts whole sessions). Never serialize a `Secret` into logs or responses.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn the_fingerprint_is_the_sha256_of_the_value_shared_by_clones() {
        let s = Secret::new("hunter2");
        let clone = s.clone();
        // sha256("hunter2")
        let expected = "f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7";
        let hex: String = s.fingerprint().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        assert!(std::ptr::eq(s.fingerprint(), clone.fingerprint()));
        assert_ne!(Secret::new("hunter3").fingerprint(), s.fingerprint());
        assert_eq!(Secret::new("hunter2"), s);
    }

    #[test]
    fn header_values_are_sensitive_and_refused_for_line_breaks() {
        let header = Secret::new("Bearer abc")
            .header_value()
            .expect("a header value");
        assert!(header.is_sensitive());
        assert_eq!(header, "Bearer abc");
        assert_eq!(format!("{header:?}"), "Sensitive");
        assert!(Secret::new("Bearer a\r\nX: y").header_value().is_none());
    }
}
