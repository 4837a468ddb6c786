//! Client → server frames.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::AppError;

/// A decoded client request: the optional correlation `id` and the operation.
#[derive(Debug)]
pub struct Request {
    /// Echoed in the reply; requests without an id get no reply on success.
    pub id: Option<i64>,
    pub op: Op,
}

/// Every operation of PROTOCOL.md §2, with typed parameters. The parameters of each
/// are a command struct of their own, which the HTTP API builds too.
#[derive(Debug)]
pub enum Op {
    Auth {
        token: String,
    },
    Join(Join),
    Leave(Leave),
    Publish(Publish),
    History(History),
    Presence(Presence),
    Typing(Typing),
    Read(Read),
    Channels,
    Edit(Edit),
    Delete(Delete),
    Signal(Signal),
    Ping,
    /// The admin console's live figures (role `admin`).
    AdminStats,
}

/// `join`: subscribe, with the recent history or everything after `since`.
#[derive(Debug, Clone)]
pub struct Join {
    pub channel: String,
    pub since: Option<i64>,
    pub epoch: Option<String>,
    pub limit: Option<i64>,
}

/// `leave`.
#[derive(Debug, Clone)]
pub struct Leave {
    pub channel: String,
}

/// `publish` (also the body of `POST /api/publish`).
#[derive(Debug, Deserialize)]
pub struct Publish {
    pub channel: String,
    pub data: Box<RawValue>,
    #[serde(default)]
    pub client_id: Option<String>,
}

/// `history` (also `GET /api/channels/{channel}/history`).
#[derive(Debug, Clone)]
pub struct History {
    pub channel: String,
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

/// `presence` (also `GET /api/channels/{channel}/presence`): a page of the members.
#[derive(Debug, Clone)]
pub struct Presence {
    pub channel: String,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
    pub limit: Option<i64>,
}

/// `typing`.
#[derive(Debug, Clone)]
pub struct Typing {
    pub channel: String,
}

/// `read`: move the caller's read marker.
#[derive(Debug, Clone)]
pub struct Read {
    pub channel: String,
    pub seq: i64,
}

/// `edit`: replace the data of an own message.
#[derive(Debug)]
pub struct Edit {
    pub channel: String,
    pub seq: i64,
    pub data: Box<RawValue>,
}

/// `delete`: an own message (any message for admins).
#[derive(Debug, Clone)]
pub struct Delete {
    pub channel: String,
    pub seq: i64,
}

/// `signal`: a frame for every connection of user `to`.
#[derive(Debug)]
pub struct Signal {
    pub to: String,
    pub call: String,
    pub data: Box<RawValue>,
}

impl Op {
    /// Operations that write or fan out, and so count against the rate limit.
    pub fn is_costly(&self) -> bool {
        matches!(
            self,
            Op::Publish(_) | Op::Typing(_) | Op::Edit(_) | Op::Delete(_) | Op::Signal(_)
        )
    }
}

/// The envelope with every known parameter left raw, so that each one can be type
/// checked with a precise message.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    op: Option<&'a RawValue>,
    #[serde(borrow)]
    channel: Option<&'a RawValue>,
    #[serde(borrow)]
    since: Option<&'a RawValue>,
    #[serde(borrow)]
    epoch: Option<&'a RawValue>,
    #[serde(borrow)]
    limit: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    client_id: Option<&'a RawValue>,
    #[serde(borrow)]
    before: Option<&'a RawValue>,
    #[serde(borrow)]
    after: Option<&'a RawValue>,
    #[serde(borrow)]
    seq: Option<&'a RawValue>,
    #[serde(borrow)]
    to: Option<&'a RawValue>,
    #[serde(borrow)]
    call: Option<&'a RawValue>,
    #[serde(borrow)]
    token: Option<&'a RawValue>,
}

fn is_null(v: Option<&RawValue>) -> bool {
    v.is_none_or(|v| v.get() == "null")
}

fn string(name: &str, v: Option<&RawValue>, max: usize) -> Result<String, AppError> {
    let v = v
        .filter(|v| v.get() != "null")
        .ok_or_else(|| AppError::bad_request(format!("missing `{name}`")))?;
    let s: String =
        serde_json::from_str(v.get()).map_err(|_| AppError::bad_request(format!("`{name}` must be a string")))?;
    if s.len() > max {
        return Err(AppError::bad_request(format!("`{name}` longer than {max} bytes")));
    }
    Ok(s)
}

fn opt_string(name: &str, v: Option<&RawValue>, max: usize) -> Result<Option<String>, AppError> {
    if is_null(v) {
        Ok(None)
    } else {
        string(name, v, max).map(Some)
    }
}

fn opt_int(name: &str, v: Option<&RawValue>) -> Result<Option<i64>, AppError> {
    if is_null(v) {
        return Ok(None);
    }
    let n: i64 = serde_json::from_str(v.unwrap().get())
        .map_err(|_| AppError::bad_request(format!("`{name}` must be an integer")))?;
    if n < 0 {
        return Err(AppError::bad_request(format!("`{name}` must not be negative")));
    }
    Ok(Some(n))
}

fn int(name: &str, v: Option<&RawValue>) -> Result<i64, AppError> {
    opt_int(name, v)?.ok_or_else(|| AppError::bad_request(format!("missing `{name}`")))
}

fn object(name: &str, v: Option<&RawValue>) -> Result<Box<RawValue>, AppError> {
    let v = v
        .filter(|v| v.get() != "null")
        .ok_or_else(|| AppError::bad_request(format!("missing `{name}`")))?;
    if !v.get().starts_with('{') {
        return Err(AppError::bad_request(format!("`{name}` must be a JSON object")));
    }
    Ok(v.to_owned())
}

/// The checks every `data` object passes, whatever path it came by: a JSON object of
/// at most `max` bytes.
pub fn check_data(data: &RawValue, max: usize) -> Result<(), AppError> {
    if !data.get().starts_with('{') {
        return Err(AppError::bad_request("`data` must be a JSON object"));
    }
    if data.get().len() > max {
        return Err(AppError::too_large(format!("data is larger than {max} bytes")));
    }
    Ok(())
}

/// Longest channel name accepted anywhere.
pub const MAX_CHANNEL_LEN: usize = 160;

/// Longest presence cursor accepted.
pub const MAX_CURSOR_LEN: usize = 1024;

impl Request {
    /// Decodes one text frame. On failure returns the request id (when it could be
    /// read) together with the error to reply with.
    pub fn parse(text: &str) -> Result<Request, (Option<i64>, AppError)> {
        let w: Wire = match serde_json::from_str(text) {
            Ok(w) => w,
            Err(e) => {
                let msg = if e.is_data() {
                    "a request must be a JSON object"
                } else {
                    "malformed JSON"
                };
                return Err((None, AppError::bad_request(msg)));
            }
        };
        let id = w.id.and_then(|v| serde_json::from_str::<i64>(v.get()).ok());
        if w.id.is_some_and(|v| v.get() != "null") && id.is_none() {
            return Err((None, AppError::bad_request("`id` must be an integer")));
        }
        Self::op(&w).map(|op| Request { id, op }).map_err(|e| (id, e))
    }

    fn op(w: &Wire) -> Result<Op, AppError> {
        let op = string("op", w.op, 32)?;
        let ch = || string("channel", w.channel, MAX_CHANNEL_LEN);
        Ok(match op.as_str() {
            "auth" => Op::Auth {
                token: string("token", w.token, 8192)?,
            },
            "join" => Op::Join(Join {
                channel: ch()?,
                since: opt_int("since", w.since)?,
                epoch: opt_string("epoch", w.epoch, 64)?,
                limit: opt_int("limit", w.limit)?,
            }),
            "leave" => Op::Leave(Leave { channel: ch()? }),
            "publish" => Op::Publish(Publish {
                channel: ch()?,
                data: object("data", w.data)?,
                client_id: match opt_string("client_id", w.client_id, 64)? {
                    Some(c) if c.is_empty() => return Err(AppError::bad_request("`client_id` must not be empty")),
                    c => c,
                },
            }),
            "history" => Op::History(History {
                channel: ch()?,
                before: opt_int("before", w.before)?,
                after: opt_int("after", w.after)?,
                limit: opt_int("limit", w.limit)?,
            }),
            "presence" => Op::Presence(Presence {
                channel: ch()?,
                after: opt_string("after", w.after, MAX_CURSOR_LEN)?,
                limit: opt_int("limit", w.limit)?,
            }),
            "typing" => Op::Typing(Typing { channel: ch()? }),
            "read" => Op::Read(Read {
                channel: ch()?,
                seq: int("seq", w.seq)?,
            }),
            "channels" => Op::Channels,
            "edit" => Op::Edit(Edit {
                channel: ch()?,
                seq: int("seq", w.seq)?,
                data: object("data", w.data)?,
            }),
            "delete" => Op::Delete(Delete {
                channel: ch()?,
                seq: int("seq", w.seq)?,
            }),
            "signal" => Op::Signal(Signal {
                to: string("to", w.to, 128)?,
                call: string("call", w.call, 128)?,
                data: object("data", w.data)?,
            }),
            "ping" => Op::Ping,
            "admin_stats" => Op::AdminStats,
            other => {
                let shown: String = other.chars().take(32).collect();
                return Err(AppError::bad_request(format!("unknown op `{shown}`")));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (Option<i64>, String) {
        let (id, e) = Request::parse(text).unwrap_err();
        (id, e.message)
    }

    #[test]
    fn parses_publish() {
        let r = Request::parse(
            r#"{"id":3,"op":"publish","channel":"room:a","data":{"type":"text","text":"hi"},"client_id":"c1"}"#,
        )
        .unwrap();
        assert_eq!(r.id, Some(3));
        match r.op {
            Op::Publish(Publish {
                channel,
                data,
                client_id,
            }) => {
                assert_eq!(channel, "room:a");
                assert_eq!(data.get(), r#"{"type":"text","text":"hi"}"#);
                assert_eq!(client_id.as_deref(), Some("c1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_keep_the_id() {
        assert_eq!(err("not json").0, None);
        assert_eq!(err("[1,2]").0, None);
        assert_eq!(err(r#"{"id":5,"op":"nope"}"#).0, Some(5));
        let (id, m) = err(r#"{"id":6,"op":"join","channel":7}"#);
        assert_eq!((id, m.as_str()), (Some(6), "`channel` must be a string"));
        let (id, m) = err(r#"{"id":7,"op":"publish","channel":"room:a","data":[1]}"#);
        assert_eq!((id, m.as_str()), (Some(7), "`data` must be a JSON object"));
        let (_, m) = err(&format!(
            r#"{{"id":8,"op":"publish","channel":"room:a","data":{{}},"client_id":"{}"}}"#,
            "x".repeat(65)
        ));
        assert!(m.contains("longer than 64"));
        assert_eq!(err(r#"{"id":9,"op":"join","channel":"room:a","since":-1}"#).0, Some(9));
        assert_eq!(err(r#"{"id":"x","op":"ping"}"#).0, None);
        assert_eq!(err(r#"{"id":10}"#).1, "missing `op`");
    }

    #[test]
    fn null_optional_params_are_absent() {
        let r = Request::parse(r#"{"id":1,"op":"join","channel":"room:a","since":null}"#).unwrap();
        assert!(matches!(r.op, Op::Join(Join { since: None, .. })));
    }
}
