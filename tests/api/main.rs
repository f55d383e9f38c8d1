//! The v1 and v2 HTTP surfaces, end to end: a real server on a random loopback port, a real SQLite file,
//! the real scheduler and inbox channel, and a manual clock moved by the tests. The same modules
//! run on PostgreSQL from tests/api_postgres.rs.

#[path = "../support/mod.rs"]
mod support;

mod helpers;

mod check;
mod control;
mod credentials;
mod destinations;
mod fraud;
mod inbox;
mod limits;
mod psd2;
mod request;
mod search;
mod security;
mod timing;
mod v2;
mod v2_templates;

pub const ENGINE: helpers::Engine = helpers::Engine::Sqlite;
