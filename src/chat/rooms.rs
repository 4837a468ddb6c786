//! Rooms: listing, creating (public or private, with members), adding members; and
//! finding users to start a DM with.

use serde::Serialize;

use super::Chat;
use crate::{
    auth::{Identity, Role},
    channels::{normalize_room_name, valid_user_id, Namespace},
    error::{AppError, AppResult},
    protocol::UserRef,
    storage::{
        is_unique_violation,
        queries::{self, RoomInfo},
        Conn,
    },
};

/// Most members given at creation.
const MAX_INITIAL_MEMBERS: usize = 1000;

/// Most users a search returns.
const SEARCH_LIMIT: i64 = 20;

/// Public rooms and the private rooms the caller belongs to.
pub async fn list(chat: Chat, who: Identity) -> AppResult<Vec<RoomInfo>> {
    let id = who.user.id.clone();
    chat.db.run(move |c| queries::list_rooms(c, &id)).await
}

/// A new room.
pub struct NewRoom {
    pub name: String,
    pub private: bool,
    /// User ids to add besides the creator.
    pub members: Vec<String>,
}

/// A room as created.
#[derive(Debug, Serialize)]
pub struct Created {
    pub room: RoomInfo,
}

/// Creates a room with the caller (and any given users) as members.
pub async fn create(chat: Chat, who: Identity, new: NewRoom) -> AppResult<Created> {
    if who.anonymous {
        return Err(AppError::forbidden("log in to create rooms"));
    }
    let name = normalize_room_name(&new.name)?;
    if new.members.len() > MAX_INITIAL_MEMBERS {
        return Err(AppError::bad_request(format!(
            "at most {MAX_INITIAL_MEMBERS} members at creation"
        )));
    }
    chat.spend_room(&who)?;
    chat.spend(&who, 1)?;
    let (creator, private, members) = (who.user.clone(), new.private, new.members);
    let row = chat
        .db
        .run(move |c| {
            let members = members
                .iter()
                .map(|m| resolve_member(c, m))
                .collect::<AppResult<Vec<_>>>()?;
            queries::create_room(c, &name, private, &creator, &members)
        })
        .await?;
    Ok(Created {
        room: RoomInfo {
            channel: Namespace::Room.channel(&row.name),
            name: row.name,
            private: row.private,
            created_by: row.created_by,
            created_at: row.created_at,
            member: true,
        },
    })
}

/// The user added to a room.
#[derive(Debug, Serialize)]
pub struct Added {
    pub user: UserRef,
}

/// Adds user `user` to room `room` (members of the room and admins may).
pub async fn add_member(chat: Chat, who: Identity, room: &str, user: String) -> AppResult<Added> {
    let name = normalize_room_name(room)?;
    chat.db
        .run(move |c| {
            let channel = Namespace::Room.channel(&name);
            if queries::get_room(c, &name)?.is_none() {
                return Err(AppError::not_found(format!("no room {channel}")));
            }
            if who.role != Role::Admin && !queries::is_member(c, &channel, who.id())? {
                return Err(AppError::forbidden(format!("not a member of {channel}")));
            }
            let member = resolve_member(c, &user)?;
            match queries::add_member(c, &channel, &member) {
                Err(e) if !is_unique_violation(&e) => return Err(e.into()),
                _ => {}
            }
            Ok(Added { user: member })
        })
        .await
}

/// A registered user by id, or (users of an outside identity provider exist only in
/// their tokens) a user named by its id.
fn resolve_member(c: &mut Conn, user: &str) -> AppResult<UserRef> {
    if !valid_user_id(user) {
        return Err(AppError::bad_request(format!(
            "bad user id `{}`",
            user.chars().take(64).collect::<String>()
        )));
    }
    Ok(queries::find_user_by_id(c, user)?
        .map(|row| row.user_ref())
        .unwrap_or_else(|| UserRef::new(user, user)))
}

/// Users whose name contains `q` (case-insensitive), for starting a DM.
pub async fn search_users(chat: Chat, q: String) -> AppResult<Vec<UserRef>> {
    if q.len() > 64 {
        return Err(AppError::bad_request("query too long"));
    }
    chat.db
        .run(move |c| queries::search_users(c, q.trim(), SEARCH_LIMIT))
        .await
}
