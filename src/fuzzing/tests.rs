//! Every fuzz target over its seed corpus and a few thousand mutations of it, on every
//! `cargo test`: a short, deterministic run (libFuzzer, through `fuzz/run`, runs long).
//! `WPGATE_FUZZ_RUNS` sets the mutations per target (default 2000), `WPGATE_FUZZ_SEED`
//! the random seed. An input that fails is written to `target/fuzz-failures/`.

use super::TARGETS;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// Bytes that matter to the formats under test, inserted by the mutator.
const TOKENS: &[&[u8]] = &[
    b".",
    b"_",
    b"-",
    b"=",
    b"\"",
    b"[",
    b"]",
    b"{",
    b"}",
    b":",
    b",",
    b"\n",
    b"\\u0000",
    b"wpg_",
    b"wpgat_",
    b"v1.",
    b"k1",
    b"\"alg\":",
    b"\"exp\":",
    b"[[keys]]",
    b"[store]",
    b"url = ",
    b"0",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"\xff",
    b"\xc3\xa9",
];

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// One to four random edits of a seed (bit flips, bytes, tokens, cuts, splices).
fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.gen_range(0..seeds.len())].clone();
    for _ in 0..rng.gen_range(1..=4) {
        let at = rng.gen_range(0..=data.len());
        match rng.gen_range(0..7) {
            0 if at < data.len() => data[at] ^= 1 << rng.gen_range(0..8),
            1 if at < data.len() => data[at] = rng.gen(),
            2 => data.insert(at, rng.gen()),
            3 => {
                let token = TOKENS[rng.gen_range(0..TOKENS.len())];
                data.splice(at..at, token.iter().copied());
            }
            4 => {
                let end = rng.gen_range(at..=data.len());
                data.drain(at..end.min(at + 16));
            }
            5 => {
                let other = &seeds[rng.gen_range(0..seeds.len())];
                let from = rng.gen_range(0..=other.len());
                let to = rng.gen_range(from..=other.len());
                data.splice(at..at, other[from..to].iter().copied());
            }
            _ => data.truncate(at),
        }
    }
    data
}

/// Runs `body` on `input`; on a panic, saves the input and fails naming it.
fn run_one(target: &str, body: super::Target, input: &[u8]) {
    if std::panic::catch_unwind(|| body(input)).is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{target}-{:016x}", fnv(input)));
        let _ = std::fs::write(&file, input);
        panic!(
            "fuzz target {target} failed on {input:?}, saved as {} \
             (replay: fuzz/run {target} {})",
            file.display(),
            file.display()
        );
    }
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run_target(target: &str) {
    let &(_, body) = TARGETS.iter().find(|(name, _)| *name == target).unwrap();
    let seeds = corpus(target);
    for seed in &seeds {
        run_one(target, body, seed);
    }
    let runs = env_u64("WPGATE_FUZZ_RUNS", 2000);
    let mut rng = StdRng::seed_from_u64(env_u64("WPGATE_FUZZ_SEED", 12) ^ fnv(target.as_bytes()));
    for _ in 0..runs {
        run_one(target, body, &mutate(&mut rng, &seeds));
    }
}

#[test]
fn every_target_has_a_fuzz_target_file_and_a_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, _) in TARGETS {
        let file = root.join(format!("fuzz_targets/{name}.rs"));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains(&format!("wpgate::fuzzing::{name}(data)")),
            "{file:?}"
        );
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("\nname = \"{name}\"\n")),
            "{name}"
        );
        assert!(!corpus(name).is_empty());
    }
}

#[test]
fn api_key() {
    run_target("api_key");
}

#[test]
fn jwt_token() {
    run_target("jwt_token");
}

#[test]
fn jwt_parts() {
    run_target("jwt_parts");
}

#[test]
fn jwks() {
    run_target("jwks");
}

#[test]
fn sealed() {
    run_target("sealed");
}

#[test]
fn keyring() {
    run_target("keyring");
}

#[test]
fn config() {
    run_target("config");
}

#[test]
fn request_path() {
    run_target("request_path");
}
