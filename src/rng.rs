//! Randomness behind a trait, so tests can replace it. Production uses the operating system's
//! CSPRNG through aws-lc-rs.

/// The random source failed; nothing secret can be made.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the system random source failed")]
pub struct RandomUnavailable;

pub trait Rng: Send + Sync + 'static {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomUnavailable>;

    /// A uniformly random positive `i64` (row ids, revisions).
    fn positive_i64(&self) -> Result<i64, RandomUnavailable> {
        let mut buf = [0u8; 8];
        self.fill(&mut buf)?;
        Ok((u64::from_le_bytes(buf) >> 1) as i64)
    }
}

/// The operating system's CSPRNG.
#[derive(Debug, Default)]
pub struct SystemRng(aws_lc_rs::rand::SystemRandom);

impl Rng for SystemRng {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomUnavailable> {
        aws_lc_rs::rand::SecureRandom::fill(&self.0, dest).map_err(|_| RandomUnavailable)
    }
}
