//! Load tool: creates sessions with two participants through the REST API over keep-alive
//! HTTP/1.1 connections and reports sessions per second. Every answer must be 201 (each is
//! durable before it is sent). Loopback only.
//!
//! `cargo run --release --example api_load -- ADDR SERVICE SECONDS CONNECTIONS ACCOUNT TOKEN`
#![allow(clippy::print_stdout)] // a command-line tool: its report goes to stdout

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 {
        eprintln!("usage: api_load ADDR SERVICE SECONDS CONNECTIONS ACCOUNT TOKEN");
        std::process::exit(64);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR is host:port");
    assert!(addr.ip().is_loopback(), "load tools talk to loopback only");
    let service = args[2].clone();
    let seconds: u64 = args[3].parse().expect("SECONDS");
    let conns: u64 = args[4].parse().expect("CONNECTIONS");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", args[5], args[6]));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..conns)
        .map(|w| {
            let (ok, failed, stop, service, auth) = (
                ok.clone(),
                failed.clone(),
                stop.clone(),
                service.clone(),
                auth.clone(),
            );
            std::thread::spawn(move || worker(addr, w, &service, &auth, &ok, &failed, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = ok.load(Ordering::Relaxed);
    println!(
        "sessions_created={n} failed={} seconds={elapsed:.2} connections={conns} rate={:.0}/s",
        failed.load(Ordering::Relaxed),
        n as f64 / elapsed
    );
    if failed.load(Ordering::Relaxed) > 0 {
        std::process::exit(1);
    }
}

fn worker(
    addr: SocketAddr,
    w: u64,
    service: &str,
    auth: &str,
    ok: &AtomicU64,
    failed: &AtomicU64,
    stop: &AtomicBool,
) {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).ok();
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    for i in 0..u64::MAX {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        // Distinct people per session: +1 212 5xx xxxx, unique per worker and iteration.
        let a = 12_120_000_000 + (w * 10_000_000 + i * 2) % 9_999_999_998;
        let body = format!(
            "Participants=%7B%22Identifier%22%3A%22%2B{a}%22%7D&Participants=%7B%22Identifier%22%3A%22%2B{}%22%7D",
            a + 1
        );
        let req = format!(
            "POST /v1/Services/{service}/Sessions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(req.as_bytes()).is_err() {
            failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match read_response(&mut reader) {
            Some(201) => ok.fetch_add(1, Ordering::Relaxed),
            _ => failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn read_response(r: &mut BufReader<TcpStream>) -> Option<u16> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let mut len = 0usize;
    for _ in 0..100 {
        line.clear();
        r.read_line(&mut line).ok()?;
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(status)
}
