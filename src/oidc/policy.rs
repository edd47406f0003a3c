//! Federation entries and how an identity matches them (SPEC 6 and 7.3 steps 5–6).
//!
//! In `subject` and in `conditions` values, `*` matches any run of characters (as AWS
//! `StringLike`); nothing else is special. A condition on a claim the token lacks fails.
//! Condition names may address nested claims with dots (`kubernetes.io.namespace`). A
//! condition's value is one pattern or a list of patterns, any one of which may match.
//!
//! [`evaluate`] checks one entry and says which check failed first; [`matching_entry`] (the
//! exchange) and the admin dry run (`api::federation_test`) both decide through it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::providers::Preset;
use super::trust::issuer_accepts;
use super::verify::Claims;
use super::{Refusal, RefusalCode};

/// One trust relationship: tokens from `issuer` whose `sub` matches `subject`, whose `aud`
/// holds one of `audiences` (or the gateway's defaults when empty), and whose claims match
/// every condition, may act as the robot.
///
/// Boxed and shared strings rather than `String`s and `Vec`s: every robot's entries are
/// cached, and issuers, audiences and claim names recur across robots, so the robot cache
/// keeps one copy of each ([`Interner`]; README, "Performance", the scale bench).
///
/// It is also the admin API's wire form of an entry, described in the OpenAPI document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(
    description = "One trust relationship: identity tokens from `issuer` whose `sub` \
    matches `subject`, whose `aud` holds one of the accepted audiences and whose claims match \
    every condition may act as the robot. An entry may instead name a provider preset \
    (`provider` and its fields, docs/providers.md); GET shows it expanded, with its fields, \
    pinned IDs, `pinned_at` and `pending_pins`."
)]
pub struct FederationEntry {
    /// The identity token's `iss`: an `https://` URL.
    #[schema(value_type = String)]
    pub issuer: Arc<str>,
    /// The `sub` to accept; `*` matches any run of characters.
    #[schema(value_type = String)]
    pub subject: Box<str>,
    /// Accepted `aud` values; none: `federation.audiences`, else the gateway's public URL.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub audiences: Box<[Arc<str>]>,
    /// Claim name (dots reach nested claims) → a pattern (`*` as in `subject`), or a list of
    /// patterns of which any one may match.
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, Object>)]
    pub conditions: Conditions,
    /// Set when the entry was made from a provider preset (`oidc::providers`): its fields, for
    /// GET, and the immutable IDs still to be pinned by the first exchange.
    #[serde(skip)]
    pub preset: Option<Box<Preset>>,
}

impl FederationEntry {
    /// The same entry, its recurring strings replaced by `interner`'s shared copies.
    pub fn interned(self, interner: &Interner) -> Self {
        Self {
            issuer: interner.get(&self.issuer),
            audiences: self.audiences.iter().map(|a| interner.get(a)).collect(),
            conditions: Conditions(
                self.conditions
                    .0
                    .into_iter()
                    .map(|(name, pattern)| (interner.get(&name), pattern))
                    .collect(),
            ),
            ..self
        }
    }
}

/// One shared copy of each issuer, audience and claim name seen. Forgets everything past
/// [`Interner::MAX_STRINGS`] strings or [`Interner::MAX_BYTES`] of text (strings of deleted
/// robots would otherwise stay, and a tenant could fill it with large ones); entries made
/// before keep their copies, so that costs memory, never correctness.
#[derive(Debug, Default)]
pub struct Interner(Mutex<InternedStrings>);

#[derive(Debug, Default)]
struct InternedStrings {
    set: HashSet<Arc<str>>,
    bytes: usize,
}

impl Interner {
    const MAX_STRINGS: usize = 100_000;
    const MAX_BYTES: usize = 8 * 1024 * 1024;

    pub fn get(&self, text: &str) -> Arc<str> {
        // A panic cannot leave the set inconsistent (each update is one insert).
        let mut strings = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(shared) = strings.set.get(text) {
            return shared.clone();
        }
        if strings.set.len() >= Self::MAX_STRINGS || strings.bytes + text.len() > Self::MAX_BYTES {
            *strings = InternedStrings::default();
        }
        let shared: Arc<str> = text.into();
        strings.set.insert(shared.clone());
        strings.bytes += text.len();
        shared
    }
}

/// Claim name → accepted values, sorted by name, written as a JSON object. A sorted slice
/// rather than a `BTreeMap`, whose first node alone costs about half a KiB however few
/// conditions it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions(Box<[(Arc<str>, Accepted)]>);

impl Conditions {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Accepted)> {
        self.0.iter().map(|(name, accepted)| (&**name, accepted))
    }

    pub fn get(&self, name: &str) -> Option<&Accepted> {
        self.iter().find(|(n, _)| *n == name).map(|(_, a)| a)
    }
}

/// Names are expected to be unique (they come from JSON objects); the first one is kept.
impl FromIterator<(String, Accepted)> for Conditions {
    fn from_iter<I: IntoIterator<Item = (String, Accepted)>>(pairs: I) -> Self {
        let mut pairs: Vec<_> = pairs.into_iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|later, first| later.0 == first.0);
        Self(
            pairs
                .into_iter()
                .map(|(name, accepted)| (name.into(), accepted))
                .collect(),
        )
    }
}

/// One pattern per claim, the form every condition had before lists.
impl FromIterator<(String, String)> for Conditions {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        pairs
            .into_iter()
            .map(|(name, pattern)| (name, Accepted::One(pattern.into())))
            .collect()
    }
}

impl Serialize for Conditions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Conditions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(BTreeMap::<String, Accepted>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// What a condition accepts: one pattern (a JSON string), or a non-empty list of patterns
/// (a JSON array) of which any one may match. Each may use `*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Accepted {
    One(Box<str>),
    AnyOf(Box<[Box<str>]>),
}

impl Accepted {
    /// Most patterns one condition may list.
    pub const MAX_PATTERNS: usize = 20;

    /// Reads a condition value from JSON: a string, or an array of 1 to
    /// [`MAX_PATTERNS`](Self::MAX_PATTERNS) strings, each at most `max_bytes` bytes.
    /// `None` for anything else.
    pub fn from_json(value: &Value, max_bytes: usize) -> Option<Self> {
        let pattern = |v: &Value| {
            v.as_str()
                .filter(|p| p.len() <= max_bytes)
                .map(Box::<str>::from)
        };
        match value {
            Value::Array(items) if (1..=Self::MAX_PATTERNS).contains(&items.len()) => items
                .iter()
                .map(pattern)
                .collect::<Option<_>>()
                .map(Accepted::AnyOf),
            Value::Array(_) => None,
            single => pattern(single).map(Accepted::One),
        }
    }

    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match self {
            Accepted::One(p) => (Some(&**p), &[][..]),
            Accepted::AnyOf(list) => (None, &list[..]),
        };
        one.into_iter().chain(many.iter().map(|p| &**p))
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Accepted::One(pattern) => glob(pattern, value),
            Accepted::AnyOf(list) => list.iter().any(|p| glob(p, value)),
        }
    }
}

impl From<&str> for Accepted {
    fn from(pattern: &str) -> Self {
        Accepted::One(pattern.into())
    }
}

/// `*` matches any run of characters, including none.
///
/// Linear in the lengths of pattern and value, whatever they hold: the pattern's literal
/// pieces between `*`s are found left to right, each at its first occurrence after the
/// previous one (for `*`-only patterns the leftmost match is always a safe choice), with
/// `str::find`'s Two-Way search, which is itself linear. A backtracking matcher is quadratic
/// on `*aaa…ab` against `aaa…a` (issue 12: 340 ms per exchange; `benches/policy.rs`).
/// Bytes rather than characters are compared, which is the same thing for UTF-8: a piece
/// can only match where a character starts.
pub fn glob(pattern: &str, value: &str) -> bool {
    let Some((prefix, starred)) = pattern.split_once('*') else {
        return pattern == value;
    };
    // `starred` is what follows the first `*`; the last piece must end the value.
    let (middle, suffix) = starred.rsplit_once('*').unwrap_or(("", starred));
    if prefix.len() + suffix.len() > value.len()
        || !value.starts_with(prefix)
        || !value.ends_with(suffix)
    {
        return false;
    }
    let mut rest = &value[prefix.len()..value.len() - suffix.len()];
    for piece in middle.split('*').filter(|p| !p.is_empty()) {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// A claim as text for matching: strings as they are, numbers and booleans as JSON writes them.
fn claim_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// What a condition's claim name finds in a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClaimLookup<'a> {
    Found(&'a Value),
    Missing,
    /// The name reads two ways in this token (see [`claim`]).
    Ambiguous,
}

/// Finds the claim a condition names.
///
/// A name starting with `/` is a JSON Pointer (RFC 6901: `/kubernetes.io/namespace`, `~1` for
/// `/`, `~0` for `~`) and names exactly one place. Any other name is a key, or a path through
/// nested objects with `.` between keys, so `kubernetes.io.namespace` finds
/// `{"kubernetes.io": {"namespace": …}}`. When the token offers more than one reading, say
/// `{"a.b": 1}` and `{"a": {"b": 2}}` for `a.b`, the name is [`ClaimLookup::Ambiguous`] and
/// satisfies no condition, whichever reading would match: where an issuer lets users add
/// claims, a flat claim must not stand in for the nested one a condition was written for.
///
/// Cost: each key of each object the name can reach is compared once with the rest of the
/// name, so a lookup is linear in the token's size however the name and token are built.
pub fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> ClaimLookup<'a> {
    if name.starts_with('/') {
        return json_pointer(claims, name).map_or(ClaimLookup::Missing, ClaimLookup::Found);
    }
    if !name.contains('.') {
        return claims
            .get(name)
            .map_or(ClaimLookup::Missing, ClaimLookup::Found);
    }
    let mut found = (None, 0);
    dotted_readings(claims, name, &mut found);
    match found {
        (Some(value), 1) => ClaimLookup::Found(value),
        (None, _) => ClaimLookup::Missing,
        _ => ClaimLookup::Ambiguous,
    }
}

/// Counts the readings of a dotted `path` in `object` (stopping at two), keeping the first.
fn dotted_readings<'a>(
    object: &'a Map<String, Value>,
    path: &str,
    found: &mut (Option<&'a Value>, usize),
) {
    for (key, value) in object {
        if found.1 >= 2 {
            return;
        }
        let Some(rest) = path.strip_prefix(key.as_str()) else {
            continue;
        };
        if rest.is_empty() {
            found.0.get_or_insert(value);
            found.1 += 1;
        } else if let (Some(rest), Value::Object(inner)) = (rest.strip_prefix('.'), value) {
            dotted_readings(inner, rest, found);
        }
    }
}

/// True when `name` is a well-formed JSON Pointer (every `~` followed by `0` or `1`).
pub fn is_json_pointer(name: &str) -> bool {
    name.starts_with('/')
        && name
            .split('~')
            .skip(1)
            .all(|after| after.starts_with('0') || after.starts_with('1'))
}

/// RFC 6901 over the claims object: object members by name, array elements by index.
fn json_pointer<'a>(claims: &'a Map<String, Value>, pointer: &str) -> Option<&'a Value> {
    if !is_json_pointer(pointer) {
        return None;
    }
    let mut tokens = pointer[1..].split('/');
    let unescape = |token: &str| token.replace("~1", "/").replace("~0", "~");
    let mut current = claims.get(&unescape(tokens.next()?))?;
    for token in tokens {
        current = match current {
            Value::Object(map) => map.get(&unescape(token))?,
            Value::Array(items) => {
                let index: usize = token.parse().ok().filter(|_| {
                    token == "0" || !token.starts_with('0') // no leading zeros (RFC 6901 §4)
                })?;
                items.get(index)?
            }
            _ => return None,
        };
    }
    Some(current)
}

/// The first check an entry fails, in the exchange's order, with what was expected (the
/// entry's configuration: only its administrators may see it) and what the token holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch<'a> {
    /// The entry trusts another issuer.
    Issuer { expected: &'a str },
    /// None of the token's `aud` is accepted by the entry's `audiences` (when empty: by the
    /// gateway's defaults, which the caller knows).
    Audience { expected: &'a [Arc<str>] },
    /// The token's `sub` does not match the entry's pattern.
    Subject { expected: &'a str },
    /// A condition fails; `received` is the claim as text (`None`: the token lacks it, or
    /// holds it more than one way, which `ambiguous` says; see [`claim`]).
    Condition {
        claim: &'a str,
        expected: &'a Accepted,
        received: Option<String>,
        ambiguous: bool,
    },
}

/// Checks one entry against verified claims: issuer, audience, subject, then each condition.
pub fn evaluate<'a>(
    entry: &'a FederationEntry,
    claims: &Claims,
    default_audiences: &[String],
) -> Result<(), Mismatch<'a>> {
    if !issuer_accepts(&entry.issuer, claims) {
        return Err(Mismatch::Issuer {
            expected: &entry.issuer,
        });
    }
    let accepted = |aud: &String| {
        if entry.audiences.is_empty() {
            default_audiences.contains(aud)
        } else {
            entry.audiences.iter().any(|a| **a == **aud)
        }
    };
    if !claims.aud.iter().any(accepted) {
        return Err(Mismatch::Audience {
            expected: &entry.audiences,
        });
    }
    if !glob(&entry.subject, &claims.sub) {
        return Err(Mismatch::Subject {
            expected: &entry.subject,
        });
    }
    for (name, accepted) in entry.conditions.iter() {
        let found = claim(&claims.all, name);
        let received = match found {
            ClaimLookup::Found(value) => claim_text(value),
            ClaimLookup::Missing | ClaimLookup::Ambiguous => None,
        };
        match &received {
            Some(text) if accepted.matches(text) => {}
            _ => {
                return Err(Mismatch::Condition {
                    claim: name,
                    expected: accepted,
                    received: received.map(Cow::into_owned),
                    ambiguous: found == ClaimLookup::Ambiguous,
                });
            }
        }
    }
    Ok(())
}

/// Finds the entry the identity satisfies, or says why none does. `entries` are the robot's
/// whole list; only those of the token's issuer are considered. The refusal names the
/// token's values and the robot, never the configured patterns.
pub fn matching_entry<'a>(
    entries: &'a [FederationEntry],
    claims: &Claims,
    default_audiences: &[String],
    robot: &str,
) -> Result<&'a FederationEntry, Refusal> {
    let mut audience_ok = false;
    let mut subject_ok = false;
    let mut first_failed_condition = None;
    for entry in entries {
        match evaluate(entry, claims, default_audiences) {
            Ok(()) => return Ok(entry),
            Err(Mismatch::Issuer { .. } | Mismatch::Audience { .. }) => {}
            Err(Mismatch::Subject { .. }) => audience_ok = true,
            Err(Mismatch::Condition {
                claim,
                received,
                ambiguous,
                ..
            }) => {
                audience_ok = true;
                subject_ok = true;
                first_failed_condition.get_or_insert((claim, received, ambiguous));
            }
        }
    }
    Err(if !audience_ok {
        Refusal::new(
            RefusalCode::AudienceMismatch,
            format!(
                "the token's aud {:?} is not an audience robot {robot} accepts",
                claims.aud
            ),
        )
    } else if !subject_ok {
        Refusal::new(
            RefusalCode::SubjectMismatch,
            format!(
                "the token's sub {:?} does not match a federation entry of robot {robot}",
                claims.sub
            ),
        )
    } else {
        let (name, received, ambiguous) = first_failed_condition.unwrap_or(("?", None, false));
        let received = match received {
            _ if ambiguous => {
                "found in more than one way; use a JSON Pointer such as /a/b to name one"
                    .to_string()
            }
            None => "missing".to_string(),
            Some(v) => format!("{v:?}"),
        };
        Refusal::new(
            RefusalCode::ClaimMismatch,
            format!(
                "the token's claim {name} ({received}) does not satisfy the conditions of robot {robot}"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_are_a_json_object_whatever_their_order() {
        let a: Conditions = serde_json::from_value(json!({"ref": "main", "actor": "x"})).unwrap();
        let b: Conditions = serde_json::from_value(json!({"actor": "x", "ref": "main"})).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"actor": "x", "ref": "main"})
        );
        assert!(serde_json::from_value::<Conditions>(json!({"ref": 1})).is_err());
        assert!(serde_json::from_value::<Conditions>(json!(["ref", "main"])).is_err());
    }

    #[test]
    fn a_condition_accepts_any_of_a_list() {
        let c: Conditions =
            serde_json::from_value(json!({"event_name": ["push", "work*"], "ref": "refs/*"}))
                .unwrap();
        let events = c.get("event_name").unwrap();
        assert!(events.matches("push") && events.matches("workflow_dispatch"));
        assert!(!events.matches("pull_request"));
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"event_name": ["push", "work*"], "ref": "refs/*"}),
            "one pattern stays a string, a list a list"
        );
        for bad in [json!([]), json!([1]), json!(["a", null]), json!({"a": "b"})] {
            assert!(Accepted::from_json(&bad, 10).is_none(), "{bad}");
        }
        assert!(Accepted::from_json(&json!("x".repeat(11)), 10).is_none());
        let many: Vec<_> = (0..=Accepted::MAX_PATTERNS)
            .map(|i| i.to_string())
            .collect();
        assert!(Accepted::from_json(&json!(many), 10).is_none());
        assert!(Accepted::from_json(&json!(many[1..]), 10).is_some());
    }

    #[test]
    fn interned_entries_share_their_recurring_strings() {
        let interner = Interner::default();
        let one = entry(
            json!({"issuer": "https://i", "subject": "a", "audiences": ["x"],
                               "conditions": {"ref": "main"}}),
        );
        let two = entry(
            json!({"issuer": "https://i", "subject": "b", "audiences": ["x"],
                               "conditions": {"ref": "dev"}}),
        );
        let (one, two) = (one.interned(&interner), two.interned(&interner));
        assert!(Arc::ptr_eq(&one.issuer, &two.issuer));
        assert!(Arc::ptr_eq(&one.audiences[0], &two.audiences[0]));
        assert!(Arc::ptr_eq(&one.conditions.0[0].0, &two.conditions.0[0].0));
        assert_eq!(
            serde_json::to_value(&two).unwrap(),
            json!({"issuer": "https://i", "subject": "b", "audiences": ["x"],
                   "conditions": {"ref": "dev"}}),
            "interning changes no value"
        );
    }

    #[test]
    fn patterns_lists_every_pattern_a_condition_accepts() {
        let one = Accepted::from("a*");
        assert_eq!(one.patterns().collect::<Vec<_>>(), ["a*"]);
        let any = Accepted::from_json(&json!(["x", "y*"]), 10).unwrap();
        assert_eq!(any.patterns().collect::<Vec<_>>(), ["x", "y*"]);
    }

    #[test]
    fn the_interner_forgets_everything_past_its_byte_budget_only() {
        let interner = Interner::default();
        let half = Interner::MAX_BYTES / 2;
        let (a, b) = ("a".repeat(half), "b".repeat(half));
        let first_a = interner.get(&a);
        interner.get(&b);
        assert!(
            Arc::ptr_eq(&first_a, &interner.get(&a)),
            "exactly MAX_BYTES of text is kept"
        );
        interner.get("c");
        assert!(
            !Arc::ptr_eq(&first_a, &interner.get(&a)),
            "one byte more starts afresh"
        );
    }

    #[test]
    fn the_interner_forgets_everything_past_its_string_budget_only() {
        let interner = Interner::default();
        let first = interner.get("0");
        for i in 1..Interner::MAX_STRINGS {
            interner.get(&i.to_string());
        }
        assert!(
            Arc::ptr_eq(&first, &interner.get("0")),
            "exactly MAX_STRINGS strings are kept"
        );
        interner.get("one more");
        assert!(
            !Arc::ptr_eq(&first, &interner.get("0")),
            "one string more starts afresh"
        );
    }

    #[test]
    fn conditions_count_their_claims() {
        let c: Conditions = [("b", "1"), ("a", "2"), ("b", "3")]
            .into_iter()
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect();
        assert_eq!((c.len(), c.is_empty()), (2, false), "one name once");
        assert_eq!(c.get("b"), Some(&Accepted::from("1")), "the first is kept");
        let none = Conditions::default();
        assert_eq!((none.len(), none.is_empty()), (0, true));
    }

    #[test]
    fn glob_is_string_like() {
        for (p, v) in [
            ("repo:acme/app:*", "repo:acme/app:ref:refs/heads/main"),
            ("*", ""),
            ("a*b*c", "aXXbYYc"),
            ("a*", "a"),
            ("*main", "refs/heads/main"),
            ("exact", "exact"),
            ("a**b", "ab"),
            ("ü*", "über"),
            ("*ab*ab*", "abab"),
        ] {
            assert!(glob(p, v), "{p} ~ {v}");
        }
        for (p, v) in [
            ("repo:acme/app:*", "repo:acme/app2:x"),
            ("exact", "exactly"),
            ("a*c", "ab"),
            ("?", "x"),
            ("[a]", "a"),
            ("", "x"),
            ("a*a", "a"),       // prefix and suffix may not overlap
            ("a*b*c", "aXc"),   // a middle piece must be found
            ("*ab*ab*", "abx"), // each piece after the one before
            ("*ab*ab*", "xabx"),
        ] {
            assert!(!glob(p, v), "{p} !~ {v}");
        }
    }

    fn claims(v: Value) -> Claims {
        super::super::verify::claims(v.as_object().unwrap().clone()).unwrap()
    }

    fn entry(v: Value) -> FederationEntry {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_most_specific_failure_is_reported() {
        let entries = vec![entry(json!({
            "issuer": "https://token.actions.githubusercontent.com/",
            "subject": "repo:acme/app:*",
            "audiences": ["reg"],
            "conditions": {"repository_owner_id": "42", "event_name": "push"}
        }))];
        let base = json!({"iss": "https://token.actions.githubusercontent.com", "sub": "repo:acme/app:ref:refs/heads/main",
                          "aud": "reg", "exp": 1, "repository_owner_id": 42, "event_name": "push"});
        assert!(
            matching_entry(&entries, &claims(base.clone()), &[], "acme+ci").is_ok(),
            "numbers match as text; trailing / ignored"
        );

        let mut wrong_aud = base.clone();
        wrong_aud["aud"] = json!(["other"]);
        let err =
            matching_entry(&entries, &claims(wrong_aud), &["reg".into()], "acme+ci").unwrap_err();
        assert_eq!(err.code, RefusalCode::AudienceMismatch);
        assert!(
            err.message.contains("other") && err.message.contains("acme+ci"),
            "{}",
            err.message
        );

        let mut wrong_sub = base.clone();
        wrong_sub["sub"] = json!("repo:evil/app:ref:refs/heads/main");
        let err = matching_entry(&entries, &claims(wrong_sub), &[], "acme+ci").unwrap_err();
        assert_eq!(err.code, RefusalCode::SubjectMismatch);
        assert!(err.message.contains("repo:evil/app") && !err.message.contains("repo:acme/app:*"));

        let mut wrong_event = base.clone();
        wrong_event["event_name"] = json!("pull_request");
        let err = matching_entry(&entries, &claims(wrong_event), &[], "acme+ci").unwrap_err();
        assert_eq!(err.code, RefusalCode::ClaimMismatch);
        assert!(
            err.message.contains("event_name") && err.message.contains("pull_request"),
            "{}",
            err.message
        );

        let mut missing = base;
        missing
            .as_object_mut()
            .unwrap()
            .remove("repository_owner_id");
        let err = matching_entry(&entries, &claims(missing), &[], "acme+ci").unwrap_err();
        assert_eq!(err.code, RefusalCode::ClaimMismatch);
        assert!(err.message.contains("missing"));
    }

    #[test]
    fn dotted_condition_names_reach_nested_claims_one_way_only() {
        let claims = json!({"kubernetes.io": {"namespace": "ci", "pod": {"name": "p1"}},
                            "a.b": "flat", "x": {"y.z": 1, "y": {"z": 2}}, "l": [{"m": 3}]});
        let map = claims.as_object().unwrap();
        let found = |v: Value| ClaimLookup::Found(Box::leak(Box::new(v)));
        assert_eq!(claim(map, "kubernetes.io.namespace"), found(json!("ci")));
        assert_eq!(claim(map, "kubernetes.io.pod.name"), found(json!("p1")));
        assert_eq!(claim(map, "a.b"), found(json!("flat")));
        assert_eq!(claim(map, "kubernetes.io.nope"), ClaimLookup::Missing);
        assert_eq!(claim(map, "x.y.z"), ClaimLookup::Ambiguous);
        assert_eq!(claim(map, "/x/y.z"), found(json!(1)));
        assert_eq!(claim(map, "/x/y/z"), found(json!(2)));
        assert_eq!(claim(map, "/kubernetes.io/namespace"), found(json!("ci")));
        assert_eq!(claim(map, "/l/0/m"), found(json!(3)));
        assert_eq!(claim(map, "/l/00/m"), ClaimLookup::Missing);
        assert_eq!(claim(map, "/a.b"), found(json!("flat")));
        assert_eq!(claim(map, "/a~2b"), ClaimLookup::Missing);
        assert!(is_json_pointer("/a~0b~1c") && !is_json_pointer("/a~") && !is_json_pointer("a"));
    }

    #[test]
    fn a_claim_found_two_ways_is_refused_and_named_so() {
        let entries = vec![entry(json!({"issuer": "https://i", "subject": "s",
            "audiences": ["a"], "conditions": {"a.b": "1"}}))];
        let c = claims(json!({"iss": "https://i", "sub": "s", "aud": "a", "exp": 1,
                              "a.b": "1", "a": {"b": "1"}}));
        let err = matching_entry(&entries, &c, &[], "r").unwrap_err();
        assert_eq!(err.code, RefusalCode::ClaimMismatch);
        assert!(
            err.message.contains("more than one way") && err.message.contains("a.b"),
            "{}",
            err.message
        );
    }

    #[test]
    fn boolean_claims_match_as_json_writes_them() {
        let entries = vec![entry(json!({"issuer": "https://i", "subject": "s",
            "audiences": ["a"], "conditions": {"ref_protected": "true"}}))];
        let token = |protected: Value| {
            claims(json!({"iss": "https://i", "sub": "s", "aud": "a", "exp": 1,
                          "ref_protected": protected}))
        };
        assert!(matching_entry(&entries, &token(json!(true)), &[], "r").is_ok());
        for other in [json!(false), json!("yes"), json!(null), json!([true])] {
            let err = matching_entry(&entries, &token(other.clone()), &[], "r").unwrap_err();
            assert_eq!(err.code, RefusalCode::ClaimMismatch, "{other}");
        }
    }

    #[test]
    fn default_audiences_apply_when_an_entry_lists_none() {
        let entries = vec![entry(json!({"issuer": "https://i", "subject": "s"}))];
        let c =
            claims(json!({"iss": "https://i", "sub": "s", "aud": ["x", "http://gw"], "exp": 1}));
        assert!(matching_entry(&entries, &c, &["http://gw".into()], "r").is_ok());
        assert_eq!(
            matching_entry(&entries, &c, &["http://other".into()], "r")
                .unwrap_err()
                .code,
            RefusalCode::AudienceMismatch
        );
    }
}
