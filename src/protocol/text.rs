//! Text hygiene at the edge: what may appear in identifiers and in names shown to
//! other users.

/// Unicode formatting characters that reorder the text around them (bidi embeddings,
/// overrides and isolates, and the marks): in a name they can make a file or user look
/// like another.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters of a user id (or entity id) that can appear in `dm:` and `loc:` names:
/// 1 to 128 of `[A-Za-z0-9_.@-]`.
pub fn valid_user_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c))
}

/// Does `s` hold a control character (C0, DEL, C1, NUL included)?
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A name fit to show: control and bidi characters removed, surrounding whitespace
/// trimmed, at most `max_chars` characters.
pub fn clean_name(s: &str, max_chars: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .collect::<String>()
        .trim()
        .chars()
        .take(max_chars)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_overrides() {
        assert!(has_control("a\0b"));
        assert!(has_control("tab\t"));
        assert!(has_control("\u{85}"));
        assert!(!has_control("café ✓"));
        assert_eq!(clean_name("  ev\u{202E}fdp.exe\u{0}  ", 64), "evfdp.exe");
        assert_eq!(clean_name("\u{2066}alice\u{2069}", 3), "ali");
        assert_eq!(clean_name("\n\t", 10), "");
    }
}
