//! The whole HTTP suite of tests/api, on the PostgreSQL engine: each test gets a schema of its own
//! in the database `VERIFYD_TEST_POSTGRES_URL` names. Built without that variable, the suite is
//! one ignored test instead (build.rs sets `cfg(pg_tests)`).

#[cfg(pg_tests)]
#[path = "support/mod.rs"]
mod support;

#[cfg(pg_tests)]
#[path = "api/helpers.rs"]
mod helpers;

#[cfg(pg_tests)]
#[path = "api/check.rs"]
mod check;
#[cfg(pg_tests)]
#[path = "api/control.rs"]
mod control;
#[cfg(pg_tests)]
#[path = "api/credentials.rs"]
mod credentials;
#[cfg(pg_tests)]
#[path = "api/fraud.rs"]
mod fraud;
#[cfg(pg_tests)]
#[path = "api/inbox.rs"]
mod inbox;
#[cfg(pg_tests)]
#[path = "api/limits.rs"]
mod limits;
#[cfg(pg_tests)]
#[path = "api/psd2.rs"]
mod psd2;
#[cfg(pg_tests)]
#[path = "api/request.rs"]
mod request;
#[cfg(pg_tests)]
#[path = "api/search.rs"]
mod search;
#[cfg(pg_tests)]
#[path = "api/timing.rs"]
mod timing;
#[cfg(pg_tests)]
#[path = "api/v2.rs"]
mod v2;
#[cfg(pg_tests)]
#[path = "api/v2_templates.rs"]
mod v2_templates;

#[cfg(pg_tests)]
pub const ENGINE: helpers::Engine = helpers::Engine::Postgres;

#[cfg(not(pg_tests))]
#[test]
#[ignore = "the HTTP suite on PostgreSQL needs VERIFYD_TEST_POSTGRES_URL at build time"]
fn the_http_suite_runs_on_postgresql() {}
