//! SIP parser: never panics on any bytes, over either transport; validation never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maskd::sip::{parse, HeaderName, Transport};

fuzz_target!(|data: &[u8]| {
    for t in [Transport::Datagram, Transport::Stream] {
        if let Ok(Some((m, used))) = parse(data, t) {
            assert!(used <= data.len());
            let _ = m.validate_request();
            let _ = m.header_values(HeaderName::Via);
            let _ = m.cseq();
        }
    }
});
