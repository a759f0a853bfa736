//! A file written through a shared, writable mapping of the whole of it:
//! bytes copied into [`MappedFile::bytes`] are in the operating system's
//! page cache when the copy ends, where a `write` would leave them, with no
//! system call. Tollgate's journal writes its lines this way: a `write` on
//! a request's path cost several microseconds between network calls
//! (BENCHMARKS.md, eleventh pass), a copy a fraction of one.
//!
//! Mapping a file needs `unsafe` in Rust, because whoever shortens or
//! writes the file under a mapping breaks what the compiler assumes about
//! the bytes. This type owns the file, so nothing in the process can
//! shorten it; it only grows, and the mapping follows. What it cannot
//! stop is another process writing to the file: its user keeps others to
//! reading (the journal holds an exclusive lock on the file, and its
//! readers only read).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Zeros are written this much at a time when the file grows.
const ZEROS: usize = 64 << 10;

/// A file and a shared, writable mapping of all of it.
pub struct MappedFile {
    file: File,
    /// `None` only after a [`MappedFile::reset`] that failed.
    map: Option<memmap2::MmapMut>,
}

impl MappedFile {
    /// Maps `file` (open for reading and writing), grown first to at least
    /// `len` bytes, with zeros.
    pub fn new(file: File, len: usize) -> io::Result<Self> {
        let now = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
        if now < len {
            fill_with_zeros(&file, now, len)?;
        }
        let map = Some(map(&file)?);
        Ok(Self { file, map })
    }

    /// The file's bytes, to read and to write.
    pub fn bytes(&mut self) -> &mut [u8] {
        self.map.as_deref_mut().unwrap_or_default()
    }

    /// The mapping's length: the file's.
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Grows the file to `len` bytes, with zeros, and maps all of it.
    pub fn grow(&mut self, len: usize) -> io::Result<()> {
        let now = usize::try_from(self.file.metadata()?.len()).unwrap_or(usize::MAX);
        if now < len {
            fill_with_zeros(&self.file, now, len)?;
        }
        self.map = Some(map(&self.file)?);
        Ok(())
    }

    /// Empties the file and grows it back to `len` bytes of zeros: a file
    /// grown large (a backlog) goes back to its first size.
    pub fn reset(&mut self, len: usize) -> io::Result<()> {
        // The mapping goes first: none may outlive the bytes it maps.
        self.map = None;
        self.file.set_len(0)?;
        self.grow(len)
    }
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
    // SAFETY: `MappedFile` owns the file and never shortens it, and its
    // mapping is replaced whenever the file grows, so every byte of the
    // mapping is a byte of the file; no other process writes to it (see
    // the crate's docs: the one user holds an exclusive lock on the file
    // and its readers only read).
    let map = unsafe { memmap2::MmapOptions::new().map_mut(file) };
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn open(dir: &tempfile::TempDir) -> (File, std::path::PathBuf) {
        let path = dir.path().join("f");
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path);
        (file.unwrap_or_else(|e| panic!("{e}")), path)
    }

    #[test]
    fn what_is_copied_in_is_in_the_file_without_a_write() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (file, path) = open(&dir);
        let mut mapped = MappedFile::new(file, 100).unwrap_or_else(|e| panic!("{e}"));
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
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (file, path) = open(&dir);
        let mut mapped = MappedFile::new(file, 10).unwrap_or_else(|e| panic!("{e}"));
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
    fn a_reset_empties_the_file_to_zeros_of_the_size_asked() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (file, path) = open(&dir);
        let mut mapped = MappedFile::new(file, 300_000).unwrap_or_else(|e| panic!("{e}"));
        mapped.bytes().fill(b'x');
        mapped.reset(1000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mapped.len(), 1000);
        let read = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read, vec![0u8; 1000]);
        mapped.bytes()[0] = b'y';
        assert_eq!(std::fs::read(&path).unwrap_or_default()[0], b'y');
    }

    #[test]
    fn a_file_longer_than_asked_is_mapped_whole() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (file, _) = open(&dir);
        file.write_all_at(b"0123456789", 0).unwrap_or_else(|e| panic!("{e}"));
        let mut mapped = MappedFile::new(file, 4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&mapped.bytes()[..], b"0123456789");
    }
}
