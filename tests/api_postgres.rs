//! The whole HTTP suite of tests/api, on the PostgreSQL engine: each test gets a schema of its own
//! in the database `VERIFYD_TEST_POSTGRES_URL` names. Without that variable every test here
//! passes without running (tests/postgres_notice.rs says so in the output).

#[path = "support/mod.rs"]
mod support;

#[path = "api/helpers.rs"]
mod helpers;

#[path = "api/check.rs"]
mod check;
#[path = "api/control.rs"]
mod control;
#[path = "api/credentials.rs"]
mod credentials;
#[path = "api/fraud.rs"]
mod fraud;
#[path = "api/inbox.rs"]
mod inbox;
#[path = "api/limits.rs"]
mod limits;
#[path = "api/psd2.rs"]
mod psd2;
#[path = "api/request.rs"]
mod request;
#[path = "api/search.rs"]
mod search;
#[path = "api/timing.rs"]
mod timing;
#[path = "api/v2.rs"]
mod v2;
#[path = "api/v2_templates.rs"]
mod v2_templates;

pub const ENGINE: helpers::Engine = helpers::Engine::Postgres;
