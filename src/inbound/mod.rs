//! Inbound TLS and client-certificate handling: the client certificates the router receives —
//! from its own TLS handshake or forwarded by a trusted front proxy — and the headers that pass
//! them on to destinations.
//!
//! This slice is the pure header layer, without I/O: the certificate model
//! ([`client_cert`]), parsers for certificates forwarded in proxy headers ([`forwarded`]), and
//! the outgoing header formats plus the list of client-certificate headers to strip from
//! untrusted requests ([`headers_out`]). The router's own HTTPS listener, which verifies client
//! certificates in the handshake, is [`listener`]: per-SNI sites ([`server_config`]), the trust
//! policy with CRLs, pinning and depth ([`trust`]), the rustls verifier with permissive mode
//! ([`verifier`]), verification results and their counters ([`verify_result`]) and hot reload
//! of the TLS files ([`reload`]). Behind a front proxy: which peers are trusted
//! ([`trusted_proxy`]), re-verification of what they forward ([`reverify`]), the request's one
//! effective certificate and its `SUCCESS`/`FAILED`/`NONE` state ([`effective_cert`]), and the
//! per-route `clientCertificate` rules ([`route_rules`]).

pub mod client_cert;
pub mod effective_cert;
pub mod forwarded;
pub mod headers_out;
pub mod listener;
pub mod reload;
pub mod reverify;
pub mod route_rules;
pub mod server_config;
pub mod trust;
pub mod trusted_proxy;
pub mod verifier;
pub mod verify_result;

pub use client_cert::{CertificateError, ClientCertificate};
pub use effective_cert::{CertificateSource, EffectiveClientCert};
pub use forwarded::{
    ForwardedCertError, ForwardedFormat, MAX_CHAIN_CERTS, MAX_HEADER_BYTES, MAX_XFCC_ELEMENTS,
    XfccElement, from_cf_raw, from_envoy_xfcc, from_escaped_pem, from_rfc9440, from_traefik,
    from_xfcc_any, looks_like_envoy, parse_xfcc,
};
pub use headers_out::{
    CLIENT_CERT_HEADERS, DEFAULT_MAX_TOTAL_BYTES, DEFAULT_MAX_VALUE_BYTES, EmitContext,
    EmitOptions, EmittedHeaders, ForwardProfile, HeaderError, HeaderPattern, NginxFlavor,
    Verification, XfccFields, XfccMode, apply_xfcc_mode, emit, is_client_cert_header,
    strip_client_cert_headers, xfcc_element,
};
