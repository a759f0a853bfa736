//! The fuzz targets' properties (`tollgate::fuzzing`) checked on stable
//! Rust in every test run: over the golden files and the recorded CLI
//! traffic with every selector a target reads, over every input saved under
//! `fuzz/regressions/<target>/` (crashes found by cargo fuzz, kept so they
//! stay fixed), and over random mutations of all of those.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use std::path::{Path, PathBuf};
use tollgate::fuzzing::{self, TARGETS};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Golden inputs and outputs and recorded CLI requests: real traffic of
/// every format, requests, documents and streams alike.
fn seeds() -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    files_under(&repo().join("tests/golden"), &mut paths);
    files_under(&repo().join("tests/fixtures"), &mut paths);
    paths.sort();
    let seeds: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(seeds.len() > 50, "the golden files and fixtures are missing");
    seeds
}

/// The seeds a target reads as they are meant: streams for the stream
/// targets (cut into chunks of a few bytes, so large documents would only
/// cost time), everything for the others.
fn seeds_for(target: &str, seeds: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let stream_like =
        |s: &&Vec<u8>| s.starts_with(b"event:") || s.starts_with(b"data:") || s.len() < 16 * 1024;
    match target {
        "sse_decoder" | "passthrough" | "stream_translation" => {
            seeds.iter().filter(stream_like).cloned().collect()
        }
        _ => seeds.to_vec(),
    }
}

/// The selector bytes each target reads before its input, in every
/// combination that changes what it does.
fn prefixes(target: &str) -> Vec<Vec<u8>> {
    let product = |a: &[u8], b: &[u8], c: &[u8]| -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for &x in a {
            for &y in b {
                for &z in c {
                    out.push(vec![x, y, z]);
                }
            }
        }
        out
    };
    let pairs: Vec<u8> = (0..12).collect();
    match target {
        "sse_decoder" => vec![vec![0], vec![1], vec![6], vec![16]],
        "passthrough" => product(&[0, 1, 2, 3], &[0, 1, 3, 4], &[4]),
        "json_array" => vec![vec![1], vec![16], vec![200]],
        "request_body" => vec![vec![]],
        "field_scan" => vec![vec![1], vec![7], vec![16]],
        "requests" => vec![vec![0], vec![1], vec![2], vec![3]],
        "documents" => product(&pairs, &[0, 3, 4, 6], &[0, 1]),
        "stream_translation" => product(&pairs, &[0, 3, 8, 16], &[5]),
        other => panic!("no selectors known for the fuzz target {other}"),
    }
}

#[test]
fn every_target_holds_on_real_traffic() {
    let seeds = seeds();
    for (name, run) in TARGETS {
        let seeds = seeds_for(name, &seeds);
        for prefix in prefixes(name) {
            for seed in &seeds {
                let mut input = prefix.clone();
                input.extend_from_slice(seed);
                run(&input);
            }
        }
    }
}

#[test]
fn saved_fuzz_findings_stay_fixed() {
    for (name, run) in TARGETS {
        let mut saved = Vec::new();
        files_under(&repo().join("fuzz/regressions").join(name), &mut saved);
        for path in saved {
            run(&std::fs::read(&path).unwrap());
        }
    }
}

#[test]
fn the_fuzz_crate_has_one_binary_per_target() {
    let manifest = std::fs::read_to_string(repo().join("fuzz/Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml lacks {name}");
        assert!(
            repo().join(format!("fuzz/fuzz_targets/{name}.rs")).exists(),
            "no fuzz target file for {name}"
        );
    }
}

/// A seed with a few bytes changed, inserted or removed.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds();
    let count = seeds.len();
    (0..count, prop::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..8), any::<[u8; 3]>()).prop_map(
        move |(pick, edits, prefix)| {
            let mut bytes = seeds[pick].clone();
            for (at, byte, op) in edits {
                let at = usize::from(at) % (bytes.len() + 1);
                match op {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            let mut input = prefix.to_vec();
            input.extend_from_slice(&bytes);
            input
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn every_target_holds_on_mutated_traffic(input in mutated()) {
        for (_, run) in TARGETS {
            run(&input);
        }
    }

    #[test]
    fn every_target_holds_on_random_bytes(input in prop::collection::vec(any::<u8>(), 0..512)) {
        for (_, run) in TARGETS {
            run(&input);
        }
    }

    #[test]
    fn the_sse_decoder_holds_on_event_shaped_noise(
        lines in prop::collection::vec(
            prop::sample::select(vec!["data: {\"a\":1}", "event: x", ": c", "", "data:", "id: 1", "data: é€"]),
            0..24,
        ),
        ending in prop::sample::select(vec!["\n", "\r\n", "\r"]),
        seed in any::<u8>(),
    ) {
        let mut input = vec![seed];
        input.extend_from_slice(lines.join(ending).as_bytes());
        fuzzing::sse_decoder(&input);
    }
}
