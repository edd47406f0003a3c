//! State that several replicas must agree on: replay records (in the store for now), rate-limit
//! counters and cache invalidation. Single node: memory and the database; Redis comes with the
//! replica work (SPEC section 9).

pub mod limits;
