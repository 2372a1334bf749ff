//! The floor of SIP CPU per call (issue 17): a bare UDP relay that moves SIPp's datagrams
//! between one caller and one trunk, with no SIP at all (no parsing, no state, one system
//! call per datagram each way), so that `scripts/bench-compare` can report maskd's cost as a
//! multiple of merely moving the same 14 datagrams per call.
//! Usage: udp_floor LISTEN TRUNK   (both host:port, loopback)

use std::net::{SocketAddr, UdpSocket};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: udp_floor LISTEN TRUNK");
        std::process::exit(2);
    }
    let listen: SocketAddr = args[1].parse().expect("LISTEN is host:port");
    let trunk: SocketAddr = args[2].parse().expect("TRUNK is host:port");
    assert!(
        listen.ip().is_loopback() && trunk.ip().is_loopback(),
        "loopback only"
    );
    let sock = UdpSocket::bind(listen).expect("bind LISTEN");
    // The caller: whoever last sent from anywhere but the trunk (SIPp's UAC uses one port).
    let mut caller: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let to = if from == trunk {
            match caller {
                Some(c) => c,
                None => continue,
            }
        } else {
            caller = Some(from);
            trunk
        };
        let _ = sock.send_to(&buf[..n], to);
    }
}
