//! A file written through a shared, writable mapping of the whole of it:
//! bytes copied into [`MappedFile::bytes`] are in the operating system's
//! page cache when the copy ends, where a `write` would leave them, with no
//! system call. Tollgate's journal writes its lines this way: a `write` on
//! a request's path cost several microseconds between network calls
//! (BENCHMARKS.md, eleventh pass), a copy a fraction of one.
//!
//! Mapping a file needs `unsafe` in Rust: whoever shortens the file under
//! a mapping makes a store past its new end a SIGBUS, and whoever writes
//! it breaks what the compiler assumes about the bytes. This type owns the
//! file: it shortens it only with no mapping alive ([`MappedFile::into_file`]
//! hands it back unmapped), and remaps whenever it grows. What it cannot
//! stop is another process shortening or writing the file: its user keeps
//! others to reading (the journal holds an exclusive, advisory lock on its
//! file, and nothing of Tollgate's shortens or writes another process's
//! journal; an operator who truncates a live journal ends that process).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Zeros are written this much at a time when the file grows.
const ZEROS: usize = 64 << 10;

/// A file and a shared, writable mapping of all of it.
pub struct MappedFile {
    file: File,
    map: memmap2::MmapMut,
}

impl MappedFile {
    /// Maps `file` (open for reading and writing), grown first to at least
    /// `len` bytes, with zeros; on failure the file comes back with the
    /// error.
    pub fn new(file: File, len: usize) -> Result<Self, (io::Error, File)> {
        match grown_and_mapped(&file, len) {
            Ok(map) => Ok(Self { file, map }),
            Err(e) => Err((e, file)),
        }
    }

    /// The file, unmapped (and so free to be shortened).
    pub fn into_file(self) -> File {
        self.file
    }

    /// The file's bytes, to read and to write.
    pub fn bytes(&mut self) -> &mut [u8] {
        &mut self.map
    }

    /// The mapping's length: the file's.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the file (and the mapping) is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Grows the file to `len` bytes, with zeros, and maps all of it; on
    /// failure the mapping it had stays (the file only grew).
    pub fn grow(&mut self, len: usize) -> io::Result<()> {
        self.map = grown_and_mapped(&self.file, len)?;
        Ok(())
    }
}

/// `file` grown to at least `len` bytes with zeros, and a mapping of all of it.
fn grown_and_mapped(file: &File, len: usize) -> io::Result<memmap2::MmapMut> {
    let now = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    if now < len {
        fill_with_zeros(file, now, len)?;
    }
    map(file)
}

/// Whether the file system holding `path` copies a block on every write
/// (btrfs, ZFS, bcachefs): there the zeros written ahead hold no space
/// for later stores, and a store through a mapping on a full disk would
/// end the process with a SIGBUS, where a `write` returns the error. Such
/// a file is better written than mapped.
pub fn copies_on_write(path: &std::path::Path) -> bool {
    const BTRFS: i64 = 0x9123_683e;
    const ZFS: i64 = 0x2fc1_2fc1;
    const BCACHEFS: i64 = 0xca45_1a4e;
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    #[allow(unsafe_code)]
    // SAFETY: `path` is a NUL-terminated string and `stat` room for the
    // one `statfs` the call fills; it is read only when the call succeeds.
    let kind = unsafe {
        if libc::statfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return false;
        }
        stat.assume_init().f_type
    };
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let kind = i64::from(kind);
    matches!(kind, BTRFS | ZFS | BCACHEFS)
}

/// Writes zeros into `file` from `from` to `to`. Written, not a hole made
/// by `set_len`: the blocks are then the file's, so a store through the
/// mapping never needs the file system to find space, which would end the
/// process with a SIGBUS on a full disk, where this returns the error.
fn fill_with_zeros(file: &File, from: usize, to: usize) -> io::Result<()> {
    let zeros = vec![0u8; ZEROS.min(to - from)];
    let mut at = from;
    while at < to {
        let n = zeros.len().min(to - at);
        file.write_all_at(&zeros[..n], at as u64)?;
        at += n;
    }
    Ok(())
}

fn map(file: &File) -> io::Result<memmap2::MmapMut> {
    #[allow(unsafe_code)]
    // SAFETY: `MappedFile` owns the file, never shortens it while mapped
    // (`into_file` gives it up unmapped), and maps it again whenever it
    // grows, so every byte of the mapping is a byte of the file; other
    // processes only read it (the crate's docs say who keeps them to that).
    let map = unsafe { memmap2::MmapOptions::new().map_mut(file) };
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A new empty file in a directory of its own (kept while the test runs).
    fn open() -> (tempfile::TempDir, File, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("f");
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path);
        (dir, file.unwrap_or_else(|e| panic!("{e}")), path)
    }

    #[test]
    fn what_is_copied_in_is_read_from_the_file() {
        let (_dir, file, path) = open();
        let mut mapped = MappedFile::new(file, 100).unwrap_or_else(|(e, _)| panic!("{e}"));
        assert_eq!(mapped.len(), 100);
        mapped.bytes()[..6].copy_from_slice(b"hello\n");
        let mut read = Vec::new();
        File::open(&path).and_then(|mut f| f.read_to_end(&mut read)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.len(), 100);
        assert_eq!(&read[..6], b"hello\n");
        assert!(read[6..].iter().all(|b| *b == 0), "the rest is zeros");
    }

    #[test]
    fn growing_keeps_what_was_written_and_maps_the_rest() {
        let (_dir, file, path) = open();
        let mut mapped = MappedFile::new(file, 10).unwrap_or_else(|(e, _)| panic!("{e}"));
        mapped.bytes()[..3].copy_from_slice(b"abc");
        mapped.grow(200_000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mapped.len(), 200_000);
        mapped.bytes()[199_999] = b'z';
        let read = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((&read[..3], read.len(), read[199_999]), (&b"abc"[..], 200_000, b'z'));
        assert!(read[3..199_999].iter().all(|b| *b == 0));
        mapped.grow(5).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mapped.len(), 200_000, "growing never shortens");
    }

    #[test]
    fn into_file_gives_the_file_back_unmapped_to_be_shortened() {
        let (_dir, file, path) = open();
        let mut mapped = MappedFile::new(file, 300_000).unwrap_or_else(|(e, _)| panic!("{e}"));
        mapped.bytes()[..2].copy_from_slice(b"ab");
        let file = mapped.into_file();
        file.set_len(2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&path).unwrap_or_default(), b"ab");
    }

    #[test]
    fn a_file_system_that_is_not_copy_on_write_is_told_apart() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // This machine's /tmp is ext4 or tmpfs; neither copies on write.
        assert!(!copies_on_write(dir.path()));
        assert!(!copies_on_write(std::path::Path::new("/no/such/dir")));
    }

    #[test]
    fn a_file_longer_than_asked_is_mapped_whole() {
        let (_dir, file, _) = open();
        file.write_all_at(b"0123456789", 0).unwrap_or_else(|e| panic!("{e}"));
        let mut mapped = MappedFile::new(file, 4).unwrap_or_else(|(e, _)| panic!("{e}"));
        assert_eq!(&mapped.bytes()[..], b"0123456789");
    }
}
