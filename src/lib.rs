//! verifyd: a self-hosted phone verification service, wire-compatible with the Vonage Verify API.

pub mod domain;
pub mod clock;
pub mod crypto;
pub mod store;
pub mod auth;
pub mod channel;
pub mod scheduler;
pub mod service;
pub mod api;
pub mod config;
pub mod telemetry;
pub mod startup;
pub mod cli;
