//! Provider presets: a federation entry may name a platform instead of raw claims,
//! `{"provider": "github", "repository": "acme/app", "ref": "refs/heads/main"}`, and the
//! preset expands it into the issuer, subject pattern and conditions that platform's tokens
//! need, closing the known traps on the way (docs/providers.md has one section per preset).
//!
//! - The expansion is stored and returned with the preset's fields, so GET hides nothing, and
//!   POSTing back what GET returned gives the same entry (Quay clients and the Ansible
//!   collection compare what they read with what they want).
//! - Immutable IDs (`repository_owner_id`, `project_id`, ...) are pinned: given by the admin,
//!   or recorded by the first successful exchange ([`pins_from`]; the write is in
//!   `crate::pinning`) and enforced as ordinary conditions afterwards.
//! - Every entry, preset or not, whose issuer is a known platform's is checked for patterns
//!   that can never match that platform's claims ([`check_entry`]).
//!
//! One file per provider, each a [`Spec`]; [`PROVIDERS`] registers them.

mod github;
mod gitlab;
mod google;
mod kubernetes;

use serde_json::{Map, Value};

use super::policy::{Accepted, ClaimLookup, Conditions, FederationEntry, claim};
use super::trust::is_template;
use super::verify::Claims;

/// Every preset, by the name an entry's `provider` gives.
pub const PROVIDERS: [&Spec; 4] = [
    &github::SPEC,
    &gitlab::SPEC,
    &kubernetes::SPEC,
    &google::SPEC,
];

/// What one provider knows.
pub struct Spec {
    pub name: &'static str,
    /// The fields a preset entry of this provider reads; other keys are dropped, as Quay
    /// drops unknown keys.
    pub fields: &'static [&'static str],
    /// Immutable IDs the provider pins, as (preset field, claim).
    pub pins: &'static [(&'static str, &'static str)],
    /// What the provider's claims look like (`sub` for the subject), with a hint for the
    /// admin whose pattern cannot match.
    pub shapes: &'static [(&'static str, Shape, &'static str)],
    /// Whether an issuer is certainly this provider's (self-hosted ones cannot be told).
    pub issues: fn(&str) -> bool,
    pub expand: fn(&Fields<'_>) -> Result<Expansion, String>,
}

/// What a preset's fields expand into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub issuer: String,
    pub subject: String,
    pub conditions: Vec<(String, Accepted)>,
    /// Claims to pin with these fields (an ID the fields name exactly): those the admin did
    /// not give are recorded by the first exchange.
    pub pinnable: Vec<&'static str>,
}

/// A preset entry's own state, kept with the expanded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    /// `provider` and the preset's fields as given (normalized): what GET shows.
    pub fields: Map<String, Value>,
    /// Claims the first successful exchange records (immutable IDs not given by the admin).
    pub pending_pins: Box<[Box<str>]>,
    /// When an exchange recorded the pins (Unix seconds).
    pub pinned_at: Option<i64>,
}

impl Preset {
    pub fn spec(&self) -> Option<&'static Spec> {
        self.fields
            .get("provider")
            .and_then(Value::as_str)
            .and_then(spec)
    }
}

pub fn spec(name: &str) -> Option<&'static Spec> {
    PROVIDERS.into_iter().find(|p| p.name == name)
}

/// The provider whose issuer this is, for checking raw entries.
fn spec_for_issuer(issuer: &str) -> Option<&'static Spec> {
    let issuer = issuer.strip_suffix('/').unwrap_or(issuer);
    PROVIDERS.into_iter().find(|p| (p.issues)(issuer))
}

/// How a claim's values look, to refuse patterns that can never match them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Decimal digits (numeric IDs, sent as strings).
    Digits,
    /// Starts with this text.
    Prefix(&'static str),
    /// Never starts with this text.
    NotPrefix(&'static str),
    /// One of these values.
    OneOf(&'static [&'static str]),
}

impl Shape {
    /// Whether some value of this shape matches `pattern` (`*`: any run of characters).
    pub fn can_match(self, pattern: &str) -> bool {
        let literal = pattern.split('*').next().unwrap_or_default();
        let wild = pattern.contains('*');
        match self {
            Shape::Digits => {
                !pattern.is_empty() && pattern.chars().all(|c| c == '*' || c.is_ascii_digit())
            }
            Shape::Prefix(prefix) if wild => {
                literal.starts_with(prefix) || prefix.starts_with(literal)
            }
            Shape::Prefix(prefix) => pattern.starts_with(prefix),
            Shape::NotPrefix(prefix) => !literal.starts_with(prefix),
            Shape::OneOf(values) => values.iter().any(|v| super::policy::glob(pattern, v)),
        }
    }
}

/// Typed access to a preset entry's fields, with messages that name the field.
pub struct Fields<'a> {
    provider: &'static str,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    pub fn error(&self, field: &str, why: impl std::fmt::Display) -> String {
        format!("provider {}: {field} {why}", self.provider)
    }

    /// A non-empty string, or `None` when absent, null or empty.
    pub fn text(&self, field: &str) -> Result<Option<&'a str>, String> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.error(field, "must be a string")),
        }
    }

    pub fn required(&self, field: &str) -> Result<&'a str, String> {
        self.text(field)?
            .ok_or_else(|| self.error(field, "is required"))
    }

    /// A pattern, or a list of 1 to 20 patterns.
    pub fn accepted(&self, field: &str) -> Result<Option<Accepted>, String> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(value) => Accepted::from_json(value, MAX_FIELD_CHARS)
                .map(Some)
                .ok_or_else(|| {
                    self.error(field, "must be a pattern or a list of 1 to 20 patterns")
                }),
        }
    }

    pub fn boolean(&self, field: &str) -> Result<Option<bool>, String> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.error(field, "must be true or false")),
        }
    }

    /// A numeric ID, as a string of digits (a JSON number is accepted too).
    pub fn id(&self, field: &str) -> Result<Option<String>, String> {
        let text = match self.map.get(field) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) if s.is_empty() => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(self.error(field, "must be a numeric ID")),
        };
        if text.len() > 32 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.error(field, format!("must be a numeric ID (got {text:?})")));
        }
        Ok(Some(text))
    }
}

/// Longest string a field may hold (as the entry's own fields).
const MAX_FIELD_CHARS: usize = 1024;

/// A preset entry expanded: the plain entry (a JSON object) and the preset's own state.
pub type Expanded = (Map<String, Value>, Preset);

/// Expands a preset entry (a JSON object with `provider`) into the plain entry the usual
/// validation takes (`issuer`, `subject`, `audiences`, `conditions`) and the [`Preset`] to
/// keep with it. `None` for an entry without `provider`.
///
/// An `issuer` or `subject` given with a preset must be what the preset expands to, and a
/// condition on a claim the preset checks must say the same: so what GET returned can be
/// POSTed back. Other conditions are kept, on top of the preset's.
pub fn expand_entry(item: &Map<String, Value>) -> Result<Option<Expanded>, String> {
    let name = match item.get("provider") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(name)) => name.as_str(),
        Some(_) => return Err("provider must be a string".into()),
    };
    let spec = spec(name).ok_or_else(|| {
        let known: Vec<_> = PROVIDERS.iter().map(|p| p.name).collect();
        format!("Unknown provider {name:?} (known: {})", known.join(", "))
    })?;
    let fields = Fields {
        provider: spec.name,
        map: item,
    };
    let expansion = (spec.expand)(&fields)?;

    for (key, expanded) in [
        ("issuer", &expansion.issuer),
        ("subject", &expansion.subject),
    ] {
        match item.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(given)) if given.is_empty() => {}
            Some(Value::String(given))
                if given == expanded
                    || (key == "issuer" && super::same_issuer(given, expanded)) => {}
            Some(given) => {
                return Err(format!(
                    "{key} {given} is not what provider {name} expands these fields to ({expanded:?}): leave {key} out of a preset entry, or change its fields"
                ));
            }
        }
    }
    let mut conditions: Vec<(String, Accepted)> = match item.get("conditions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(given)) => given
            .iter()
            .map(|(claim, value)| {
                Accepted::from_json(value, MAX_FIELD_CHARS)
                    .map(|a| (claim.clone(), a))
                    .ok_or_else(|| {
                        "conditions must map claim names to a pattern or a list of patterns"
                            .to_string()
                    })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(
                "conditions must map claim names to a pattern or a list of patterns".into(),
            );
        }
    };
    for (claim, accepted) in expansion.conditions {
        match conditions.iter().find(|(c, _)| *c == claim) {
            Some((_, given)) if *given != accepted => {
                return Err(format!(
                    "conditions.{claim} contradicts what provider {name} expands these fields to: leave it out, or change the preset's fields"
                ));
            }
            Some(_) => {}
            None => conditions.push((claim, accepted)),
        }
    }
    let pending_pins: Box<[Box<str>]> = expansion
        .pinnable
        .iter()
        .filter(|claim| !conditions.iter().any(|(c, _)| c == *claim))
        .map(|claim| Box::from(*claim))
        .collect();
    let pinned_at = match item.get("pinned_at") {
        Some(Value::String(date)) if pending_pins.is_empty() && !expansion.pinnable.is_empty() => {
            Some(crate::clock::parse_quay_date(date).ok_or_else(|| {
                format!("pinned_at {date:?} is not a date as GET shows it (leave it out)")
            })?)
        }
        _ => None,
    };

    let mut normalized = Map::new();
    normalized.insert("provider".into(), Value::String(spec.name.into()));
    for field in spec.fields {
        match item.get(*field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            // IDs are claims' text: a number given for one is shown as the string it checks.
            Some(Value::Number(n)) if spec.pins.iter().any(|(f, _)| f == field) => {
                normalized.insert((*field).to_string(), Value::String(n.to_string()));
            }
            Some(value) => {
                normalized.insert((*field).to_string(), value.clone());
            }
        }
    }
    let mut plain = Map::new();
    plain.insert("issuer".into(), Value::String(expansion.issuer));
    plain.insert("subject".into(), Value::String(expansion.subject));
    if let Some(audiences) = item.get("audiences") {
        plain.insert("audiences".into(), audiences.clone());
    }
    plain.insert(
        "conditions".into(),
        Value::Object(
            conditions
                .into_iter()
                .map(|(claim, accepted)| (claim, accepted_json(&accepted)))
                .collect(),
        ),
    );
    Ok(Some((
        plain,
        Preset {
            fields: normalized,
            pending_pins,
            pinned_at,
        },
    )))
}

fn accepted_json(accepted: &Accepted) -> Value {
    serde_json::to_value(accepted).unwrap_or(Value::Null)
}

/// Refuses an entry that can never match: a pattern its platform's claims cannot take (the
/// platform of its preset, or the one its issuer names), or an issuer template without a
/// tenant condition (which would trust every tenant of the cloud).
pub fn check_entry(entry: &FederationEntry) -> Result<(), String> {
    if is_template(&entry.issuer) {
        let pinned = entry
            .conditions
            .get("tid")
            .is_some_and(|tid| tid.patterns().all(|p| !p.contains('*')));
        if !pinned {
            return Err(format!(
                "Issuer {} accepts every tenant: add a condition on tid naming yours (without *)",
                entry.issuer
            ));
        }
    }
    let spec = match &entry.preset {
        Some(preset) => preset.spec(),
        None => spec_for_issuer(&entry.issuer),
    };
    let Some(spec) = spec else {
        return Ok(());
    };
    for (claim, shape, hint) in spec.shapes {
        let patterns: Vec<&str> = if *claim == "sub" {
            vec![&entry.subject]
        } else {
            match entry.conditions.get(claim) {
                Some(accepted) => accepted.patterns().collect(),
                None => continue,
            }
        };
        if let Some(never) = patterns.into_iter().find(|p| !shape.can_match(p)) {
            let what = if *claim == "sub" {
                "subject".to_string()
            } else {
                format!("conditions.{claim}")
            };
            return Err(format!(
                "{what}: pattern {never:?} can never match a {} token: {hint}",
                spec.name
            ));
        }
    }
    Ok(())
}

/// The entry as GET shows it: the expansion, and for a preset its fields, the values pinned
/// by an exchange (under their field names), `pinned_at` and the `pending_pins`.
pub fn view(entry: &FederationEntry) -> Value {
    let mut shown = match serde_json::to_value(entry) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let Some(preset) = &entry.preset else {
        return Value::Object(shown);
    };
    for (field, value) in &preset.fields {
        shown.insert(field.clone(), value.clone());
    }
    if let Some(spec) = preset.spec().filter(|s| !s.pins.is_empty()) {
        for (field, claim) in spec.pins {
            if let (false, Some(Accepted::One(value))) = (
                preset.fields.contains_key(*field),
                entry.conditions.get(claim),
            ) {
                shown.insert((*field).to_string(), Value::String(value.to_string()));
            }
        }
        shown.insert(
            "pinned_at".into(),
            preset
                .pinned_at
                .map_or(Value::Null, |at| Value::String(crate::clock::quay_date(at))),
        );
        if !preset.pending_pins.is_empty() {
            let pending = preset.pending_pins.iter().map(|claim| {
                let field = spec
                    .pins
                    .iter()
                    .find(|(_, c)| **c == **claim)
                    .map_or(&**claim, |(f, _)| *f);
                Value::String(field.to_string())
            });
            shown.insert("pending_pins".into(), Value::Array(pending.collect()));
        }
    }
    Value::Object(shown)
}

/// Claims of `entry` that hold a pinned immutable ID (given or recorded), for the dry run.
pub fn pinned_claims(entry: &FederationEntry) -> Vec<&'static str> {
    entry
        .preset
        .as_ref()
        .and_then(|p| p.spec())
        .map(|spec| {
            spec.pins
                .iter()
                .map(|(_, claim)| *claim)
                .filter(|claim| entry.conditions.get(claim).is_some())
                .collect()
        })
        .unwrap_or_default()
}

/// The values a token that matched `preset`'s entry gives its pending pins. A token without
/// one (or with a value that is no ID) cannot be the one to pin it.
pub fn pins_from(preset: &Preset, claims: &Claims) -> Result<Vec<(String, String)>, String> {
    preset
        .pending_pins
        .iter()
        .map(|name| {
            let value = match claim(&claims.all, name) {
                ClaimLookup::Found(Value::String(s)) => s.clone(),
                ClaimLookup::Found(Value::Number(n)) => n.to_string(),
                _ => {
                    return Err(format!(
                        "the token has no {name} to pin, which its federation entry needs"
                    ));
                }
            };
            if value.is_empty() || value.len() > 256 || value.contains('*') {
                return Err(format!("the token's {name} {value:?} cannot be pinned"));
            }
            Ok((name.to_string(), value))
        })
        .collect()
}

/// `conditions` with the pinned values added as exact conditions.
pub fn with_pins(conditions: &Conditions, pins: &[(String, String)]) -> Conditions {
    conditions
        .iter()
        .map(|(name, accepted)| (name.to_string(), accepted.clone()))
        .chain(
            pins.iter()
                .map(|(name, value)| (name.clone(), Accepted::from(value.as_str()))),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expand(v: Value) -> Result<(Map<String, Value>, Preset), String> {
        expand_entry(v.as_object().unwrap()).map(Option::unwrap)
    }

    #[test]
    fn shapes_refuse_patterns_that_can_never_match() {
        assert!(Shape::Digits.can_match("123"));
        assert!(Shape::Digits.can_match("12*"));
        assert!(!Shape::Digits.can_match("acme"));
        assert!(!Shape::Digits.can_match(""));
        assert!(Shape::Prefix("refs/").can_match("refs/heads/main"));
        assert!(Shape::Prefix("refs/").can_match("*"));
        assert!(Shape::Prefix("refs/").can_match("ref*"));
        assert!(Shape::Prefix("refs/").can_match("refs/tags/v*"));
        assert!(!Shape::Prefix("refs/").can_match("main"));
        assert!(!Shape::Prefix("refs/").can_match("main*"));
        assert!(
            !Shape::Prefix("refs/").can_match("refs"),
            "without a *, the pattern is the whole value"
        );
        assert!(Shape::NotPrefix("refs/").can_match("main"));
        assert!(!Shape::NotPrefix("refs/").can_match("refs/heads/main"));
        assert!(Shape::OneOf(&["true", "false"]).can_match("t*"));
        assert!(!Shape::OneOf(&["true", "false"]).can_match("yes"));
    }

    /// Empty strings and nulls are absent, wrong types are refused by name, IDs are at most
    /// 32 digits (a number given for one is its digits).
    #[test]
    fn preset_fields_are_read_strictly() {
        let map = json!({"empty": "", "null": null, "text": "acme", "number": 42,
            "yes": true, "no": false, "word": "yes", "list": ["a", "b*"],
            "id32": "1".repeat(32), "id33": "1".repeat(33), "letters": "12a"});
        let fields = Fields {
            provider: "github",
            map: map.as_object().unwrap(),
        };
        for absent in ["empty", "null", "missing"] {
            assert_eq!(fields.text(absent), Ok(None), "{absent}");
            assert!(fields.accepted(absent).unwrap().is_none(), "{absent}");
            assert_eq!(fields.id(absent), Ok(None), "{absent}");
            assert!(fields.required(absent).unwrap_err().contains("is required"));
        }
        assert_eq!(fields.text("text"), Ok(Some("acme")));
        assert_eq!(fields.required("text"), Ok("acme"));
        let err = fields.text("number").unwrap_err();
        assert_eq!(err, "provider github: number must be a string");
        assert!(fields.accepted("list").unwrap().is_some());
        assert!(fields.accepted("number").is_err());

        assert_eq!(fields.boolean("yes"), Ok(Some(true)));
        assert_eq!(fields.boolean("no"), Ok(Some(false)));
        assert_eq!(fields.boolean("null"), Ok(None));
        assert!(fields.boolean("word").is_err(), "\"yes\" is not a boolean");

        assert_eq!(fields.id("number"), Ok(Some("42".into())));
        assert_eq!(fields.id("id32"), Ok(Some("1".repeat(32))));
        assert!(fields.id("id33").is_err());
        assert!(fields.id("letters").is_err());
        assert!(fields.id("yes").is_err());
    }

    #[test]
    fn raw_entries_get_the_shapes_of_the_provider_that_certainly_issued_them() {
        let name = |issuer| spec_for_issuer(issuer).map(|s| s.name);
        assert_eq!(name(github::ISSUER), Some("github"));
        assert_eq!(
            name("https://token.actions.githubusercontent.com/acme"),
            Some("github")
        );
        assert_eq!(
            name("https://token.actions.githubusercontent.com.evil.example"),
            None,
            "a host that only starts like GitHub's"
        );
        assert_eq!(
            name("https://token.actions.githubusercontent.com/acme/more"),
            None,
            "an enterprise slug is one path segment"
        );
        assert_eq!(name(gitlab::GITLAB_COM), Some("gitlab"));
        assert_eq!(name("https://gitlab.com/"), Some("gitlab"));
        assert_eq!(name(google::ISSUER), Some("google"));
        // Self-hosted GitLab, a Kubernetes cluster, any other issuer: cannot be told apart.
        assert_eq!(name("https://gitlab.example.com"), None);
        assert_eq!(name("https://kubernetes.default.svc"), None);
        assert_eq!(name("https://idp.example"), None);
    }

    /// `pinned_at` (as GET shows it) is taken back only with every pin it dates: with a pin
    /// still pending, or for a preset that pins nothing, it is dropped. Empty strings are
    /// absent fields.
    #[test]
    fn pinned_at_comes_back_only_with_every_pin() {
        let date = "Fri, 10 May 2024 15:11:00 -0000";
        let pinned_at = |entry: Value| expand(entry).unwrap().1.pinned_at;
        let both = json!({"provider": "github", "repository": "acme/app",
            "repository_owner_id": "1", "repository_id": 2, "pinned_at": date});
        assert_eq!(pinned_at(both.clone()), crate::clock::parse_quay_date(date));
        assert_eq!(
            expand(both).unwrap().1.fields["repository_id"],
            "2",
            "an ID given as a number is shown as the text its claim holds"
        );
        let (_, google) = expand(json!({"provider": "google", "unique_id": 1234567890})).unwrap();
        assert_eq!(
            google.fields["unique_id"], "1234567890",
            "a provider's only ID too"
        );
        assert_eq!(
            pinned_at(json!({"provider": "github", "repository": "acme/app",
                "repository_owner_id": "1", "pinned_at": date})),
            None,
            "repository_id is still pending"
        );
        assert_eq!(
            pinned_at(
                json!({"provider": "kubernetes", "issuer": "https://k8s.example",
                "namespace": "ci", "service_account": "builder", "pinned_at": date})
            ),
            None,
            "nothing to pin"
        );
        assert!(
            expand(json!({"provider": "github", "repository": "acme/app",
                "repository_owner_id": "1", "repository_id": "2", "pinned_at": "yesterday"}))
            .unwrap_err()
            .contains("pinned_at")
        );
        let (plain, preset) = expand(json!({"provider": "github", "repository": "acme/app",
            "issuer": "", "subject": "", "environment": ""}))
        .unwrap();
        assert_eq!(plain["subject"], "*");
        assert!(
            !preset.fields.contains_key("environment"),
            "an empty field is not shown"
        );
    }

    /// An issuer template trusts every tenant of its cloud unless `tid` names the tenants,
    /// each without a `*`.
    #[test]
    fn an_issuer_template_needs_its_tenants_named_exactly() {
        let entry = |tid: Option<Value>| -> FederationEntry {
            let mut entry = json!({"subject": "*",
                "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0"});
            if let Some(tid) = tid {
                entry["conditions"] = json!({ "tid": tid });
            }
            serde_json::from_value(entry).unwrap()
        };
        for named in [json!("72f988bf"), json!(["72f988bf", "2d7a0c1e"])] {
            assert_eq!(check_entry(&entry(Some(named.clone()))), Ok(()), "{named}");
        }
        for open in [None, Some(json!("72f9*")), Some(json!(["72f988bf", "*"]))] {
            let err = check_entry(&entry(open.clone())).unwrap_err();
            assert!(err.contains("accepts every tenant"), "{open:?}: {err}");
        }
    }

    /// The first exchange pins the token's immutable IDs: a string, or a number as its digits;
    /// a value that is missing, empty, longer than 256 bytes or holds a `*` (it would pin a
    /// pattern) refuses the exchange instead.
    #[test]
    fn pins_are_taken_from_the_token_only_when_they_are_plain_values() {
        let (_, preset) = expand(json!({"provider": "github", "repository": "acme/app"})).unwrap();
        let pins = |owner_id: Value| {
            let claims = crate::oidc::verify::claims(
                json!({"iss": github::ISSUER, "sub": "repo:acme/app:ref:refs/heads/main",
                       "aud": "x", "exp": 1, "repository_owner_id": owner_id,
                       "repository_id": "99"})
                .as_object()
                .unwrap()
                .clone(),
            )
            .unwrap();
            pins_from(&preset, &claims)
        };
        let pinned = |owner: &str| {
            Ok(vec![
                ("repository_owner_id".to_string(), owner.to_string()),
                ("repository_id".to_string(), "99".to_string()),
            ])
        };
        assert_eq!(pins(json!("42")), pinned("42"));
        assert_eq!(pins(json!(42)), pinned("42"));
        assert_eq!(pins(json!("7".repeat(256))), pinned(&"7".repeat(256)));
        for unpinnable in [
            json!(""),
            json!("7".repeat(257)),
            json!("4*"),
            json!(null),
            json!(true),
        ] {
            assert!(pins(unpinnable.clone()).is_err(), "{unpinnable}");
        }
    }

    #[test]
    fn unknown_providers_and_fields() {
        assert!(
            expand_entry(json!({"issuer": "https://i"}).as_object().unwrap())
                .unwrap()
                .is_none()
        );
        let err = expand(json!({"provider": "bitbucket"})).unwrap_err();
        assert!(err.contains("github, gitlab, kubernetes, google"), "{err}");
        let (_, preset) = expand(json!({"provider": "github", "repository": "acme/app",
                                        "colour": "blue"}))
        .unwrap();
        assert!(
            !preset.fields.contains_key("colour"),
            "unknown keys dropped"
        );
    }

    #[test]
    fn what_get_returned_expands_to_the_same_entry() {
        let (plain, preset) = expand(json!({"provider": "github", "repository": "acme/app",
                                            "ref": ["refs/heads/main", "refs/tags/v*"],
                                            "conditions": {"actor": "octocat"}}))
        .unwrap();
        assert_eq!(
            preset.pending_pins.as_ref(),
            [Box::from("repository_owner_id"), Box::from("repository_id")]
        );
        let mut back = plain.clone();
        back.extend(preset.fields.clone());
        let (again, preset_again) = expand(Value::Object(back)).unwrap();
        assert_eq!(again, plain);
        assert_eq!(preset_again, preset);

        let mut contradicting = plain.clone();
        contradicting.extend(preset.fields.clone());
        contradicting["conditions"]["ref"] = json!("refs/heads/dev");
        assert!(
            expand(Value::Object(contradicting))
                .unwrap_err()
                .contains("conditions.ref contradicts")
        );
        let mut other_issuer = plain;
        other_issuer.extend(preset.fields);
        other_issuer["issuer"] = json!("https://gitlab.com");
        assert!(
            expand(Value::Object(other_issuer))
                .unwrap_err()
                .contains("leave issuer out")
        );
    }
}
