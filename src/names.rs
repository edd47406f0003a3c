//! Name rules shared by robots, users, organizations and repositories.
//!
//! Each check returns the rule that was broken, written for the API client.

/// Longest short name and longest full robot name (`namespace+short`).
pub const MAX_NAME_LEN: usize = 255;

/// What a name is, for error messages.
#[derive(Debug, Clone, Copy)]
pub enum NameKind {
    Robot,
    Namespace,
    Repository,
}

impl NameKind {
    fn label(self) -> &'static str {
        match self {
            NameKind::Robot => "Robot name",
            NameKind::Namespace => "Namespace name",
            NameKind::Repository => "Repository name",
        }
    }
}

/// Checks `^[a-z0-9]+(?:[._-][a-z0-9]+)*$`, 2 to 255 characters.
pub fn check(kind: NameKind, name: &str) -> Result<(), String> {
    let label = kind.label();
    let len = name.chars().count();
    if !(2..=MAX_NAME_LEN).contains(&len) {
        return Err(format!(
            "{label} must be 2 to {MAX_NAME_LEN} characters long, got {len}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{label} may contain only lowercase letters, digits and the separators '.', '_', '-' (found {bad:?})"
        ));
    }
    let bytes = name.as_bytes();
    let is_sep = |b: u8| matches!(b, b'.' | b'_' | b'-');
    if is_sep(bytes[0]) || is_sep(bytes[bytes.len() - 1]) {
        return Err(format!("{label} must start and end with a letter or digit"));
    }
    if bytes.windows(2).any(|w| is_sep(w[0]) && is_sep(w[1])) {
        return Err(format!("{label} may not have two separators in a row"));
    }
    Ok(())
}

/// Builds and checks a robot's full name.
pub fn robot_full_name(namespace: &str, short: &str) -> Result<String, String> {
    check(NameKind::Robot, short)?;
    let full = format!("{namespace}+{short}");
    if full.len() > MAX_NAME_LEN {
        return Err(format!(
            "Robot full name {namespace}+… is {} characters; at most {MAX_NAME_LEN} are allowed",
            full.len()
        ));
    }
    Ok(full)
}

/// Splits `namespace+short`; `None` when the name has no `+`.
pub fn split_robot_name(full: &str) -> Option<(&str, &str)> {
    full.split_once('+')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_quay_style_names() {
        for ok in ["ci", "build-bot", "a.b_c-d", "x1", &"a".repeat(255)] {
            assert!(check(NameKind::Robot, ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_with_the_rule_broken() {
        for (bad, rule) in [
            ("a", "2 to 255"),
            (&"a".repeat(256) as &str, "2 to 255"),
            ("Bot", "lowercase"),
            ("a+b", "lowercase"),
            ("ünï", "lowercase"),
            ("-ab", "start and end"),
            ("ab.", "start and end"),
            ("a..b", "two separators"),
        ] {
            let err = check(NameKind::Robot, bad).unwrap_err();
            assert!(err.contains(rule), "{bad}: {err}");
        }
    }

    #[test]
    fn full_name_is_bounded() {
        assert_eq!(robot_full_name("acme", "ci").unwrap(), "acme+ci");
        let long_ns = "n".repeat(200);
        let err = robot_full_name(&long_ns, &"s".repeat(60)).unwrap_err();
        assert!(err.contains("at most 255"), "{err}");
    }
}
