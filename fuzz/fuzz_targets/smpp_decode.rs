//! SMPP decoder: never panics; whatever decodes re-encodes and decodes to the same PDU.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maskd::smpp::codec::{decode, encode, error_response};

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(Some((pdu, used))) => {
            assert!(used <= data.len());
            let mut again = Vec::new();
            encode(&pdu, &mut again);
            let (back, n) = decode(&again).expect("re-encoded PDU decodes").expect("complete");
            assert_eq!(n, again.len());
            assert_eq!(back, pdu);
        }
        Ok(None) => {}
        Err(e) => {
            if let Some(skip) = e.skip {
                assert!(skip <= data.len());
            }
            let _ = error_response(&e);
        }
    }
});
