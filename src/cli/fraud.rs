//! `verifyd fraud report`: what conversion monitoring saw ([`crate::fraud_report`]), as one JSON
//! document, for one key or every key together.

use anyhow::bail;
use clap::Subcommand;

use crate::fraud_report::{build, parse_period, DEFAULT_PERIOD};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum FraudCommand {
    /// Sends and conversions by country, number prefix and client address, the blocks in force
    /// and the decisions taken, over a period; one JSON document.
    Report {
        /// Only this API key's (default: every key's together).
        #[arg(long)]
        key: Option<String>,
        /// How far back: `90m`, `24h`, `7d` (at most 31d).
        #[arg(long, default_value = DEFAULT_PERIOD)]
        since: String,
    },
}

pub async fn run(store: &dyn Store, cmd: FraudCommand) -> anyhow::Result<()> {
    let FraudCommand::Report { key, since } = cmd;
    let period = parse_period(&since).map_err(anyhow::Error::msg)?;
    if let Some(key) = &key {
        if store.get_key(key).await?.is_none() {
            bail!("no API key {key:?} in this database");
        }
    }
    let report = build(store, key.as_deref(), period, chrono::Utc::now()).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
