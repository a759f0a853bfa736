//! The journal's file: lines copied through the mapping, what a reader
//! finds after a crash, emptying, growing, and a file left by an earlier
//! process with this pid.

use super::*;
use crate::billing::{RecordKind, Sink};
use crate::store::tests::charge;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

/// A journal alone (mapped), as `FilePeers::meet` leaves it with no peer.
fn open(dir: &tempfile::TempDir) -> Journal {
    let journal = Journal::open(Some(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    journal.set_followed(false);
    journal
}

fn own_file(journal: &Journal) -> Vec<u8> {
    std::fs::read(journal.path().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"))
}

fn keys_in(bytes: &[u8]) -> Vec<String> {
    records_in(bytes).map(|r| r.key).collect()
}

#[test]
fn a_record_is_in_the_file_when_record_returns_and_zeros_follow_it() {
    let dir = dir();
    let journal = open(&dir);
    journal.record(charge("a", 1, Some(1), 100, "r-a"));
    journal.record(charge("b", 1, Some(1), 200, "r-b"));
    let bytes = own_file(&journal);
    assert_eq!(bytes.len(), FIRST_BYTES, "sized ahead");
    assert_eq!(keys_in(&bytes), ["a", "b"]);
    let lines = written(&bytes);
    assert!(lines.ends_with(b"\n"), "whole lines");
    assert!(bytes[lines.len()..].iter().all(|b| *b == 0), "zeros after the last line");
    assert_eq!(journal.lag(), 2);
}

#[test]
fn starting_or_followed_the_file_holds_its_lines_only_for_an_older_reader() {
    let dir = dir();
    let journal = Journal::open(Some(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    journal.record(charge("a", 1, Some(1), 100, "r-a"));
    let line = charge("a", 1, Some(1), 100, "r-a").json_line();
    assert_eq!(own_file(&journal), line, "starting: no zeros, one line");
    journal.set_followed(false);
    journal.record(charge("b", 1, Some(1), 100, "r-b"));
    let bytes = own_file(&journal);
    assert_eq!((bytes.len(), keys_in(&bytes)), (FIRST_BYTES, vec!["a".to_string(), "b".to_string()]));
    journal.set_followed(true);
    journal.record(charge("c", 1, Some(1), 100, "r-c"));
    let bytes = own_file(&journal);
    assert!(!bytes.contains(&0), "followed: the zeros are cut");
    assert_eq!(keys_in(&bytes), ["a", "b", "c"]);
    // Followed, nothing is emptied; alone again, it is, and maps again.
    let batch = journal.take().unwrap_or_else(|| panic!("a batch"));
    journal.kept(batch.len() as u64);
    assert_eq!(keys_in(&own_file(&journal)), ["a", "b", "c"]);
    journal.set_followed(false);
    journal.record(charge("d", 1, Some(1), 100, "r-d"));
    let batch = journal.take().unwrap_or_else(|| panic!("a batch"));
    journal.kept(batch.len() as u64);
    assert_eq!(own_file(&journal), vec![0; FIRST_BYTES]);
}

#[test]
fn kept_records_empty_the_file_and_the_next_line_starts_it_again() {
    let dir = dir();
    let journal = open(&dir);
    journal.record(charge("a", 1, Some(1), 100, "r-a"));
    let batch = journal.take().unwrap_or_else(|| panic!("a batch"));
    journal.record(charge("b", 1, Some(1), 100, "r-b"));
    journal.kept(batch.len() as u64);
    assert_eq!(keys_in(&own_file(&journal)), ["a", "b"], "b is pending: nothing is emptied");
    let batch = journal.take().unwrap_or_else(|| panic!("a batch"));
    journal.kept(batch.len() as u64);
    assert!(own_file(&journal).iter().all(|b| *b == 0), "emptied: zeros only");
    journal.record(charge("c", 1, Some(1), 100, "r-c"));
    assert_eq!(keys_in(&own_file(&journal)), ["c"]);
}

#[test]
fn a_reader_stops_at_the_first_zero_so_a_file_emptied_halfway_reads_as_empty() {
    let line = charge("a", 1, Some(1), 100, "r-a").json_line();
    // Emptying zeroes the first byte first: a crash then leaves this.
    let mut halfway = line.clone();
    halfway[0] = 0;
    halfway.extend_from_slice(&line);
    assert!(keys_in(&halfway).is_empty());
    // A line torn by a crash mid-copy (zeros where the rest would go).
    let mut torn = line.clone();
    torn.extend_from_slice(&line[..40]);
    torn.extend_from_slice(&[0; 64]);
    assert_eq!(keys_in(&torn), ["a"]);
    // A file an older version wrote (appended, no zeros) reads whole.
    assert_eq!(keys_in(&[line.clone(), line].concat()).len(), 2);
}

#[test]
fn a_full_file_grows_and_an_emptied_one_goes_back_to_its_first_size() {
    let dir = dir();
    let journal = open(&dir);
    let lines = 5 * FIRST_BYTES / charge("k-00000", 1, Some(1), 1, "r").json_line().len() + 10;
    for i in 0..lines {
        journal.record(charge(&format!("k-{i:05}"), 1, Some(1), 1, "r"));
    }
    let bytes = own_file(&journal);
    assert_eq!(bytes.len(), 8 * FIRST_BYTES, "doubled until the lines fit");
    let keys = keys_in(&bytes);
    assert_eq!(keys.len(), lines);
    assert_eq!(keys.last().map(String::as_str), Some(format!("k-{:05}", lines - 1).as_str()));
    let batch = journal.take().unwrap_or_else(|| panic!("a batch"));
    journal.kept(batch.len() as u64);
    let bytes = own_file(&journal);
    assert_eq!(bytes.len(), FIRST_BYTES);
    assert!(bytes.iter().all(|b| *b == 0));
    journal.record(charge("after", 1, Some(1), 1, "r"));
    assert_eq!(keys_in(&own_file(&journal)), ["after"]);
}

#[test]
fn a_backlog_past_the_largest_mapping_is_written_then_mapped_again_once_kept() {
    let dir = dir();
    let journal = open(&dir);
    let lines = MAPPED_MAX / charge("k-000000", 1, Some(1), 1, "r").json_line().len() + 10;
    for i in 0..lines {
        journal.record(charge(&format!("k-{i:06}"), 1, Some(1), 1, "r"));
    }
    let bytes = own_file(&journal);
    assert!(bytes.len() > MAPPED_MAX && !bytes.contains(&0), "written past the largest mapping, no zeros");
    assert_eq!(keys_in(&bytes).len(), lines);
    let batch = journal.take().unwrap_or_else(|| panic!("a batch"));
    journal.kept(batch.len() as u64);
    assert_eq!(own_file(&journal), vec![0; FIRST_BYTES], "emptied and mapped again");
}

#[test]
fn a_file_past_the_rewrite_size_keeps_only_the_pending_lines() {
    let dir = dir();
    let journal = open(&dir);
    let line = charge("k-000000", 1, Some(1), 1, "r").json_line().len();
    let lines = REWRITE_BYTES / line + 10;
    for i in 0..lines {
        journal.record(charge(&format!("k-{i:06}"), 1, Some(1), 1, "r"));
    }
    let batch = journal.take().unwrap_or_else(|| panic!("a batch"));
    journal.record(charge("pending", 1, Some(1), 1, "r"));
    journal.kept(batch.len() as u64);
    assert_eq!(keys_in(&own_file(&journal)), ["pending"]);
}

#[test]
fn a_journal_left_by_an_earlier_process_with_this_pid_is_replayed_not_replaced() {
    let dir = dir();
    let left = dir.path().join(format!("journal-{}.jsonl", std::process::id()));
    let mut bytes = charge("left", 1, Some(1), 100, "r-left").json_line();
    bytes.extend_from_slice(&[0; 100]);
    std::fs::write(&left, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let journal = open(&dir);
    journal.record(charge("mine", 1, Some(1), 100, "r-mine"));
    let (records, files) = Journal::leftovers(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["left"]);
    assert_eq!(files.len(), 1);
    assert_ne!(Some(&files[0].0), journal.path().as_ref(), "this process's own file is not a leftover");
    assert_eq!(records[0].kind, RecordKind::Charge);
    assert_eq!(keys_in(&own_file(&journal)), ["mine"]);
}

#[test]
fn a_journal_left_with_no_record_is_removed_not_set_aside() {
    let dir = dir();
    let left = dir.path().join(format!("journal-{}.jsonl", std::process::id()));
    // A start that found no peer and crashed before its first call: zeros only.
    std::fs::write(&left, [0u8; 4096]).unwrap_or_else(|e| panic!("{e}"));
    let journal = open(&dir);
    let (records, files) = Journal::leftovers(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(records.is_empty() && files.is_empty(), "{files:?}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert_eq!(names, [journal.path().unwrap_or_default()], "only this process's own file is left");
}

#[test]
fn a_journal_a_live_process_with_this_pid_holds_is_refused() {
    let dir = dir();
    let _live = open(&dir);
    // The same pid again, as another pid namespace on this directory would.
    let refused = Journal::open(Some(dir.path())).err().unwrap_or_default();
    assert!(refused.contains("a live process with this pid"), "{refused}");
}

#[test]
fn a_leftover_is_read_through_its_file_and_removed_only_while_its_name_names_it() {
    let dir = dir();
    let left = dir.path().join("journal-999999.jsonl");
    std::fs::write(&left, charge("left", 1, Some(1), 100, "r-left").json_line())
        .unwrap_or_else(|e| panic!("{e}"));
    let (records, files) = Journal::leftovers(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["left"]);
    let [(path, file)] = &files[..] else { panic!("one leftover: {files:?}") };
    assert!(still_named(file, path));
    // Its name taken meanwhile by a new process with that pid: not removed.
    std::fs::rename(path, dir.path().join("journal-999999.1.jsonl")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(path, b"").unwrap_or_else(|e| panic!("{e}"));
    remove_ended(file, path);
    assert!(path.exists(), "the new file stays");
    // Its own name again: removed.
    let aside = dir.path().join("journal-999999.1.jsonl");
    let file = File::open(&aside).unwrap_or_else(|e| panic!("{e}"));
    remove_ended(&file, &aside);
    assert!(!aside.exists());
}
