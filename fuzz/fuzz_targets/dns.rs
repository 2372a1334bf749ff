//! Fuzz target: the property maskd::fuzzing::dns checks (also replayed over the seeds and
//! regressions by tests/fuzz_corpora.rs). Run with scripts/fuzz.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| maskd::fuzzing::dns(data));
