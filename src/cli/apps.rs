//! `verifyd apps create|list`: Verify v2 applications, whose JWTs authenticate v2 calls.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;

use super::resolve;
use crate::auth::apps::create_app;
use crate::config::file::ConfigFile;
use crate::config::DatabaseUrl;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Register an application for an API key; prints {"application_id":…,"api_key":…,
    /// "status_url":…,"signature_secret":…}. The signature secret is shown only here.
    Create {
        /// The API key whose account the application's requests belong to.
        #[arg(long)]
        key: String,
        /// The application's RSA public key (PEM); its JWTs are signed with the private key.
        #[arg(long)]
        public_key: PathBuf,
        /// Where the application's Verify callbacks are posted.
        #[arg(long)]
        status_url: Option<String>,
        /// File with the server key, as `serve` takes it (the signature secret is sealed with
        /// it). Default: the database path plus `.key`; VERIFYD_SECRET_KEY takes precedence.
        #[arg(long, env = "VERIFYD_SECRET_KEY_FILE")]
        secret_key_file: Option<PathBuf>,
    },
    /// List applications (never their secrets), one JSON object per line.
    List,
}

pub async fn run(
    store: Arc<dyn Store>,
    database: &DatabaseUrl,
    file: Option<&ConfigFile>,
    cmd: AppsCommand,
) -> anyhow::Result<()> {
    match cmd {
        AppsCommand::Create {
            key,
            public_key,
            status_url,
            secret_key_file,
        } => {
            let pem = std::fs::read_to_string(&public_key)
                .with_context(|| format!("cannot read {}", public_key.display()))?;
            let source = resolve::key_source(database, file, secret_key_file);
            let server_key = crate::startup::existing_server_key(&source, store.as_ref()).await?;
            let app = create_app(
                store.as_ref(),
                store.as_ref(),
                &server_key,
                &key,
                &pem,
                status_url.as_deref(),
                chrono::Utc::now(),
            )
            .await?;
            println!("{}", serde_json::to_string(&app)?);
        }
        AppsCommand::List => {
            for app in store.list_apps().await? {
                let line = serde_json::json!({
                    "application_id": app.application_id,
                    "api_key": app.api_key,
                    "status_url": app.status_url,
                    "created_at": app.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                });
                println!("{line}");
            }
        }
    }
    Ok(())
}
