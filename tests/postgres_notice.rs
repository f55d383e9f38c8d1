//! Says in the test output, uncaptured, whether the PostgreSQL half of the suites ran.

fn main() {
    match std::env::var("VERIFYD_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => {
            println!("PostgreSQL: the store, HTTP and cluster suites ran on PostgreSQL as well.");
        }
        _ => {
            println!(
                "PostgreSQL: SKIPPED. Set VERIFYD_TEST_POSTGRES_URL (e.g. \
                 postgres://postgres@127.0.0.1:5432/postgres) to run the store, HTTP and cluster \
                 suites on PostgreSQL too; they ran on SQLite only."
            );
        }
    }
}
