//! verifyd: a self-hosted phone verification service, wire-compatible with the Vonage Verify API.

pub mod domain;
