//! Live heap bytes, for leak checks. The `maskd` binary wraps its allocator in debug builds
//! only (one atomic add per allocation is not free on the hot path) with a counting one and
//! registers it here; the metrics endpoint then exports `maskd_heap_live_bytes`. Unlike the
//! resident set size, which the allocator keeps near its high-water mark, this goes back down
//! when memory is freed, so the PROTOS replay can check that a second replay leaves nothing
//! behind.

use std::sync::OnceLock;

static SOURCE: OnceLock<fn() -> usize> = OnceLock::new();

/// Registers the function that reads the allocator's count of live bytes.
pub fn count_with(live: fn() -> usize) {
    let _ = SOURCE.set(live);
}

/// Bytes allocated and not freed, when the process counts them.
pub fn live_bytes() -> Option<usize> {
    SOURCE.get().map(|f| f())
}
