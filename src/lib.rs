//! xsrouter: a drop-in replacement for SAP's Node.js application router.
//!
//! Data flows one way: [`server`] accepts a request, [`pipeline`] checks its path and finds its
//! route ([`routing`]), then serves a local file ([`static_files`]) or forwards it ([`proxy`])
//! through the destination's client ([`upstream`]). [`config`] builds the immutable runtime all
//! of this reads.

pub mod auth;
pub mod civil_time;
pub mod client_timeouts;
pub mod compression;
pub mod config;
pub mod connection_guard;
pub mod cors;
pub mod demo;
pub mod destination_service;
pub mod error_pages;
pub mod host_header;
pub mod identity;
pub mod inbound;
pub mod limits;
pub mod loopback_names;
pub mod management;
pub mod pipeline;
pub mod plugins;
pub mod proxy;
pub mod rejection;
pub mod reload_schedule;
pub mod replacements;
pub mod response_headers;
pub mod routing;
pub mod sap_statistics;
pub mod secret;
pub mod server;
pub mod static_files;
pub mod telemetry;
pub mod tenants;
pub mod tokens;
pub mod upstream;
pub mod user_api;
pub mod websocket;

/// Makes ring the process-wide rustls provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
