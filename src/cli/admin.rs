//! `verifyd admin create|list|remove`: the dashboard's users. A password is read from stdin
//! (its first line), never from an argument, which other users of the machine could see.

use std::io::BufRead;

use anyhow::bail;
use clap::Subcommand;

use crate::auth::password;
use crate::store::admin::AdminUser;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a dashboard user; its password is the first line of stdin (at least 12
    /// characters). Prints {"name":…,"created":true}.
    Create {
        #[arg(long)]
        name: String,
        /// Set a new password for a user that exists (which ends its sessions).
        #[arg(long)]
        replace: bool,
    },
    /// List dashboard users (never their password hashes), one JSON object per line.
    List,
    /// Remove a dashboard user; its sessions end.
    Remove { name: String },
}

/// A user name as the login form takes it: printable, without spaces, 1 to 64 characters.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.chars().count()) && name.chars().all(|c| c.is_ascii_graphic())
}

fn read_password(input: impl BufRead) -> anyhow::Result<String> {
    let Some(line) = input.lines().next() else {
        bail!("no password on stdin: give it as the first line, e.g. `printf '%s\\n' \"$PW\" | verifyd admin create --name NAME`");
    };
    let password = line?.trim_end_matches('\r').to_owned();
    if password.chars().count() < password::MIN_LENGTH {
        bail!(
            "the password must have at least {} characters",
            password::MIN_LENGTH
        );
    }
    Ok(password)
}

pub async fn run(store: &dyn Store, cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Create { name, replace } => {
            if !valid_name(&name) {
                bail!("{name:?} is not a user name: 1 to 64 printable ASCII characters, no spaces");
            }
            let password = read_password(std::io::stdin().lock())?;
            let password_hash =
                tokio::task::spawn_blocking(move || password::hash(&password)).await??;
            let user = AdminUser {
                name: name.clone(),
                password_hash,
                created_at: chrono::Utc::now(),
            };
            if !store.put_admin(user, replace).await? {
                bail!("a user {name:?} exists already; give --replace to set a new password");
            }
            println!("{}", serde_json::json!({"name": name, "created": true}));
        }
        AdminCommand::List => {
            for user in store.list_admins().await? {
                let line = serde_json::json!({
                    "name": user.name,
                    "created_at": user.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                });
                println!("{line}");
            }
        }
        AdminCommand::Remove { name } => {
            if !store.remove_admin(&name).await? {
                bail!("no dashboard user {name:?}");
            }
            println!("{}", serde_json::json!({"name": name, "removed": true}));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_the_first_line_and_long_enough() {
        assert_eq!(
            read_password("correct horse battery\nrest".as_bytes()).unwrap(),
            "correct horse battery"
        );
        assert_eq!(
            read_password("correct horse battery\r\n".as_bytes()).unwrap(),
            "correct horse battery"
        );
        assert!(read_password("short\n".as_bytes()).is_err());
        assert!(read_password("".as_bytes()).is_err());
    }

    #[test]
    fn user_names_are_printable_words() {
        assert!(valid_name("ops-1@example"));
        assert!(!valid_name(""));
        assert!(!valid_name("two words"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
