//! `cfg(pg_tests)` when `VERIFYD_TEST_POSTGRES_URL` names a PostgreSQL server at build time,
//! and `cfg(has_initdb)` when PostgreSQL's initdb is installed (Debian's layout): tests that
//! need one are ignored without it, so the runner counts them as ignored, not passed.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(pg_tests)");
    println!("cargo::rustc-check-cfg=cfg(has_initdb)");
    // Installing PostgreSQL later is noticed through its directory; with none, a missing
    // path here would make Cargo run this script (and rebuild the crate) on every build.
    if std::path::Path::new("/usr/lib/postgresql").exists() {
        println!("cargo::rerun-if-changed=/usr/lib/postgresql");
    } else {
        println!("cargo::rerun-if-changed=build.rs");
    }
    let initdb = std::fs::read_dir("/usr/lib/postgresql")
        .map(|versions| {
            versions
                .filter_map(Result::ok)
                .any(|v| v.path().join("bin/initdb").exists())
        })
        .unwrap_or(false);
    if initdb {
        println!("cargo::rustc-cfg=has_initdb");
    }
    println!("cargo::rerun-if-env-changed=VERIFYD_TEST_POSTGRES_URL");
    let named = std::env::var("VERIFYD_TEST_POSTGRES_URL").is_ok_and(|u| !u.trim().is_empty());
    if named {
        println!("cargo::rustc-cfg=pg_tests");
    }
}
