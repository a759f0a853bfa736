//! The journal: every ledger record is appended to a file, one JSON line,
//! before the response it bills ends, so a charge survives a SIGKILL (the
//! write is in the operating system's hands when `record` returns; the
//! background writer later keeps it in the store). Each process writes its
//! own file, `journal-<pid>.jsonl`, and holds a lock on it; at start a
//! process replays every file whose owner is gone, then deletes it. A file
//! holds only records the store may not have yet: once they are kept, it
//! is emptied, except while another process follows it (an upgrade's
//! overlap, see [`super::peers`]): its lines, and the peer lines written
//! then, stay until that process has read them.

use crate::billing::{LedgerRecord, Sink};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};

/// Past this size a journal whose records are never all kept at once (a
/// store that is always behind) is rewritten with only the pending ones.
const REWRITE_BYTES: u64 = 16 << 20;

/// The most records' room a batch leaves for the next (~1 MB): a backlog
/// after an outage does not stay reserved.
const ROOM_KEPT: usize = 4096;

pub struct Journal {
    file: Mutex<Option<(File, PathBuf)>>,
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
                // Locked under another name first: a process scanning the
                // directory must never find it unlocked and take it for the
                // journal of a process that is gone.
                let fresh = dir.join(format!(".journal-{}.new", std::process::id()));
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&fresh)
                    .map_err(|e| format!("journal {}: {e}", fresh.display()))?;
                file.try_lock().map_err(|e| format!("journal {}: locked: {e}", fresh.display()))?;
                std::fs::rename(&fresh, &path).map_err(|e| format!("journal {}: {e}", path.display()))?;
                Some((file, path))
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
        lock(&self.file).as_ref().map(|(_, path)| path.clone())
    }

    /// Whether another process follows this file; set before the first
    /// line that process must read is written.
    pub fn set_followed(&self, followed: bool) {
        let _file = lock(&self.file);
        self.followed.store(followed, Ordering::Release);
    }

    /// Appends one whole line (its newline added) to the file.
    fn write_line(&self, mut line: Vec<u8>) {
        line.push(b'\n');
        let mut file = lock(&self.file);
        if let Some((file, path)) = &mut *file {
            // One write of a whole line: a crash tears at most the last one.
            if let Err(e) = file.write_all(&line) {
                log::error!(target: "tollgate", "journal {}: write failed: {e}", path.display());
            }
        }
    }

    /// Records of journals left by processes that are gone, oldest file
    /// first; the files are returned to be deleted once the records are kept.
    pub fn leftovers(dir: &Path) -> Result<(Vec<LedgerRecord>, Vec<PathBuf>), String> {
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
            for line in BufReader::new(&file).lines() {
                let Ok(line) = line else { break };
                // A line torn by a crash mid-write was never acknowledged.
                if let Ok(record) = serde_json::from_str::<LedgerRecord>(&line) {
                    records.push(record);
                }
            }
            files.push(path);
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
    /// written between the check and the truncation).
    pub fn kept(&self, n: u64) {
        let file = lock(&self.file);
        *lock(&self.in_flight) = None;
        self.kept.send_modify(|k| *k += n);
        let Some((file, path)) = &*file else { return };
        if self.followed.load(Ordering::Acquire) {
            return;
        }
        let pending = lock(&self.pending);
        if pending.is_empty() {
            if let Err(e) = file.set_len(0) {
                log::error!(target: "tollgate", "journal {}: cannot empty it: {e}", path.display());
            }
        } else if file.metadata().map_or(0, |m| m.len()) > REWRITE_BYTES {
            let mut lines = Vec::new();
            for r in pending.iter() {
                lines.extend(r.json_line());
            }
            if let Err(e) = file.set_len(0).and_then(|()| (&*file).write_all(&lines)) {
                log::error!(target: "tollgate", "journal {}: cannot rewrite it: {e}", path.display());
            }
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
            if let Some((file, path)) = &mut *file {
                // One write of a whole line: a crash tears at most the last one.
                if let Err(e) = file.write_all(&line) {
                    log::error!(target: "tollgate", "journal {}: write failed: {e}", path.display());
                }
            }
            lock(&self.pending).push(record);
            self.written.fetch_add(1, Ordering::Release);
        }
        crate::metrics::journal_written();
    }
}
