//! The journal: every ledger record is appended to a file, one JSON line,
//! before the response it bills ends, so a charge survives a SIGKILL (the
//! line is in the operating system's page cache when `record` returns;
//! the background writer later keeps it in the store). Each process writes
//! its own file, `journal-<pid>.jsonl`, and holds a lock on it; at start a
//! process replays every file whose owner is gone, then deletes it. A file
//! holds only records the store may not have yet: once they are kept, it
//! is emptied, except while another process follows it (an upgrade's
//! overlap, see [`super::peers`]): its lines, and the peer lines written
//! then, stay until that process has read them.
//!
//! Alone, a process copies its lines into a shared mapping of the file,
//! with no system call: a `write` on a request's path cost several µs
//! between network calls, a copy a fraction of one (BENCHMARKS.md,
//! eleventh pass). The file is then sized ahead and zero past its lines,
//! so whoever reads one stops at its first zero byte ([`written`]). While
//! another process follows the file, and from its start until it knows
//! none does, the file holds its lines only, each written with `pwrite`:
//! a process of an older version reads a followed file to its end, and
//! would take the zeros for lines. A backlog past [`MAPPED_MAX`] (a store
//! that is down) is written that way too, until the file is emptied.

use crate::billing::{LedgerRecord, Sink};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};
use tollgate_mapfile::MappedFile;

/// Past this size a journal whose records are never all kept at once (a
/// store that is always behind) is rewritten with only the pending ones.
const REWRITE_BYTES: usize = 16 << 20;

/// A mapped journal file's first size; it doubles when full, and goes
/// back to this when emptied.
const FIRST_BYTES: usize = 1 << 20;

/// The largest a mapped journal file grows: past it the lines are written
/// with `pwrite`, so growing never writes more than 8 MiB of zeros under
/// the journal's lock.
const MAPPED_MAX: usize = 16 << 20;

/// The most records' room a batch leaves for the next (~1 MB): a backlog
/// after an outage does not stay reserved.
const ROOM_KEPT: usize = 4096;

pub struct Journal {
    file: Mutex<Option<Lines>>,
    /// Written to the file, not yet kept by the store.
    pending: Mutex<Vec<LedgerRecord>>,
    /// Taken by the writer, not yet known kept: with `pending`, what the
    /// store may not have (a fleet's wallet seed adds these). The writer's
    /// own batch, shared: a copy was four strings a record.
    in_flight: Mutex<Option<Batch>>,
    written: AtomicU64,
    kept: watch::Sender<u64>,
    /// A reader waits for the store to catch up: the writer goes at once.
    pub(super) arrived: Notify,
    /// Another process follows this file: it is never emptied meanwhile.
    followed: AtomicBool,
    /// Told of each batch the store kept (a fleet's hot state: see
    /// `crate::hot::sidecar::unpend_on_delivery`).
    on_delivery: std::sync::OnceLock<OnDelivery>,
}

/// Records the writer took, in the order they were written.
pub type Batch = Arc<Vec<LedgerRecord>>;

/// What is told of each batch of records the store kept.
pub type OnDelivery = Box<dyn Fn(&[LedgerRecord]) + Send + Sync>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Journal {
    /// A journal in `dir` (`None`: records go to the store only, for a
    /// store in memory, which a crash loses anyway).
    pub fn open(dir: Option<&Path>) -> Result<Self, String> {
        let file = match dir {
            None => None,
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| format!("journal {}: {e}", dir.display()))?;
                let path = dir.join(format!("journal-{}.jsonl", std::process::id()));
                set_aside_if_left(&path)?;
                // Locked under another name first: a process scanning the
                // directory must never find it unlocked and take it for the
                // journal of a process that is gone.
                let fresh = dir.join(format!(".journal-{}.new", std::process::id()));
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(&fresh)
                    .map_err(|e| format!("journal {}: {e}", fresh.display()))?;
                file.try_lock().map_err(|e| format!("journal {}: locked: {e}", fresh.display()))?;
                // Emptied once locked: nobody else has it mapped then.
                file.set_len(0).map_err(|e| format!("journal {}: {e}", fresh.display()))?;
                std::fs::rename(&fresh, &path).map_err(|e| format!("journal {}: {e}", path.display()))?;
                let mappable = !tollgate_mapfile::copies_on_write(dir);
                Some(Lines { storage: Storage::Appended(file), path, end: 0, mappable })
            }
        };
        Ok(Self {
            file: Mutex::new(file),
            pending: Mutex::new(Vec::new()),
            in_flight: Mutex::new(None),
            written: AtomicU64::new(0),
            kept: watch::channel(0).0,
            arrived: Notify::new(),
            followed: AtomicBool::new(false),
            on_delivery: std::sync::OnceLock::new(),
        })
    }

    /// This process's journal file, if it has one.
    pub fn path(&self) -> Option<PathBuf> {
        lock(&self.file).as_ref().map(|lines| lines.path.clone())
    }

    /// Whether another process follows this file; set before the first
    /// line that process must read is written. Followed, the file holds
    /// its lines only; alone, they are copied into a mapping of it.
    pub fn set_followed(&self, followed: bool) {
        let mut file = lock(&self.file);
        self.followed.store(followed, Ordering::Release);
        if let Some(lines) = &mut *file {
            if followed {
                lines.unmap();
            } else {
                lines.map();
            }
        }
    }

    /// Appends one whole line (its newline added) to the file.
    fn write_line(&self, mut line: Vec<u8>) {
        line.push(b'\n');
        if let Some(lines) = &mut *lock(&self.file) {
            lines.append(&line);
        }
    }

    /// Records of journals left by processes that are gone, oldest file
    /// first; the files read are returned, to be removed (with
    /// [`remove_ended`]) once the records are kept.
    pub fn leftovers(dir: &Path) -> Result<(Vec<LedgerRecord>, Vec<Leftover>), String> {
        let mut records = Vec::new();
        let mut files = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else { return Ok((records, files)) };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("journal-") && n.ends_with(".jsonl"))
            })
            .collect();
        paths.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        for path in paths {
            let Ok(file) = File::open(&path) else { continue };
            if file.try_lock().is_err() {
                continue; // a live process (an upgrade's old one) owns it
            }
            let Ok(bytes) = whole(&file) else { continue };
            // Not held while the store keeps the records: a peer's scan
            // would take a locked file for a live process's.
            let _ = file.unlock();
            records.extend(records_in(&bytes));
            files.push((path, file));
        }
        Ok((records, files))
    }

    /// Takes what is pending for the store (in flight from now on, with
    /// no moment in neither); `None` when nothing is. What comes next gets
    /// the room this batch took, up to [`ROOM_KEPT`]: grown a record at a
    /// time, the list was copied whole at each doubling (a record is
    /// 200-odd bytes).
    pub fn take(&self) -> Option<Batch> {
        let mut in_flight = lock(&self.in_flight);
        let mut pending = lock(&self.pending);
        if pending.is_empty() {
            return None;
        }
        let room = pending.len().min(ROOM_KEPT);
        let batch = Arc::new(std::mem::replace(&mut *pending, Vec::with_capacity(room)));
        *in_flight = Some(batch.clone());
        Some(batch)
    }

    /// `account`'s records the store may not have yet.
    pub fn undelivered(&self, account: u64) -> Vec<LedgerRecord> {
        let in_flight = lock(&self.in_flight);
        let pending = lock(&self.pending);
        in_flight
            .iter()
            .flat_map(|b| b.iter())
            .chain(pending.iter())
            .filter(|r| r.account == account)
            .cloned()
            .collect()
    }

    /// Puts back a batch the store could not keep.
    pub(super) fn put_back(&self, batch: Batch) {
        let mut in_flight = lock(&self.in_flight);
        let mut pending = lock(&self.pending);
        *in_flight = None;
        let mut batch = Arc::try_unwrap(batch).unwrap_or_else(|shared| shared.as_ref().clone());
        batch.append(&mut pending);
        *pending = batch;
    }

    /// Marks `n` more records kept, and empties the file when nothing is
    /// left pending (taken under the file's lock, so no record can be
    /// written between the check and the emptying).
    pub fn kept(&self, n: u64) {
        let mut file = lock(&self.file);
        *lock(&self.in_flight) = None;
        self.kept.send_modify(|k| *k += n);
        let Some(lines) = &mut *file else { return };
        if self.followed.load(Ordering::Acquire) {
            return;
        }
        let pending = lock(&self.pending);
        if pending.is_empty() {
            lines.empty();
        } else if lines.end > REWRITE_BYTES {
            let mut kept = Vec::new();
            for r in pending.iter() {
                kept.extend(r.json_line());
            }
            lines.rewrite(&kept);
        }
    }

    /// Has `tell` told of each batch the store keeps from now on (once:
    /// a second is refused).
    pub fn on_delivery(&self, tell: OnDelivery) -> Result<(), String> {
        self.on_delivery.set(tell).map_err(|_| "the journal's deliveries are told already".to_string())
    }

    /// The store kept `batch`.
    pub(crate) fn delivered(&self, batch: &[LedgerRecord]) {
        if let Some(tell) = self.on_delivery.get() {
            tell(batch);
        }
    }

    /// Records written and not yet kept by the store.
    pub fn lag(&self) -> u64 {
        self.written.load(Ordering::Acquire).saturating_sub(*self.kept.borrow())
    }

    /// Waits until every record written so far is kept by the store.
    pub async fn flushed(&self) {
        let target = self.written.load(Ordering::Acquire);
        self.arrived.notify_one();
        let mut kept = self.kept.subscribe();
        let _ = kept.wait_for(|k| *k >= target).await;
    }
}

impl Sink for Journal {
    fn peer(&self, line: crate::billing::PeerLine) {
        let envelope = crate::billing::peers::PeerEnvelope { peer: line };
        self.write_line(serde_json::to_vec(&envelope).unwrap_or_default());
    }

    fn record(&self, record: LedgerRecord) {
        let line = record.json_line();
        {
            let mut file = lock(&self.file);
            if let Some(lines) = &mut *file {
                lines.append(&line);
            }
            lock(&self.pending).push(record);
            self.written.fetch_add(1, Ordering::Release);
        }
        crate::metrics::journal_written();
    }
}

/// A journal file and where its next line goes.
struct Lines {
    storage: Storage,
    path: PathBuf,
    /// Where the next line goes: every byte before it is a whole line's.
    end: usize,
    /// Not on a file system that copies on write (see
    /// [`tollgate_mapfile::copies_on_write`]): there lines are written.
    mappable: bool,
}

/// How a journal file takes its lines.
enum Storage {
    /// Sized ahead with zeros and mapped: a line is a copy (alone).
    Mapped(MappedFile),
    /// Exactly its lines, each written with `pwrite` (followed, starting,
    /// a backlog past [`MAPPED_MAX`], or a mapping that failed).
    Appended(File),
    /// Only between the two, while switching.
    Switching,
}

impl Lines {
    /// Adds `line` (its newline included) after the last one, in one copy
    /// or one write: a crash tears at most the last line.
    fn append(&mut self, line: &[u8]) {
        let end = self.end + line.len();
        if let Storage::Mapped(map) = &mut self.storage {
            if end > map.len() {
                let len = end.next_power_of_two().max(FIRST_BYTES);
                if len > MAPPED_MAX {
                    self.unmap();
                } else if let Err(e) = map.grow(len) {
                    log::error!(target: "tollgate", "journal {}: cannot grow it: {e}", self.path.display());
                    self.unmap();
                }
            }
        }
        let done = match &mut self.storage {
            Storage::Mapped(map) => {
                map.bytes().get_mut(self.end..end).map(|room| room.copy_from_slice(line)).is_some()
            }
            Storage::Appended(file) => match file.write_all_at(line, self.end as u64) {
                Ok(()) => true,
                Err(e) => {
                    log::error!(target: "tollgate", "journal {}: write failed: {e}", self.path.display());
                    false
                }
            },
            Storage::Switching => false,
        };
        if done {
            self.end = end;
        }
    }

    /// From now on each line is written, and the file holds its lines only
    /// (the zeros past them cut).
    fn unmap(&mut self) {
        self.storage = match std::mem::replace(&mut self.storage, Storage::Switching) {
            Storage::Mapped(map) => {
                let file = map.into_file();
                if let Err(e) = file.set_len(self.end as u64) {
                    log::error!(target: "tollgate", "journal {}: cannot cut its zeros: {e}", self.path.display());
                }
                Storage::Appended(file)
            }
            other => other,
        };
    }

    /// From now on lines are copied into a mapping of the file, sized ahead
    /// (not for a backlog past half of [`MAPPED_MAX`]: it waits to be emptied).
    fn map(&mut self) {
        if !self.mappable || self.end > MAPPED_MAX / 2 {
            return;
        }
        let len = (2 * self.end).next_power_of_two().max(FIRST_BYTES);
        self.storage = match std::mem::replace(&mut self.storage, Storage::Switching) {
            Storage::Appended(file) => match MappedFile::new(file, len) {
                Ok(map) => Storage::Mapped(map),
                Err((e, file)) => {
                    log::error!(target: "tollgate", "journal {}: cannot map it: {e}", self.path.display());
                    Storage::Appended(file)
                }
            },
            other => other,
        };
    }

    /// Puts `lines` (whole lines) in place of every line written: first
    /// the new ones, then the rest cut, so a crash midway leaves lines
    /// kept already (replayed harmlessly), never fewer.
    fn rewrite(&mut self, lines: &[u8]) {
        let old_end = self.end;
        match &mut self.storage {
            Storage::Mapped(map) => {
                let bytes = map.bytes();
                let Some(room) = bytes.get_mut(..lines.len()) else { return };
                room.copy_from_slice(lines);
                if let Some(rest) = bytes.get_mut(lines.len()..old_end) {
                    rest.fill(0);
                }
            }
            Storage::Appended(file) => {
                if let Err(e) = file.write_all_at(lines, 0).and_then(|()| file.set_len(lines.len() as u64)) {
                    log::error!(target: "tollgate", "journal {}: cannot rewrite it: {e}", self.path.display());
                    return;
                }
            }
            Storage::Switching => return,
        }
        self.end = lines.len();
    }

    /// Empties the file, then maps it (it is not followed). Mapped: zeros
    /// where lines were, the first byte first, so a crash midway leaves a
    /// file that reads as empty. Written, or mapped past four times its
    /// first size: cut to nothing.
    fn empty(&mut self) {
        if matches!(&self.storage, Storage::Mapped(map) if map.len() > 4 * FIRST_BYTES) {
            self.unmap();
        }
        match &mut self.storage {
            Storage::Mapped(map) => {
                let bytes = map.bytes();
                if let Some(first) = bytes.first_mut() {
                    *first = 0;
                }
                std::sync::atomic::compiler_fence(Ordering::SeqCst);
                if let Some(rest) = bytes.get_mut(1..self.end) {
                    rest.fill(0);
                }
            }
            Storage::Appended(file) => {
                if let Err(e) = file.set_len(0) {
                    log::error!(target: "tollgate", "journal {}: cannot empty it: {e}", self.path.display());
                    return;
                }
            }
            Storage::Switching => return,
        }
        self.end = 0;
        self.map();
    }
}

/// What of a journal file's `bytes` was written: up to its first zero
/// byte (a file of this version is sized ahead with zeros; one an older
/// version wrote has none).
pub fn written(bytes: &[u8]) -> &[u8] {
    memchr::memchr(0, bytes).map_or(bytes, |end| &bytes[..end])
}

/// The ledger records of a journal file's `bytes`, in order: a peer line,
/// or a line torn by a crash mid-copy (never acknowledged), is none.
pub fn records_in(bytes: &[u8]) -> impl Iterator<Item = LedgerRecord> + '_ {
    written(bytes).split(|b| *b == b'\n').filter_map(|l| serde_json::from_slice::<LedgerRecord>(l).ok())
}

/// A journal by this process's pid that is there already was left by a
/// process that ended (a container's entrypoint has the same pid at each
/// start): it is renamed for the replay of leftovers to keep its records,
/// where the new file would have replaced it. One with no record is
/// removed instead: a crash loop while the store is down would otherwise
/// leave a file a start. One still locked belongs to a live process with
/// the same pid, in another pid namespace on the same directory, which
/// the peers' handshake could not tell apart: refused.
fn set_aside_if_left(path: &Path) -> Result<(), String> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("journal {}: {e}", path.display())),
    };
    if file.try_lock().is_err() {
        return Err(format!(
            "journal {}: a live process with this pid writes it (another pid namespace on the same directory?)",
            path.display()
        ));
    }
    let failed = |e: std::io::Error| format!("journal {}: {e}", path.display());
    if !still_named(&file, path) {
        return Err(format!(
            "journal {}: replaced while this process opened it (another pid namespace on the same directory?)",
            path.display()
        ));
    }
    let bytes = whole(&file).map_err(failed)?;
    if records_in(&bytes).next().is_none() {
        // Its lock held: no other process writes it meanwhile.
        return std::fs::remove_file(path).map_err(failed);
    }
    let stamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let aside = path.with_file_name(format!("journal-{}.{stamp}.jsonl", std::process::id()));
    // Renamed with its lock held: no other process takes it meanwhile.
    std::fs::rename(path, &aside).map_err(failed)?;
    drop(file);
    log::warn!(target: "tollgate", "journal {}: left by an earlier process with this pid; kept as {}", path.display(), aside.display());
    Ok(())
}

/// A journal of a process that ended, read: its name, and the file
/// opened (what [`remove_ended`] checks the name against).
pub type Leftover = (PathBuf, File);

/// Whether `path` still names the file `file` opened (the same device
/// and inode). A journal of a process that ended is read through the file
/// opened and removed only while its name still names it: a process with
/// the same pid (a container's pid 1 started again, a pid given out
/// again) may have made a new journal of that name meanwhile.
pub fn still_named(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(held), Ok(named)) => (held.dev(), held.ino()) == (named.dev(), named.ino()),
        _ => false,
    }
}

/// Everything `file` holds, read through it from its start without
/// moving its position (a followed file's position is its follower's).
pub fn whole(file: &File) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut piece = vec![0u8; 64 << 10];
    loop {
        match file.read_at(&mut piece, bytes.len() as u64) {
            Ok(0) => return Ok(bytes),
            Ok(n) => bytes.extend_from_slice(&piece[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Removes the journal of a process that ended, at `path`, if the name
/// still names the file read (see [`still_named`]).
pub fn remove_ended(file: &File, path: &Path) {
    if still_named(file, path) {
        if let Err(e) = std::fs::remove_file(path) {
            log::warn!(target: "tollgate", "journal {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests;
