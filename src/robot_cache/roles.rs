//! Robots' repository roles in memory, for `/v2/auth`'s warm path: every role of a robot is read
//! at once (one query) the first time it asks for a registry token, then served from here. The
//! [`super::RobotCache`] holds them beside the robot's policy and drops both on every change to
//! the robot, its token or its roles (made here, announced over Redis, or read from the change
//! log), so a role changed through one replica is enforced by every other within a second.

use crate::store::{Role, Store, StoreError};

/// All the repository roles of one robot.
#[derive(Debug)]
pub struct RobotRoles {
    /// The robot these roles belong to: a robot deleted and created again under the same name
    /// is another robot, with none of the old one's roles.
    pub robot_id: i64,
    /// Repository (without namespace) and role, sorted by repository.
    roles: Box<[(Box<str>, Role)]>,
}

impl RobotRoles {
    /// Reads every role of robot `robot_id` from `store`.
    pub async fn load(store: &dyn Store, robot_id: i64) -> Result<Self, StoreError> {
        let mut roles: Vec<(Box<str>, Role)> = store
            .robot_grants(robot_id)
            .await?
            .into_iter()
            .map(|grant| (grant.repository.into_boxed_str(), grant.role))
            .collect();
        roles.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            robot_id,
            roles: roles.into_boxed_slice(),
        })
    }

    /// The robot's role on `repository` of its namespace, if any.
    pub fn role(&self, repository: &str) -> Option<Role> {
        self.roles
            .binary_search_by(|(name, _)| (**name).cmp(repository))
            .ok()
            .map(|i| self.roles[i].1)
    }

    /// Bytes these roles hold, as the cache weighs them (see `RobotPolicy::weight`).
    pub fn weight(&self, name: &str) -> u64 {
        const ALLOCATION: usize = 16;
        let strings: usize = self
            .roles
            .iter()
            .map(|(repository, _)| size_of::<(Box<str>, Role)>() + repository.len() + ALLOCATION)
            .sum();
        (64 + name.len() + ALLOCATION + size_of::<Self>() + 2 * ALLOCATION + strings) as u64
    }
}
