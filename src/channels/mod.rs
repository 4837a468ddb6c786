//! Channel names (`namespace:name`) and the policy of each namespace: who may join,
//! who may publish, what is stored, whether presence is tracked, whether a slow
//! subscriber's backlog may be conflated. PROTOCOL.md §4.

use std::{collections::HashMap, sync::Arc, sync::OnceLock};

use serde::Deserialize;

use crate::{
    auth::{Identity, Role},
    error::AppError,
    protocol::request::MAX_CHANNEL_LEN,
};

/// The namespaces the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    Room,
    Dm,
    Ticker,
    Sports,
    Loc,
}

/// Who may publish into a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishRule {
    /// Members (rooms: everyone for public rooms, members for private ones; DMs: the two users).
    Members,
    /// Users with role `publisher` (or `admin`).
    Publishers,
    /// The entity itself (a token whose `entity` claim names it) or a publisher.
    EntityOrPublisher,
}

/// What the server keeps of a channel's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Every message, gap-free `seq`, durable before the ack.
    Every,
    /// Only the newest value, in memory.
    LastValue,
    /// The newest value (durable) and a sampled track.
    LastValueAndTrack,
}

/// The rules of one namespace.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Anonymous connections may join (when anonymous access is on at all).
    pub anonymous_read: bool,
    pub publish: PublishRule,
    pub storage: Storage,
    /// Presence (member list, joined/left events) is tracked.
    pub presence: bool,
    /// A slow subscriber's queued frames of this channel may be replaced by the newest one.
    pub conflate: bool,
    /// Messages returned by `join` without `since` (default of `limit`).
    pub history_on_join: i64,
    /// Typing indicators and read markers make sense here.
    pub chat: bool,
}

impl Namespace {
    pub fn prefix(self) -> &'static str {
        match self {
            Namespace::Room => "room",
            Namespace::Dm => "dm",
            Namespace::Ticker => "ticker",
            Namespace::Sports => "sports",
            Namespace::Loc => "loc",
        }
    }

    /// The full channel name of `name` in this namespace (`name` already valid).
    pub fn channel(self, name: &str) -> String {
        format!("{}:{name}", self.prefix())
    }

    pub const ALL: [Namespace; 5] = [
        Namespace::Room,
        Namespace::Dm,
        Namespace::Ticker,
        Namespace::Sports,
        Namespace::Loc,
    ];

    /// Live feeds (quotes, sports, locations): listed by `GET /api/feeds` once they
    /// carried a value.
    pub fn is_feed(self) -> bool {
        matches!(self, Namespace::Ticker | Namespace::Sports | Namespace::Loc)
    }

    /// The policy in force: the defaults, with the configured overrides applied.
    pub fn policy(self) -> Policy {
        match POLICIES.get() {
            Some(table) => table[self as usize],
            None => self.default_policy(),
        }
    }

    /// The default policy table of PROTOCOL.md §4.
    pub fn default_policy(self) -> Policy {
        match self {
            Namespace::Room | Namespace::Dm => Policy {
                anonymous_read: false,
                publish: PublishRule::Members,
                storage: Storage::Every,
                presence: true,
                conflate: false,
                history_on_join: 50,
                chat: true,
            },
            Namespace::Ticker => Policy {
                anonymous_read: true,
                publish: PublishRule::Publishers,
                storage: Storage::LastValue,
                presence: false,
                conflate: true,
                history_on_join: 1,
                chat: false,
            },
            Namespace::Sports => Policy {
                anonymous_read: true,
                publish: PublishRule::Publishers,
                storage: Storage::Every,
                presence: false,
                conflate: false,
                history_on_join: 50,
                chat: false,
            },
            Namespace::Loc => Policy {
                anonymous_read: false,
                publish: PublishRule::EntityOrPublisher,
                storage: Storage::LastValueAndTrack,
                presence: false,
                conflate: true,
                history_on_join: 1,
                chat: false,
            },
        }
    }
}

/// The policies in force, set once at start from the configuration.
static POLICIES: OnceLock<[Policy; 5]> = OnceLock::new();

/// Overrides of one namespace's policy (`[policies.<namespace>]` in the config file).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverride {
    pub anonymous_read: Option<bool>,
    pub publish: Option<PublishRule>,
    pub presence: Option<bool>,
    pub conflate: Option<bool>,
    pub history_on_join: Option<i64>,
}

/// Builds the policy table from overrides keyed by namespace prefix.
pub fn build_policies(overrides: &HashMap<String, PolicyOverride>) -> Result<[Policy; 5], String> {
    let mut table = Namespace::ALL.map(Namespace::default_policy);
    for (name, o) in overrides {
        let ns = Namespace::ALL
            .into_iter()
            .find(|n| n.prefix() == name)
            .ok_or_else(|| format!("policies: unknown namespace `{name}`"))?;
        let p = &mut table[ns as usize];
        if let Some(v) = o.anonymous_read {
            p.anonymous_read = v;
        }
        if let Some(v) = o.publish {
            if ns == Namespace::Dm && v != PublishRule::Members {
                return Err("policies: DMs are always published by their two members".into());
            }
            p.publish = v;
        }
        if let Some(v) = o.presence {
            p.presence = v;
        }
        if let Some(v) = o.conflate {
            if v && p.storage == Storage::Every {
                return Err(format!(
                    "policies: `{name}` stores every message; it cannot be conflated"
                ));
            }
            p.conflate = v;
        }
        if let Some(v) = o.history_on_join {
            if !(0..=200).contains(&v) {
                return Err(format!("policies: `{name}`.history_on_join must be within 0..=200"));
            }
            p.history_on_join = v;
        }
    }
    Ok(table)
}

/// Installs the policy table (once per process; later calls are ignored).
pub fn install_policies(table: [Policy; 5]) {
    let _ = POLICIES.set(table);
}

/// A validated channel name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Channel {
    /// The full, normalized name (`room:lobby`), shared by every structure that keys on it.
    pub full: Arc<str>,
    pub ns: Namespace,
}

fn valid_chars(s: &str, max: usize, ok: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(ok)
}

pub use crate::protocol::text::valid_user_id;

/// Room names: 1..=64 of `[a-z0-9_-]` after lower-casing.
pub fn normalize_room_name(name: &str) -> Result<String, AppError> {
    let n = name.trim().to_ascii_lowercase();
    if valid_chars(&n, 64, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
    }) {
        Ok(n)
    } else {
        Err(AppError::bad_request(
            "room names are 1 to 64 characters of a-z, 0-9, _ and -",
        ))
    }
}

impl Channel {
    /// Parses and validates `namespace:name`; room names are case-folded.
    pub fn parse(s: &str) -> Result<Channel, AppError> {
        if s.len() > MAX_CHANNEL_LEN {
            return Err(AppError::bad_request("channel name too long"));
        }
        let (ns, name) = s
            .split_once(':')
            .ok_or_else(|| AppError::bad_request("a channel is `namespace:name`"))?;
        let (ns, name) = match ns {
            "room" => (Namespace::Room, normalize_room_name(name)?),
            "dm" => {
                let (a, b) = name
                    .split_once(',')
                    .ok_or_else(|| AppError::bad_request("a DM channel is `dm:<id>,<id>`"))?;
                if !valid_user_id(a) || !valid_user_id(b) {
                    return Err(AppError::bad_request("bad user id in DM channel"));
                }
                if a >= b {
                    return Err(AppError::bad_request("DM ids must be two different ids, sorted"));
                }
                (Namespace::Dm, name.to_string())
            }
            "ticker" => {
                if !valid_chars(name, 32, |c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                    return Err(AppError::bad_request("ticker symbols are 1 to 32 of A-Z, 0-9, . _ -"));
                }
                (Namespace::Ticker, name.to_string())
            }
            "sports" => {
                if !valid_chars(name, 64, |c| c.is_ascii_alphanumeric() || "_-".contains(c)) {
                    return Err(AppError::bad_request("match ids are 1 to 64 of a-z, 0-9, _ and -"));
                }
                (Namespace::Sports, name.to_string())
            }
            "loc" => {
                if !valid_user_id(name) {
                    return Err(AppError::bad_request(
                        "entity ids are 1 to 128 of A-Z, a-z, 0-9, _ . @ -",
                    ));
                }
                (Namespace::Loc, name.to_string())
            }
            other => {
                let shown: String = other.chars().take(32).collect();
                return Err(AppError::bad_request(format!("unknown channel namespace `{shown}`")));
            }
        };
        Ok(Channel {
            full: ns.channel(&name).into(),
            ns,
        })
    }

    /// The part after `namespace:`.
    pub fn name(&self) -> &str {
        &self.full[self.ns.prefix().len() + 1..]
    }

    pub fn policy(&self) -> Policy {
        self.ns.policy()
    }

    /// The two user ids of a DM channel.
    pub fn dm_pair(&self) -> Option<(&str, &str)> {
        (self.ns == Namespace::Dm)
            .then(|| self.name().split_once(','))
            .flatten()
    }

    /// The DM channel between two users.
    pub fn dm_between(a: &str, b: &str) -> Result<Channel, AppError> {
        let (x, y) = if a <= b { (a, b) } else { (b, a) };
        Channel::parse(&format!("dm:{x},{y}"))
    }
}

/// The outcome of the checks that need no database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// Allowed when the room is public or the user is a member (asks storage).
    RoomCheck,
}

/// May `who` read (join, history, presence) `ch`? `anonymous_on` is the server setting.
pub fn read_access(who: &Identity, ch: &Channel, anonymous_on: bool) -> Result<Access, AppError> {
    let policy = ch.policy();
    if who.anonymous {
        return if policy.anonymous_read && anonymous_on {
            Ok(Access::Allowed)
        } else {
            Err(AppError::forbidden(format!(
                "anonymous connections cannot read {}",
                ch.full
            )))
        };
    }
    match ch.ns {
        Namespace::Room => Ok(if who.role == Role::Admin {
            Access::Allowed
        } else {
            Access::RoomCheck
        }),
        Namespace::Dm => {
            let (a, b) = ch.dm_pair().expect("dm channel has a pair");
            if who.id() == a || who.id() == b {
                Ok(Access::Allowed)
            } else {
                Err(AppError::forbidden(format!("not a member of {}", ch.full)))
            }
        }
        Namespace::Ticker | Namespace::Sports | Namespace::Loc => Ok(Access::Allowed),
    }
}

/// May `who` publish into `ch`?
pub fn publish_access(who: &Identity, ch: &Channel) -> Result<Access, AppError> {
    if who.anonymous {
        return Err(AppError::forbidden("anonymous connections cannot publish"));
    }
    let is_publisher = matches!(who.role, Role::Publisher | Role::Admin);
    match ch.policy().publish {
        PublishRule::Members => match ch.ns {
            Namespace::Dm => read_access(who, ch, false),
            _ => Ok(Access::RoomCheck),
        },
        PublishRule::Publishers if is_publisher => Ok(Access::Allowed),
        PublishRule::Publishers => Err(AppError::forbidden(format!(
            "only publishers may publish to {}",
            ch.full
        ))),
        PublishRule::EntityOrPublisher if is_publisher || who.entity.as_deref() == Some(ch.name()) => {
            Ok(Access::Allowed)
        }
        PublishRule::EntityOrPublisher => Err(AppError::forbidden(format!(
            "only the entity itself or a publisher may publish to {}",
            ch.full
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::UserRef;

    fn user(id: &str, role: Role) -> Identity {
        Identity {
            user: UserRef::new(id, id),
            role,
            anonymous: false,
            entity: None,
        }
    }

    fn device(entity: &str) -> Identity {
        Identity {
            entity: Some(entity.into()),
            ..user("device-owner", Role::User)
        }
    }

    #[test]
    fn parse_names() {
        assert_eq!(&*Channel::parse("room:Lobby").unwrap().full, "room:lobby");
        assert_eq!(Channel::parse("dm:1,2").unwrap().dm_pair(), Some(("1", "2")));
        assert!(Channel::parse("dm:2,1").is_err());
        assert!(Channel::parse("dm:1,1").is_err());
        assert!(Channel::parse("nope:x")
            .unwrap_err()
            .message
            .contains("unknown channel namespace"));
        assert!(Channel::parse("room").is_err());
        assert!(Channel::parse("room:").is_err());
        assert!(Channel::parse("room:a b").is_err());
        assert!(Channel::parse("ticker:BRK.B").is_ok());
        assert_eq!(Channel::dm_between("b", "a").unwrap().full.as_ref(), "dm:a,b");
    }

    #[test]
    fn overrides() {
        let mut o = HashMap::new();
        o.insert(
            "ticker".to_string(),
            PolicyOverride {
                anonymous_read: Some(false),
                ..Default::default()
            },
        );
        o.insert(
            "room".to_string(),
            PolicyOverride {
                history_on_join: Some(100),
                ..Default::default()
            },
        );
        let t = build_policies(&o).unwrap();
        assert!(!t[Namespace::Ticker as usize].anonymous_read);
        assert_eq!(t[Namespace::Room as usize].history_on_join, 100);
        assert!(t[Namespace::Sports as usize].anonymous_read);
        o.insert("nope".to_string(), PolicyOverride::default());
        assert!(build_policies(&o).is_err());
        let mut o = HashMap::new();
        o.insert(
            "room".to_string(),
            PolicyOverride {
                conflate: Some(true),
                ..Default::default()
            },
        );
        assert!(build_policies(&o).is_err());
    }

    #[test]
    fn policies() {
        let dm = Channel::parse("dm:1,2").unwrap();
        assert_eq!(read_access(&user("1", Role::User), &dm, false), Ok(Access::Allowed));
        assert!(read_access(&user("3", Role::User), &dm, false).is_err());
        let t = Channel::parse("ticker:ACME").unwrap();
        assert!(read_access(&Identity::anonymous(), &t, true).is_ok());
        assert!(read_access(&Identity::anonymous(), &t, false).is_err());
        assert!(publish_access(&user("1", Role::User), &t).is_err());
        assert!(publish_access(&user("1", Role::Publisher), &t).is_ok());
        let l = Channel::parse("loc:veh-1").unwrap();
        assert!(publish_access(&device("veh-1"), &l).is_ok());
        assert!(publish_access(&device("veh-2"), &l).is_err());
        // A user is no entity, even when the entity has the user's id as its name.
        assert!(publish_access(&user("veh-1", Role::User), &l).is_err());
        let seven = Channel::parse("loc:7").unwrap();
        assert!(publish_access(&user("7", Role::User), &seven).is_err());
        assert!(publish_access(&user("veh-2", Role::User), &l).is_err());
        assert!(read_access(&Identity::anonymous(), &l, true).is_err());
        let r = Channel::parse("room:x").unwrap();
        assert_eq!(publish_access(&user("1", Role::User), &r), Ok(Access::RoomCheck));
        assert!(publish_access(&Identity::anonymous(), &r).is_err());
    }
}
