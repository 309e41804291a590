//! `xsrouter demo`: the whole mission on loopback, from a fresh clone, with nothing to install.
//!
//! At start-up a local CA and a short-lived client certificate are generated ([`pki`]); the
//! certificate is bound to the router like an x509 XSUAA binding ([`setup`]). Beside the router
//! run an XSUAA-compatible token service that issues client_credentials tokens over mTLS only
//! ([`token_service`]), an mTLS-only backend that reports the certificate and token it saw
//! ([`mtls_backend`]) and a plain echo backend ([`echo_backend`]). The router serves the example
//! in `xs-app/` with `destinations/demo.json`; [`walkthrough`] prints what to try.

pub mod echo_backend;
pub mod jwt;
pub mod mtls_backend;
pub mod mtls_server;
pub mod pki;
pub mod setup;
pub mod token_service;
pub mod walkthrough;

use std::path::PathBuf;

pub use echo_backend::{EchoBackend, start_echo_backend};
pub use setup::{DemoSetup, demo_runtime};

/// The example destinations, relative to the repository root.
pub const DEMO_DESTINATIONS: &str = "destinations/demo.json";
/// The example working directory, relative to the repository root.
pub const DEMO_WORKDIR: &str = "xs-app";

/// Errors of the demo set-up.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Destinations { path: PathBuf, reason: String },
    #[error(transparent)]
    Config(#[from] crate::config::LoadError),
    #[error(transparent)]
    Start(#[from] crate::pipeline::StartError),
    #[error("demo PKI")]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Signing(#[from] jwt::SigningError),
    #[error("cannot listen on {addr} (set PORT to another port)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot listen")]
    Listen(#[from] std::io::Error),
    #[error("the demo request failed")]
    Request(#[from] reqwest::Error),
}
