//! `chatserver token mint`: a token signed with the configured secret, for backends,
//! scripts and the README's examples (`$PUB`).

use clap::Subcommand;

use super::{storage, CliError};
use crate::{
    auth::{load_or_create_secret, Auth, Role},
    config::Settings,
    storage::queries,
};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a token for user SUB.
    Mint {
        /// The user id (`sub` claim).
        #[arg(long)]
        sub: String,
        /// Display name (`name` claim; default: the id).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "user")]
        role: Role,
        /// Lifetime: seconds, or with a unit: 90s, 15m, 12h, 30d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: u64,
        /// Make it a device's token for the `loc:<ENTITY>` channel.
        #[arg(long)]
        entity: Option<String>,
    },
}

/// `600`, `90s`, `15m`, `12h`, `30d` → seconds.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let (n, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: a number with an optional unit s, m, h, d"))?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("{s:?}: the unit is one of s, m, h, d")),
    };
    match n.checked_mul(mult) {
        Some(t) if t > 0 => Ok(t),
        _ => Err(format!("{s:?}: out of range")),
    }
}

pub fn run(cmd: TokenCommand) -> Result<(), CliError> {
    let TokenCommand::Mint {
        sub,
        name,
        role,
        ttl,
        entity,
    } = cmd;
    if !crate::protocol::text::valid_user_id(&sub) {
        return Err(CliError::new(format!("{sub:?} is not a valid user id")));
    }
    if let Some(e) = entity.as_deref().filter(|e| !crate::protocol::text::valid_user_id(e)) {
        return Err(CliError::new(format!("{e:?} is not a valid entity name")));
    }
    let settings = Settings::load()?;
    let (_, mut c) = storage(&settings)?;
    let secret = load_or_create_secret(settings.jwt_secret.as_deref(), &settings.data_dir)
        .map_err(|e| CliError::new(format!("JWT secret: {e}")))?;
    let auth = Auth::new(&secret, settings.token_ttl_s);
    // A token for an account whose tokens were revoked carries its current version.
    auth.versions().load(queries::token_versions(&mut c)?);
    println!("{}", auth.mint(&sub, name.as_deref(), role, ttl, entity.as_deref()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("600"), Ok(600));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("12h"), Ok(43_200));
        assert_eq!(parse_ttl("30d"), Ok(2_592_000));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("5y").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("99999999999999999d").is_err());
    }
}
