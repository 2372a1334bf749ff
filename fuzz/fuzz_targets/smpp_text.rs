//! Text codings and UDH parsing: never panic on any octets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maskd::smpp::text;

fuzz_target!(|data: &[u8]| {
    if let Some((&dc, rest)) = data.split_first() {
        let _ = text::decode(dc, rest);
        if let Some((_, body)) = text::split_udh(rest) {
            assert!(body.len() < rest.len());
        }
        let s = String::from_utf8_lossy(rest);
        if let Some(g) = text::encode_gsm(&s) {
            assert_eq!(text::decode_gsm(&g), s);
        }
    }
});
