//! Shared by the benches: an identity issuer that signs GitHub-shaped RS256 tokens.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair};
use data_encoding::BASE64URL_NOPAD;
use fedgate::clock::{Clock, SystemClock};
use serde_json::json;

/// The identity issuer's RSA key, signing GitHub-shaped tokens.
pub struct IdentityIssuer {
    pub pair: RsaKeyPair,
}

impl IdentityIssuer {
    pub fn new() -> Self {
        Self {
            pair: RsaKeyPair::generate(KeySize::Rsa2048).unwrap(),
        }
    }

    pub fn jwks(&self) -> Vec<u8> {
        let public = self.pair.public_key();
        json!({"keys": [{
            "kty": "RSA", "kid": "bench", "alg": "RS256", "use": "sig",
            "n": BASE64URL_NOPAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": BASE64URL_NOPAD.encode(public.exponent().big_endian_without_leading_zero()),
        }]})
        .to_string()
        .into_bytes()
    }

    /// A GitHub-shaped token from `iss`, valid a day, with `jti-<jti>`.
    pub fn token(&self, iss: &str, jti: u64) -> String {
        let now = SystemClock.unix();
        let header = json!({"alg": "RS256", "kid": "bench", "typ": "JWT"});
        let claims = json!({
            "iss": iss, "sub": "repo:octo-org/octo-repo:ref:refs/heads/main",
            "aud": "https://github.com/octo-org", "jti": format!("jti-{jti}"),
            "iat": now, "nbf": now - 5, "exp": now + 86_400,
            "repository": "octo-org/octo-repo", "repository_owner_id": "123456",
            "ref": "refs/heads/main", "event_name": "push", "actor": "octocat",
            "workflow_ref": "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main",
            "runner_environment": "github-hosted", "run_id": "1234567890",
        });
        let input = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
            BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
        );
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{input}.{}", BASE64URL_NOPAD.encode(&sig))
    }
}

impl IdentityIssuer {
    /// A gateway state in process (SQLite in `dir`, rate limits off) that trusts this issuer's
    /// keys for any issuer URL, with organization `acme` administered by `admin`.
    pub async fn gateway_state(
        &self,
        dir: &std::path::Path,
        replay: bool,
    ) -> fedgate::app::AppState {
        let mut config = fedgate::config::Config::default();
        config.storage.database_url = format!("sqlite://{}/fedgate.db", dir.display());
        config.keys.dir = dir.join("keys");
        config.federation.replay_protection = replay;
        config.limits.failed_exchanges_per_minute_per_ip = 0;
        config.limits.exchanges_per_minute_per_robot = 0;
        let store = std::sync::Arc::new(
            fedgate::app::open_store(&config, fedgate::app::SchemaPolicy::Migrate)
                .await
                .unwrap(),
        );
        let state = fedgate::app::AppState::with_jwks_source(
            config,
            store,
            std::sync::Arc::new(SystemClock),
            std::sync::Arc::new(fedgate::rng::SystemRng::default()),
            std::sync::Arc::new(fedgate::oidc::keys::StaticJwksSource(self.jwks())),
        )
        .unwrap();
        state.store.create_user("admin", 0).await.unwrap();
        state.store.create_org("acme", "admin", 0).await.unwrap();
        state
    }
}

/// Measures `measured` against `base` interleaved, and prints `name`'s median per-round ratio
/// with its quartiles and both sides' median times. Each closure runs one round of `per_round`
/// iterations and returns the time its timed part took. Interleaved because this machine's
/// speed moves by up to 2x within a minute: two criterion figures taken a minute apart do not
/// divide into a stable ratio.
pub fn interleaved_ratio(
    name: &str,
    rounds: usize,
    per_round: u32,
    mut base: impl FnMut() -> std::time::Duration,
    mut measured: impl FnMut() -> std::time::Duration,
) {
    let (mut ratios, mut bases, mut measureds) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (b, m) = (base() / per_round, measured() / per_round);
        ratios.push(m.as_secs_f64() / b.as_secs_f64());
        bases.push(b);
        measureds.push(m);
    }
    ratios.sort_by(f64::total_cmp);
    bases.sort();
    measureds.sort();
    println!(
        "{name}  ratio median {:.3} (quartiles {:.3}-{:.3}); median per iteration {:.1?} against {:.1?}",
        ratios[rounds / 2],
        ratios[rounds / 4],
        ratios[3 * rounds / 4],
        measureds[rounds / 2],
        bases[rounds / 2],
    );
}
