//! The replay ledger's journal: what makes a record decided in memory survive a crash.
//!
//! A directory beside the database (`<database>-replays/`, as SQLite's own `-wal` and `-shm`)
//! holds segment files of one line per record, `<key as 32 hex digits> <expires_at>`. A record
//! is appended with one `write` on the exchange's own thread before the exchange answers: the
//! line is then in the kernel's page cache, so a crash of fedgate (kill -9, OOM) forgets
//! nothing, and it costs microseconds instead of a hop to a database thread and a commit.
//! Every second the current segment is synced to disk (a power loss forgets at most the last
//! second, as SQLite's `synchronous = NORMAL` did and Redis's `appendfsync everysec` does);
//! every minute a new one is started, and a segment is deleted once every record in it has
//! expired. A torn last line (power loss mid-write) is skipped when read.
//!
//! The directory holds a `lock` file, locked exclusively while a ledger has it open, so two
//! `fedgate serve` processes can never each decide replays for the same database.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, RwLock};

use super::Unix;
use super::replay_ledger::{Key, LedgerError};

/// How long a segment takes appends before the next one starts.
const SEGMENT_SECONDS: Unix = 60;

/// The segments of one database's replay records.
#[derive(Debug)]
pub(super) struct Journal {
    dir: PathBuf,
    /// Appends take it shared; only starting a segment takes it exclusively.
    current: RwLock<Segment>,
    /// Segments no longer appended to, each with the latest expiry it holds.
    sealed: Mutex<Vec<(PathBuf, Unix)>>,
    /// The latest time the ledger was told (the store's callers' clock, not this module's).
    now: AtomicI64,
    _lock: File,
}

#[derive(Debug)]
struct Segment {
    file: File,
    path: PathBuf,
    number: u64,
    opened_at: Unix,
    latest_expiry: AtomicI64,
}

impl Segment {
    /// Creates segment `number` in `dir`, and syncs `dir` so the file survives a power loss.
    fn create(dir: &Path, number: u64, now: Unix) -> std::io::Result<Self> {
        let path = dir.join(format!("{number:010}.log"));
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)?;
        File::open(dir)?.sync_all()?;
        Ok(Self {
            file,
            path,
            number,
            opened_at: now,
            latest_expiry: AtomicI64::new(Unix::MIN),
        })
    }
}

impl Journal {
    /// Locks `dir` (created if missing) and starts a segment; returns the journal and every
    /// record still live at `now`. Segments with nothing live are deleted.
    pub(super) fn open(dir: &Path, now: Unix) -> Result<(Self, Vec<(Key, Unix)>), LedgerError> {
        let io = |e| LedgerError::Journal(dir.to_path_buf(), e);
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(LedgerError::Locked(lock_path)),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut live = Vec::new();
        let mut sealed = Vec::new();
        let mut last_number = 0;
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let Some(number) = segment_number(&path) else {
                continue;
            };
            last_number = last_number.max(number);
            let text = std::fs::read(&path).map_err(io)?;
            let before = live.len();
            live.extend(parse_records(&text).filter(|(_, until)| *until >= now));
            match live[before..].iter().map(|(_, until)| *until).max() {
                Some(latest) => sealed.push((path, latest)),
                None => std::fs::remove_file(&path).map_err(io)?,
            }
        }
        let current = Segment::create(dir, last_number + 1, now).map_err(io)?;
        let journal = Self {
            dir: dir.to_path_buf(),
            current: RwLock::new(current),
            sealed: Mutex::new(sealed),
            now: AtomicI64::new(now),
            _lock: lock,
        };
        Ok((journal, live))
    }

    /// Moves the journal's clock to `now` (never back).
    pub(super) fn observe(&self, now: Unix) {
        self.now.fetch_max(now, Ordering::Relaxed);
    }

    /// Appends one record; once it returns, a crash of this process no longer loses it.
    pub(super) fn append(&self, key: Key, expires_at: Unix, now: Unix) -> std::io::Result<()> {
        self.observe(now);
        let line = format!("{key:032x} {expires_at}\n");
        let current = self.current.read().expect("journal lock poisoned");
        // One `write` of an `O_APPEND` file: concurrent lines never interleave.
        (&current.file).write_all(line.as_bytes())?;
        current
            .latest_expiry
            .fetch_max(expires_at, Ordering::Relaxed);
        Ok(())
    }

    /// Syncs what was appended, starts a new segment once the current one is a minute old and
    /// deletes the segments whose records all expired, by the latest time observed. Blocking:
    /// run it off the async workers, every second.
    pub(super) fn maintain(&self) -> std::io::Result<()> {
        let now = self.now.load(Ordering::Relaxed);
        // The next segment's number, once the current one is a minute old.
        let next_number = {
            let current = self.current.read().expect("journal lock poisoned");
            current.file.sync_data()?;
            (now >= current.opened_at + SEGMENT_SECONDS).then_some(current.number + 1)
        };
        if let Some(number) = next_number {
            let next = Segment::create(&self.dir, number, now)?;
            let old = std::mem::replace(
                &mut *self.current.write().expect("journal lock poisoned"),
                next,
            );
            // Lines appended between the sync above and the swap.
            old.file.sync_data()?;
            let latest = old.latest_expiry.load(Ordering::Relaxed);
            self.sealed
                .lock()
                .expect("journal lock poisoned")
                .push((old.path, latest));
        }
        let mut sealed = self.sealed.lock().expect("journal lock poisoned");
        let mut deleted = Ok(());
        sealed.retain(|(path, latest)| {
            if *latest >= now {
                return true;
            }
            match std::fs::remove_file(path) {
                Ok(()) => false,
                Err(e) => {
                    deleted = Err(e);
                    true
                }
            }
        });
        deleted
    }

    /// Replaces the current segment's handle (tests: a read-only one makes appends fail as a
    /// full or failing disk would); returns the one it replaced.
    #[cfg(test)]
    pub(super) fn replace_file(&self, file: File) -> File {
        std::mem::replace(&mut self.current.write().unwrap().file, file)
    }

    /// Syncs the current segment (at shutdown).
    pub(super) fn sync(&self) -> std::io::Result<()> {
        let current = self.current.read().expect("journal lock poisoned");
        current.file.sync_data()
    }
}

/// `0000000042.log` is segment 42.
fn segment_number(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".log")?.parse().ok()
}

/// The records of a segment's text; lines that do not read as one (a torn last line) are
/// skipped.
fn parse_records(text: &[u8]) -> impl Iterator<Item = (Key, Unix)> + '_ {
    text.split(|b| *b == b'\n').filter_map(|line| {
        let line = std::str::from_utf8(line).ok()?;
        let (key, until) = line.split_once(' ')?;
        if key.len() != 32 {
            return None;
        }
        Some((Key::from_str_radix(key, 16).ok()?, until.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replays");
        {
            let (journal, live) = Journal::open(&path, 100).unwrap();
            assert!(live.is_empty());
            journal.append(7, 200, 100).unwrap();
            journal.append(u128::MAX, 300, 100).unwrap();
            journal.append(8, 99, 100).unwrap();
        }
        // A power loss in the middle of a line.
        let segment = path.join("0000000001.log");
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(b"0123456789abcdef0123").unwrap();
        let (_journal, mut live) = Journal::open(&path, 100).unwrap();
        live.sort();
        assert_eq!(
            live,
            vec![(7, 200), (u128::MAX, 300)],
            "expired and torn lines dropped"
        );
    }

    #[test]
    fn a_second_journal_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_first, _) = Journal::open(dir.path(), 100).unwrap();
        match Journal::open(dir.path(), 100) {
            Err(LedgerError::Locked(path)) => assert_eq!(path, dir.path().join("lock")),
            other => panic!("a second journal opened: {other:?}"),
        }
    }

    #[test]
    fn segments_rotate_each_minute_and_go_once_every_record_expired() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path(), 1_000).unwrap();
        let maintain_at = |now| {
            journal.observe(now);
            journal.maintain().unwrap();
        };
        journal.append(1, 1_100, 1_000).unwrap();
        maintain_at(1_059);
        let segments = || {
            let mut names: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".log"))
                .collect();
            names.sort();
            names
        };
        assert_eq!(segments(), ["0000000001.log"], "rotated before a minute");
        maintain_at(1_060);
        assert_eq!(segments(), ["0000000001.log", "0000000002.log"]);
        journal.append(2, 1_200, 1_060).unwrap();
        maintain_at(1_100);
        assert_eq!(
            segments(),
            ["0000000001.log", "0000000002.log"],
            "1_100 is still live"
        );
        maintain_at(1_101);
        assert_eq!(segments(), ["0000000002.log"]);
        drop(journal);
        let (_journal, live) = Journal::open(dir.path(), 1_101).unwrap();
        assert_eq!(live, vec![(2, 1_200)]);
    }
}
