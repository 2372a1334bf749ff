//! SIP parse cost for a ~1 KB carrier-style INVITE (target ≤ 2 µs), and parse + the checks
//! maskd runs before routing. Run: `cargo bench --bench sip`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use maskd::sip::{parse, HeaderName, Transport};

const HEAD: &str = "INVITE sip:+14155550101@192.0.2.10:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-524287-1---a1b2c3d4e5f60718;rport\r\n\
Via: SIP/2.0/UDP 10.20.30.40:5060;branch=z9hG4bK0123456789abcdef;received=10.20.30.40\r\n\
Max-Forwards: 69\r\n\
Record-Route: <sip:198.51.100.7;lr;ftag=as5f2a1b7c>\r\n\
From: \"Carrier Caller\" <sip:+14155551001@198.51.100.7;user=phone>;tag=as5f2a1b7c\r\n\
To: <sip:+14155550101@192.0.2.10;user=phone>\r\n\
Call-ID: 4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d@198.51.100.7\r\n\
CSeq: 102 INVITE\r\n\
Contact: <sip:+14155551001@198.51.100.7:5060;transport=udp>\r\n\
P-Asserted-Identity: <sip:+14155551001@198.51.100.7;user=phone>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE\r\n\
Supported: replaces, timer\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
User-Agent: CarrierSBC/4.2\r\n\
Content-Type: application/sdp\r\n";

const BODY: &str = "v=0\r\n\
o=CarrierSBC 1234567890 1234567890 IN IP4 198.51.100.7\r\n\
s=SBC call\r\n\
c=IN IP4 198.51.100.7\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn sip_parse(c: &mut Criterion) {
    let invite = format!("{HEAD}Content-Length: {}\r\n\r\n{BODY}", BODY.len());
    let bytes = invite.as_bytes();
    let (m, used) = parse(bytes, Transport::Datagram).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(m.body, BODY.as_bytes());
    m.validate_request().unwrap();
    eprintln!("INVITE size: {} bytes", bytes.len());
    c.bench_function("sip_parse_invite_1k", |b| {
        b.iter(|| {
            black_box(
                parse(black_box(bytes), Transport::Datagram)
                    .unwrap()
                    .unwrap()
                    .1,
            )
        })
    });
    c.bench_function("sip_parse_and_validate_invite_1k", |b| {
        b.iter(|| {
            let (m, _) = parse(black_box(bytes), Transport::Datagram)
                .unwrap()
                .unwrap();
            m.validate_request().unwrap();
            black_box(m.header(HeaderName::CallId).map(str::len))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = sip_parse
}
criterion_main!(benches);
