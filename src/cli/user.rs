//! `chatserver user add|passwd|role|ban|unban|list`: accounts on the configured
//! storage. Running servers learn of a password, role or ban change from the change
//! log within seconds (older tokens stop working, a banned user's connections close).

use std::io::BufRead;

use clap::Subcommand;

use super::{storage, CliError};
use crate::{
    auth::{hash_password, Role},
    config::Settings,
    storage::{models::UserRow, queries, Conn},
};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. The password comes from --password or the first line of stdin.
    Add {
        name: String,
        #[arg(long, default_value = "user")]
        role: Role,
        /// The password (visible to other local users in the process list: prefer stdin).
        #[arg(long)]
        password: Option<String>,
    },
    /// Set an account's password (from --password or stdin); its older tokens stop working.
    Passwd {
        name: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Set an account's role (user, publisher, admin); its older tokens stop working.
    Role { name: String, role: Role },
    /// Ban a user: their connections close (4003) and they can neither log in nor connect.
    Ban {
        /// An account name, or with --id a user id (users of an outside identity provider).
        user: String,
        /// USER is a user id, not an account name.
        #[arg(long)]
        id: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lift a ban.
    Unban {
        user: String,
        #[arg(long)]
        id: bool,
    },
    /// List accounts (and bans).
    List {
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
}

pub fn run(cmd: UserCommand) -> Result<(), CliError> {
    let settings = Settings::load()?;
    let (_, mut c) = storage(&settings)?;
    match cmd {
        UserCommand::Add { name, role, password } => {
            let pw = password_from(password)?;
            let hash = hash_password(&pw)?;
            let row = queries::create_user(&mut c, &name, &hash)?;
            if role != Role::User {
                queries::set_role(&mut c, &row.uid.to_string(), role)?;
            }
            println!("created user {} (id {}, role {})", row.name, row.uid, role.as_str());
        }
        UserCommand::Passwd { name, password } => {
            let row = account(&mut c, &name)?;
            let hash = hash_password(&password_from(password)?)?;
            queries::revoke_tokens(&mut c, &row.uid.to_string(), Some(&hash))?;
            queries::audit(&mut c, "cli", "passwd", &row.uid.to_string(), "")?;
            println!("password of {} changed; older tokens revoked", row.name);
        }
        UserCommand::Role { name, role } => {
            let row = account(&mut c, &name)?;
            queries::set_role(&mut c, &row.uid.to_string(), role)?;
            queries::audit(
                &mut c,
                "cli",
                &format!("role {}", role.as_str()),
                &row.uid.to_string(),
                "",
            )?;
            println!("{} is now {}; older tokens revoked", row.name, role.as_str());
        }
        UserCommand::Ban { user, id, reason } => {
            let target = user_id(&mut c, &user, id)?;
            queries::ban(&mut c, &target, &reason, "cli")?;
            queries::audit(&mut c, "cli", "ban", &target, &reason)?;
            println!("banned {user} (id {target})");
        }
        UserCommand::Unban { user, id } => {
            let target = user_id(&mut c, &user, id)?;
            if !queries::unban(&mut c, &target)? {
                return Err(CliError::new(format!("{user} is not banned")));
            }
            queries::audit(&mut c, "cli", "unban", &target, "")?;
            println!("unbanned {user} (id {target})");
        }
        UserCommand::List { limit } => {
            let banned: std::collections::HashSet<String> = queries::list_bans(&mut c, i64::MAX)?
                .into_iter()
                .map(|b| b.user_id)
                .collect();
            println!("{:>8}  {:<32}  {:<9}  banned", "id", "name", "role");
            for u in queries::list_users(&mut c, limit)? {
                let b = if banned.contains(&u.uid.to_string()) { "yes" } else { "" };
                println!("{:>8}  {:<32}  {:<9}  {b}", u.uid, u.name, u.role);
            }
        }
    }
    Ok(())
}

fn account(c: &mut Conn, name: &str) -> Result<UserRow, CliError> {
    queries::find_user_by_name(c, name)?.ok_or_else(|| CliError::new(format!("no account named {name:?}")))
}

fn user_id(c: &mut Conn, user: &str, is_id: bool) -> Result<String, CliError> {
    if is_id {
        if !crate::protocol::text::valid_user_id(user) {
            return Err(CliError::new(format!("{user:?} is not a valid user id")));
        }
        return Ok(user.to_string());
    }
    Ok(account(c, user)?.uid.to_string())
}

/// The password from the flag, else the first line of stdin.
fn password_from(flag: Option<String>) -> Result<String, CliError> {
    let pw = match flag {
        Some(p) => p,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| CliError::new(format!("reading the password from stdin: {e}")))?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if !(8..=256).contains(&pw.len()) {
        return Err(CliError::new("passwords are 8 to 256 bytes"));
    }
    Ok(pw)
}
