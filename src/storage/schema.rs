//! Diesel table definitions (kept in step with `migrations/`).

diesel::table! {
    users (uid) {
        uid -> BigInt,
        name -> Text,
        name_lower -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> BigInt,
        token_version -> Integer,
    }
}

diesel::table! {
    rooms (name) {
        name -> Text,
        private -> Bool,
        created_by -> Text,
        created_at -> BigInt,
        archived -> Bool,
    }
}

diesel::table! {
    memberships (channel, user_id) {
        channel -> Text,
        user_id -> Text,
        user_name -> Text,
        joined_at -> BigInt,
    }
}

diesel::table! {
    channels (name) {
        name -> Text,
        seq -> BigInt,
        epoch -> Text,
    }
}

diesel::table! {
    messages (channel, seq) {
        channel -> Text,
        seq -> BigInt,
        ts -> BigInt,
        sender_id -> Text,
        sender_name -> Text,
        client_id -> Nullable<Text>,
        data -> Text,
        edited_ts -> Nullable<BigInt>,
        deleted -> Bool,
    }
}

diesel::table! {
    read_markers (user_id, channel) {
        user_id -> Text,
        channel -> Text,
        seq -> BigInt,
    }
}

diesel::table! {
    last_values (channel) {
        channel -> Text,
        seq -> BigInt,
        ts -> BigInt,
        sender_id -> Text,
        sender_name -> Text,
        data -> Text,
    }
}

diesel::table! {
    track_points (id) {
        id -> BigInt,
        entity -> Text,
        ts -> BigInt,
        lat -> Double,
        lon -> Double,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    users,
    rooms,
    memberships,
    channels,
    messages,
    read_markers,
    last_values,
    track_points
);

diesel::table! {
    blocks (user_id, blocked_id) {
        user_id -> Text,
        blocked_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    uploads (name) {
        name -> Text,
        user_id -> Text,
        size -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    bans (user_id) {
        user_id -> Text,
        reason -> Text,
        banned_by -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    revocations (id) {
        id -> BigInt,
        user_id -> Text,
        kind -> Text,
        version -> Integer,
        channel -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> BigInt,
        actor -> Text,
        action -> Text,
        target -> Text,
        reason -> Text,
    }
}

diesel::table! {
    mutes (channel, user_id) {
        channel -> Text,
        user_id -> Text,
        until_ms -> BigInt,
        reason -> Text,
        muted_by -> Text,
    }
}
