//! Config loader: any YAML gives a config or an error naming a key, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = maskd::config::parse(text) {
            let _ = cfg.validate();
        }
    }
});
