-- Every change to what the robot cache holds (a robot deleted, its token replaced, its
-- federation list replaced), numbered in commit order. Replicas read it twice a second, so a
-- change reaches every replica even when its Redis notice was lost (src/shared/changes.rs).

-- One row: the number of the latest change. Updating it serializes changes, so numbers are
-- handed out in commit order and a reader that has seen N never misses N + 1.
CREATE TABLE change_counter (
    id         BIGINT PRIMARY KEY,
    generation BIGINT NOT NULL
);
INSERT INTO change_counter (id, generation) VALUES (1, 0);

CREATE TABLE robot_changes (
    generation BIGINT PRIMARY KEY,
    robot      TEXT NOT NULL   -- full name, namespace+short
);
