//! The worst case of `*` patterns (issue 12, item 5): a pattern `*aaa…ab` against a long run of
//! `a`s is what makes a backtracking matcher quadratic.
//!
//! - `glob/worst_ascii`: a 1,024-byte pattern (the longest a subject may be) against the
//!   11,000-byte `sub` of a token that still fits in 16 KiB.
//! - `glob/worst_multibyte`: the same in two-byte characters (the limits count bytes).
//! - `glob/worst_middle_piece`, `glob/worst_many_pieces`: the worst cases of the linear matcher
//!   itself, where no suffix check ends it early: `*aaa…ab*` (one long piece searched through
//!   the whole value) and `*a*a*…*a*b*` (511 pieces, then a search through the rest).
//! - `policy/worst_50_entries`: what one such exchange asks of the matcher: 50 entries of
//!   that pattern against the claims, none matching; `policy/worst_50_entries_middle`: the
//!   same with the linear matcher's own worst pattern, `*aaa…ab*`.

use criterion::{Criterion, criterion_group, criterion_main};
use fedgate::oidc::policy::{FederationEntry, glob, matching_entry};
use serde_json::json;
use std::hint::black_box;

const ISSUER: &str = "https://token.actions.githubusercontent.com";

fn benches(c: &mut Criterion) {
    let ascii_pattern = format!("*{}b", "a".repeat(1022));
    let ascii_value = "a".repeat(11_000);
    let wide_pattern = format!("*{}b", "é".repeat(511));
    let wide_value = "é".repeat(5_500);
    assert_eq!((ascii_pattern.len(), wide_pattern.len()), (1024, 1024));

    let mut group = c.benchmark_group("glob");
    group.bench_function("worst_ascii", |b| {
        b.iter(|| assert!(!glob(black_box(&ascii_pattern), black_box(&ascii_value))))
    });
    group.bench_function("worst_multibyte", |b| {
        b.iter(|| assert!(!glob(black_box(&wide_pattern), black_box(&wide_value))))
    });
    let middle = format!("*{}b*", "a".repeat(1021));
    group.bench_function("worst_middle_piece", |b| {
        b.iter(|| assert!(!glob(black_box(&middle), black_box(&ascii_value))))
    });
    let many = format!("*{}b*", "a*".repeat(510));
    assert!(middle.len() <= 1024 && many.len() <= 1024);
    group.bench_function("worst_many_pieces", |b| {
        b.iter(|| assert!(!glob(black_box(&many), black_box(&ascii_value))))
    });
    group.finish();

    let entries: Vec<FederationEntry> = (0..50)
        .map(|i| FederationEntry {
            issuer: ISSUER.into(),
            subject: format!("*{}b{i}", "a".repeat(1017)).into(),
            audiences: ["https://github.com/octo-org".into()].into(),
            conditions: Default::default(),
            preset: None,
        })
        .collect();
    let claims = fedgate::oidc::verify::claims(
        json!({"iss": ISSUER, "sub": ascii_value, "aud": "https://github.com/octo-org", "exp": 1})
            .as_object()
            .unwrap()
            .clone(),
    )
    .unwrap();
    c.bench_function("policy/worst_50_entries", |b| {
        b.iter(|| assert!(matching_entry(&entries, &claims, &[], "acme+ci").is_err()))
    });
    let middle: Vec<FederationEntry> = entries
        .iter()
        .map(|e| FederationEntry {
            subject: format!("{}*", e.subject).into(),
            ..e.clone()
        })
        .collect();
    c.bench_function("policy/worst_50_entries_middle", |b| {
        b.iter(|| assert!(matching_entry(&middle, &claims, &[], "acme+ci").is_err()))
    });
}

criterion_group! {
    name = policy_benches;
    config = Criterion::default().sample_size(20);
    targets = benches
}
criterion_main!(policy_benches);
