//! The other processes on this journal directory: in a graceful upgrade
//! the old and the new process overlap for as long as the old one's
//! streams run, both spending the same wallets (the design is in
//! [`crate::billing::peers`]). Each follows the others' journal files;
//! one lock file (`wallets.lock`, `flock`) is held across every change to
//! the wallets while peers are there, after applying what they wrote.
//!
//! The handshake: a process that finds a peer's journal writes an `ack`
//! naming it into its own, after its open holds and after it has stopped
//! emptying its journal; a starting process waits for the ack of each
//! live peer before it loads the wallets (journal lines first, then the
//! store, in one read). A peer that dies (its file lock is free) has its
//! last lines applied, its holds released, its records kept in the store,
//! and its file deleted. Alone again, a process goes back to the fast path.

use super::journal::Journal;
use super::StoreHandle;
use crate::billing::peers::PeerEnvelope;
use crate::billing::{Billing, LedgerRecord, PeerApply, PeerLine, Peers};
use crate::usage_totals::UsageTotals;
use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

/// How often the directory is looked at, and followed files read, while
/// peers are here.
const TICK: Duration = Duration::from_millis(20);

/// How often a process alone looks at the directory for a new peer: a
/// starting process waits up to [`ACK_WAIT`] for the ack, so a tenth of a
/// second more is nothing to it, and an idle gateway wakes 10 times a
/// second, not 50.
const ALONE_TICK: Duration = Duration::from_millis(100);

/// How long a starting process waits for a peer's ack: a peer that never
/// acks (a version without this) is then followed without one.
const ACK_WAIT: Duration = Duration::from_secs(10);

/// A peer's journal, read as it grows.
struct Follower {
    pid: u32,
    path: PathBuf,
    file: File,
    partial: Vec<u8>,
    /// Holds it made that this process mirrors, released if it dies.
    mirrored: HashSet<String>,
}

/// One line of a peer's journal.
pub enum Line {
    Peer(PeerLine),
    Record(LedgerRecord),
}

fn parse(line: &[u8]) -> Option<Line> {
    if line.starts_with(b"{\"peer\"") {
        return serde_json::from_slice::<PeerEnvelope>(line).ok().map(|e| Line::Peer(e.peer));
    }
    // A line torn by a crash mid-write was never acknowledged.
    serde_json::from_slice::<LedgerRecord>(line).ok().map(Line::Record)
}

pub struct FilePeers {
    dir: PathBuf,
    own: Option<PathBuf>,
    journal: Arc<Journal>,
    store: StoreHandle,
    shared: AtomicBool,
    /// Changes alone hold it to read; going shared takes it to write, so no
    /// change is half done, unjournaled, when the first peer arrives.
    mode: RwLock<()>,
    /// The lock file; its mutex orders this process's own changes too (a
    /// `flock` does not exclude threads of one process).
    lock: Mutex<File>,
    followers: Mutex<Vec<Follower>>,
    billing: OnceLock<Weak<Billing>>,
    /// The running totals, which count the peers' charges too.
    totals: OnceLock<Arc<UsageTotals>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn pid_of(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("journal-")?.strip_suffix(".jsonl")?.parse().ok()
}

impl FilePeers {
    pub fn new(dir: &Path, journal: Arc<Journal>, store: StoreHandle) -> Result<Arc<Self>, String> {
        let lock_path = dir.join("wallets.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("{}: {e}", lock_path.display()))?;
        Ok(Arc::new(Self {
            dir: dir.to_path_buf(),
            own: journal.path(),
            journal,
            store,
            shared: AtomicBool::new(false),
            mode: RwLock::new(()),
            lock: Mutex::new(lock),
            followers: Mutex::new(Vec::new()),
            billing: OnceLock::new(),
            totals: OnceLock::new(),
        }))
    }

    /// Follows every live peer's journal now, acknowledging each, and
    /// waits for their acks of this process (at most [`ACK_WAIT`]).
    pub fn meet(&self) {
        self.scan();
        let me = std::process::id();
        let deadline = Instant::now() + ACK_WAIT;
        for path in self.followed_paths() {
            while !acked(&path, me) {
                if Instant::now() > deadline {
                    log::warn!(
                        target: "tollgate",
                        "{}: no ack from that process; its changes are followed from now on, but a \
                         call it admitted meanwhile may overdraw a wallet",
                        path.display()
                    );
                    break;
                }
                std::thread::sleep(TICK);
            }
        }
        if locked(&self.followers).is_empty() {
            // Alone: this process's lines go through a mapping from now on.
            self.journal.set_followed(false);
        }
    }

    /// Reads every followed journal from its start, under the shared lock
    /// the caller holds (see [`Self::with_lock`]): what a starting process
    /// applies over the store.
    pub fn read_all(&self) -> Vec<Line> {
        let mut lines = Vec::new();
        for f in locked(&self.followers).iter_mut() {
            let _ = f.file.seek(SeekFrom::Start(0));
            f.partial.clear();
            for line in read_new(f) {
                track(f, &line);
                lines.push(line);
            }
        }
        lines
    }

    /// Runs `f` under the lock every process on the directory shares.
    pub fn with_lock<T>(&self, f: impl FnOnce() -> T) -> T {
        let file = locked(&self.lock);
        if let Err(e) = file.lock() {
            log::error!(target: "tollgate", "wallets.lock: {e}");
        }
        let out = f();
        let _ = file.unlock();
        out
    }

    /// From now on changes to `billing` go through these peers, and the
    /// directory is watched.
    pub fn start(self: &Arc<Self>, billing: &Arc<Billing>, totals: &Arc<UsageTotals>) {
        let _ = self.billing.set(Arc::downgrade(billing));
        let _ = self.totals.set(totals.clone());
        let peers = self.clone();
        let spawned = std::thread::Builder::new().name("tollgate-peers".into()).spawn(move || loop {
            std::thread::sleep(if peers.shared.load(Ordering::Acquire) { TICK } else { ALONE_TICK });
            peers.tick();
        });
        if let Err(e) = spawned {
            log::error!(target: "tollgate", "peers: cannot watch {}: {e}", self.dir.display());
        }
    }

    fn billing(&self) -> Option<Arc<Billing>> {
        self.billing.get().and_then(Weak::upgrade)
    }

    fn followed_paths(&self) -> Vec<PathBuf> {
        locked(&self.followers).iter().map(|f| f.path.clone()).collect()
    }

    fn tick(&self) {
        self.scan();
        if let Some(billing) = self.billing() {
            if self.shared.load(Ordering::Acquire) {
                self.exclusive(&*billing, &mut |_| {});
            }
            self.bury(&billing);
        }
    }

    /// Follows journals of live processes not followed yet.
    fn scan(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let known = self.followed_paths();
        for path in entries.filter_map(Result::ok).map(|e| e.path()) {
            let Some(pid) = pid_of(&path) else { continue };
            if Some(&path) == self.own.as_ref() || known.contains(&path) {
                continue;
            }
            let Ok(file) = File::open(&path) else { continue };
            if ended(&file) {
                // A process that died, whose leftovers the next start
                // keeps (not a peer to follow).
                continue;
            }
            self.arrive(Follower { pid, path, file, partial: Vec::new(), mirrored: HashSet::new() });
        }
    }

    /// A peer is here: from now on this process journals every change,
    /// its open holds first, and says so in its journal.
    fn arrive(&self, follower: Follower) {
        let pid = follower.pid;
        let _alone = self.mode.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.with_lock(|| {
            self.journal.set_followed(true);
            self.shared.store(true, Ordering::Release);
            if let Some(billing) = self.billing() {
                for line in billing.open_hold_lines() {
                    crate::billing::Sink::peer(&*self.journal, line);
                }
            }
            crate::billing::Sink::peer(&*self.journal, PeerLine::Ack { pid });
            locked(&self.followers).push(follower);
        });
        log::info!(target: "tollgate", "peers: process {pid} shares the wallets; following its journal");
    }

    /// Peers that died: their last lines applied, their holds released,
    /// their records kept in the store, their files deleted.
    fn bury(&self, billing: &Billing) {
        let dead: Vec<usize> = locked(&self.followers)
            .iter()
            .enumerate()
            .filter(|(_, f)| ended(&f.file))
            .map(|(i, _)| i)
            .collect();
        for i in dead.into_iter().rev() {
            let followed =
                locked(&self.followers).get(i).and_then(|f| Some((f.path.clone(), f.file.try_clone().ok()?)));
            let Some((path, file)) = followed else { continue };
            self.exclusive(billing, &mut |_| {
                let mut followers = locked(&self.followers);
                if let Some(f) = followers.get_mut(i) {
                    for key in f.mirrored.drain() {
                        billing.apply_peer_line(&PeerLine::Release { key });
                    }
                }
            });
            let bytes = super::journal::whole(&file).unwrap_or_default();
            let records: Vec<LedgerRecord> = super::journal::records_in(&bytes).collect();
            let n = records.len();
            if let Err(e) = self.store.block_on(move |s| async move { s.append(&records).await }) {
                log::error!(target: "tollgate", "peers: {}: records not kept yet: {e}", path.display());
                continue;
            }
            super::journal::remove_ended(&file, &path);
            let alone = {
                let mut followers = locked(&self.followers);
                if i < followers.len() {
                    followers.remove(i);
                }
                followers.is_empty()
            };
            log::info!(target: "tollgate", "peers: {} ended; {n} of its records are in the store", path.display());
            if alone {
                let _alone = self.mode.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                self.shared.store(false, Ordering::Release);
                self.journal.set_followed(false);
            }
        }
    }

    /// Applies what the peers wrote since the last look.
    fn catch_up(&self, billing: &dyn PeerApply) {
        for f in locked(&self.followers).iter_mut() {
            for line in read_new(f) {
                track(f, &line);
                match line {
                    Line::Peer(line) => billing.apply_peer_line(&line),
                    Line::Record(record) => {
                        if let Some(totals) = self.totals.get() {
                            totals.add(&record);
                        }
                        billing.apply_peer_record(&record, false);
                    }
                }
            }
        }
    }
}

impl Peers for FilePeers {
    fn exclusive(&self, billing: &dyn PeerApply, change: &mut dyn FnMut(bool)) {
        {
            let _alone = self.mode.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !self.shared.load(Ordering::Acquire) {
                change(false);
                return;
            }
        }
        self.with_lock(|| {
            self.catch_up(billing);
            change(true);
        });
    }
}

/// Keeps which of a peer's holds this process mirrors.
fn track(f: &mut Follower, line: &Line) {
    match line {
        Line::Peer(PeerLine::Hold { key, .. }) => {
            f.mirrored.insert(key.clone());
        }
        Line::Peer(PeerLine::Release { key }) => {
            f.mirrored.remove(key);
        }
        Line::Record(r) => {
            if let Some(hold) = r.key.strip_suffix(":charge") {
                f.mirrored.remove(hold);
            }
        }
        Line::Peer(PeerLine::Ack { .. }) => {}
    }
}

/// The whole lines a followed file gained since the last read.
fn read_new(f: &mut Follower) -> Vec<Line> {
    let bytes = read_written(&mut f.file);
    if bytes.is_empty() {
        return Vec::new();
    }
    f.partial.extend_from_slice(&bytes);
    let Some(end) = memchr::memrchr(b'\n', &f.partial) else { return Vec::new() };
    let rest = f.partial.split_off(end + 1);
    let whole = std::mem::replace(&mut f.partial, rest);
    whole.split(|b| *b == b'\n').filter(|l| !l.is_empty()).filter_map(parse).collect()
}

/// What was written to `file` past where it was read: up to the first
/// zero byte (see [`super::journal::written`]), where the next read
/// starts again. In pieces, so a file sized far ahead is not read whole.
fn read_written(file: &mut File) -> Vec<u8> {
    const PIECE: usize = 16 << 10;
    let mut out = Vec::new();
    let mut piece = vec![0u8; PIECE];
    loop {
        let n = match file.read(&mut piece) {
            Ok(0) | Err(_) => return out,
            Ok(n) => n,
        };
        let read = &piece[..n];
        let written = super::journal::written(read);
        out.extend_from_slice(written);
        if written.len() < n {
            let unwritten = i64::try_from(n - written.len()).unwrap_or(i64::MAX);
            let _ = file.seek(SeekFrom::Current(-unwritten));
            return out;
        }
    }
}

/// Whether the process that wrote the followed `file` ended: no one holds
/// its lock. Probed through the file followed, not its name, which a
/// process with the same pid may have taken since.
fn ended(file: &File) -> bool {
    let free = file.try_lock_shared().is_ok();
    if free {
        let _ = file.unlock();
    }
    free
}

/// Whether the journal at `path` acknowledges process `pid`.
fn acked(path: &Path, pid: u32) -> bool {
    let Ok(bytes) = std::fs::read(path) else { return false };
    super::journal::written(&bytes)
        .split(|b| *b == b'\n')
        .any(|l| matches!(parse(l), Some(Line::Peer(PeerLine::Ack { pid: p })) if p == pid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A peer's end is told by the file followed, not by its name: a
    /// process with the same pid may have set that file aside and made
    /// its own of the name, whose journal is then neither taken for the
    /// dead one's nor removed with it.
    #[test]
    fn a_peer_that_ended_is_told_by_its_own_file_not_by_its_name() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("journal-7.jsonl");
        let writer = File::create(&path).unwrap_or_else(|e| panic!("{e}"));
        writer.lock().unwrap_or_else(|e| panic!("{e}"));
        let followed = File::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!ended(&followed), "its writer lives");
        drop(writer);
        std::fs::rename(&path, dir.path().join("journal-7.1.jsonl")).unwrap_or_else(|e| panic!("{e}"));
        let next = File::create(&path).unwrap_or_else(|e| panic!("{e}"));
        next.lock().unwrap_or_else(|e| panic!("{e}"));
        assert!(ended(&followed), "the followed file's writer is gone, whoever holds its name");
        assert!(!super::super::journal::still_named(&followed, &path));
        super::super::journal::remove_ended(&followed, &path);
        assert!(path.exists(), "the live process's journal stays");
        let follows_next = File::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!ended(&follows_next), "and its writer lives");
        drop(next);
    }

    #[test]
    fn a_followed_file_is_read_up_to_its_first_zero_and_again_from_there() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("journal-1.jsonl");
        let mut writer = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut first = b"one\n".to_vec();
        first.resize(40_000, 0);
        writer.write_all(&first).unwrap_or_else(|e| panic!("{e}"));
        let mut reader = File::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_written(&mut reader), b"one\n");
        assert_eq!(read_written(&mut reader), b"", "nothing new");
        // The writer copies the next line where the zeros began, in two
        // steps, as a reader may find it midway.
        use std::os::unix::fs::FileExt;
        writer.write_all_at(b"tw", 4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_written(&mut reader), b"tw");
        writer.write_all_at(b"o\n", 6).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_written(&mut reader), b"o\n");
        // Past one piece of reading.
        let long = vec![b'x'; 20_000];
        writer.write_all_at(&long, 8).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_written(&mut reader), long);
    }
}
