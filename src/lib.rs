//! verifyd: a self-hosted phone verification service, wire-compatible with the Vonage Verify API.

pub mod api;
pub mod auth;
pub mod callbacks;
pub mod channel;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod domain;
pub mod fraud_report;
pub mod http;
pub mod metrics;
pub mod reload;
pub mod scheduler;
pub mod service;
pub mod speech;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod xml;
