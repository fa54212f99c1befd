//! `attune users`: the people and API clients of the review desk.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, bail};
use clap::Subcommand;

use super::output::Printer;
use crate::config::Config;
use crate::http;
use crate::store::Role;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user; the password is asked for (or read from standard input).
    Add {
        name: String,
        /// viewer (reads), reviewer (also decides on nudges) or admin (also manages users).
        #[arg(long)]
        role: Role,
        /// Read the password from the first line of standard input instead of asking.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Every user with their role.
    List,
    /// Make a new API token for a user and print it once; only its hash is kept.
    Token { name: String },
    /// Change a user's password (ends their sessions).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's role, or disable or enable them.
    Set {
        name: String,
        #[arg(long)]
        role: Option<Role>,
        /// Disable the user: ends their sessions and revokes their tokens.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
    },
    /// Names and addresses locked after repeated failed sign-ins, with when each lock ends.
    Locks,
    /// Lift the sign-in lock on a name (or on an address, with --address) now.
    Unlock {
        /// The user name, or the address with --address.
        target: String,
        #[arg(long)]
        address: bool,
    },
}

/// Reads a password from standard input's first line, or asks for it twice on the
/// terminal without echoing it.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        bail!("there is no terminal to ask for the password on; pipe it in with --password-stdin");
    }
    let first = ask("Password: ")?;
    let second = ask("Again: ")?;
    if first != second {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}

/// Asks on the terminal with echo turned off (`stty -echo`), and turns it back on.
fn ask(prompt: &str) -> anyhow::Result<String> {
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
    };
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let echo_off = stty("-echo").is_ok_and(|s| s.success());
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if echo_off {
        let _ = stty("echo");
    }
    eprintln!();
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub async fn run(config: &Config, cmd: UsersCommand, out: &Printer) -> anyhow::Result<()> {
    let db = super::open(config).await?;
    let actor = super::actor(None);
    match cmd {
        UsersCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            crate::store::validate_user_name(&name).map_err(anyhow::Error::msg)?;
            let password = read_password(password_stdin)?;
            http::validate_password(&password).map_err(anyhow::Error::msg)?;
            let hash = http::hash_password(&password)?;
            let id = db.create_user(&name, role, &hash, &actor).await?;
            out.message(
                &serde_json::json!({"id": id, "name": name, "role": role.as_str()}),
                &format!("added {name} as {role}"),
            )
        }
        UsersCommand::List => {
            let users = db.users().await?;
            if out.json {
                return out.message(&serde_json::to_value(&users)?, "");
            }
            if users.is_empty() {
                println!("no users yet; add one with `attune users add NAME --role admin`");
            }
            for u in users {
                println!(
                    "{:<24} {:<9} {}",
                    u.name,
                    u.role,
                    if u.disabled { "disabled" } else { "" }
                );
            }
            Ok(())
        }
        UsersCommand::Token { name } => {
            let (token, hash, prefix) = http::new_api_token();
            db.create_api_token(&name, &hash, &prefix, &actor).await?;
            if out.json {
                return out.message(&serde_json::json!({"user": name, "token": token}), "");
            }
            eprintln!("A new API token for {name} (shown once; only its hash is kept):");
            println!("{token}");
            Ok(())
        }
        UsersCommand::Passwd {
            name,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            http::validate_password(&password).map_err(anyhow::Error::msg)?;
            let hash = http::hash_password(&password)?;
            db.set_password(&name, &hash, &actor).await?;
            out.message(
                &serde_json::json!({"name": name, "password_changed": true}),
                &format!("changed the password of {name}; their sessions have ended"),
            )
        }
        UsersCommand::Locks => {
            let locks = db.login_locks().await?;
            if out.json {
                let v: Vec<_> = locks
                    .iter()
                    .map(|(k, until)| serde_json::json!({"key": k, "locked_until": until}))
                    .collect();
                return out.message(&serde_json::Value::Array(v), "");
            }
            if locks.is_empty() {
                println!("nothing is locked");
            }
            for (key, until) in locks {
                println!("{key:<40} until {}", super::fmt_time(until));
            }
            Ok(())
        }
        UsersCommand::Unlock { target, address } => {
            let key = if address {
                format!("addr:{target}")
            } else {
                format!("user:{target}")
            };
            let lifted = db.clear_login_failures(&key).await?;
            if lifted {
                db.audit(&actor, "login.unlocked", &key, &serde_json::json!({}))
                    .await?;
            }
            out.message(
                &serde_json::json!({"key": key, "lifted": lifted}),
                &if lifted {
                    format!("{key} may sign in again")
                } else {
                    format!("{key} had no failed sign-ins or lock to lift")
                },
            )
        }
        UsersCommand::Set {
            name,
            role,
            disable,
            enable,
        } => {
            let disabled = if disable {
                Some(true)
            } else if enable {
                Some(false)
            } else {
                None
            };
            if role.is_none() && disabled.is_none() {
                bail!("say what to change: --role ROLE, --disable or --enable");
            }
            match db.update_user(&name, role, disabled, &actor).await? {
                Some(_) => out.message(
                    &serde_json::json!({"name": name, "role": role.map(|r| r.as_str()), "disabled": disabled}),
                    &format!("updated {name}"),
                ),
                None => bail!("no user named {name:?}; `attune users list` shows them"),
            }
        }
    }
}
