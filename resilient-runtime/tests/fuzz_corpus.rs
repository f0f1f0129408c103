//! The bad-input corpus under `tests/corpus/` as regression tests: each file (or line of
//! `targets.jsonl`) goes through the parser it was found for, must not panic, and must
//! give an error naming its input. Crash reproducers found by `fuzz_inputs.rs` go here.
//! `RESILIENT_HARDENING_TABLE=1 cargo test --test fuzz_corpus -- --nocapture` prints the
//! table of inputs and errors kept in `docs/hardening.md`.
#![cfg(all(feature = "dns", feature = "consul", feature = "etcd"))]

use std::path::{Path, PathBuf};
use std::time::Duration;

use resilient_runtime::Pool;
use resilient_runtime::config::RuntimeConfig;
use resilient_runtime::discover::fuzzing;
use resilient_runtime::discover::{DnsOptions, IpFamily, Target};

fn corpus(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", root.display());
    files
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Prints a table row when asked to.
fn row(kind: &str, input: &str, error: &str) {
    if std::env::var_os("RESILIENT_HARDENING_TABLE").is_some() {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        // Control characters show escaped (a config error may quote one raw).
        let error = shown(error, usize::MAX);
        println!("| {kind} | `{}` | {} |", cell(input), cell(&error));
    }
}

fn shown(text: &str, max: usize) -> String {
    let escaped: String = text
        .chars()
        .flat_map(|c| {
            let e: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            e
        })
        .collect();
    match escaped.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &escaped[..i]),
        None => escaped,
    }
}

#[test]
fn targets() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/targets.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let input: String = serde_json::from_str(line).unwrap();
        let e = Target::parse(&input).expect_err(&input);
        let m = e.to_string();
        if input.is_empty() {
            assert!(m.starts_with("empty target"), "{m}");
        } else if input.chars().any(char::is_control) {
            assert!(!m.chars().any(char::is_control), "escaped: {m:?}");
        } else if !input.contains('@') {
            assert!(m.starts_with(&format!("`{input}`: ")), "{m}");
        } else {
            assert!(!m.contains("pw@"), "{m}");
        }
        row("target", &shown(&input, 60), &m);
    }
}

#[test]
fn config_files() {
    for path in corpus("config") {
        let e = RuntimeConfig::from_file(&path).expect_err(&name(&path));
        let m = e.to_string();
        assert!(m.contains(&name(&path)), "names the file: {m}");
        let input = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        row(
            "config",
            &shown(input.trim(), 70),
            &m.replace(&path.display().to_string(), &name(&path)),
        );
    }
}

#[test]
fn consul_answers() {
    for path in corpus("consul") {
        let body = std::fs::read(&path).unwrap();
        let input = shown(String::from_utf8_lossy(&body).trim(), 60);
        match fuzzing::consul_health_answer(200, Some(b"7"), &body) {
            Ok((addresses, _)) => {
                // Entries without a usable address are skipped (and logged), not fatal.
                row(
                    "consul answer",
                    &input,
                    &format!("accepted: {addresses:?} (bad entries skipped with a warning)"),
                );
            }
            Err(e) => {
                assert!(e.contains("consul agent at 127.0.0.1:8500"), "{e}");
                row("consul answer", &input, &e);
            }
        }
    }
    let e = fuzzing::consul_health_answer(403, None, b"ACL not found").unwrap_err();
    assert!(e.contains("check the token"), "{e}");
    row("consul answer", "HTTP 403, `ACL not found`", &e);
}

#[test]
fn etcd_answers() {
    for path in corpus("etcd") {
        let body = std::fs::read(&path).unwrap();
        let input = shown(String::from_utf8_lossy(&body).trim(), 60);
        match fuzzing::etcd_range_answer(200, &body) {
            Ok((addresses, revision)) => row(
                "etcd range",
                &input,
                &format!(
                    "accepted: {addresses:?} at revision {revision} (bad keys skipped with a warning)"
                ),
            ),
            Err(e) => {
                assert!(e.starts_with("etcd error"), "{e}");
                row("etcd range", &input, &e);
            }
        }
    }
    for path in corpus("etcd-watch") {
        let body = std::fs::read(&path).unwrap();
        let input = shown(String::from_utf8_lossy(&body).trim(), 60);
        let e = fuzzing::etcd_watch_stream(&[&body]).expect_err(&name(&path));
        row(
            "etcd watch",
            &input,
            &format!("watch ends, the pool lists again: {e}"),
        );
    }
}

/// Garbled DNS answers from a DNS server on loopback.
#[test]
fn dns_answers() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let answer = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let current = answer.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let mut reply = current.lock().unwrap().clone();
            if n >= 2 && reply.len() >= 2 {
                reply[..2].copy_from_slice(&buf[..2]);
            }
            let _ = socket.send_to(&reply, from);
        }
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = format!("dns://{addr}/auth.test:8083");
    for path in corpus("dns") {
        let hex = std::fs::read_to_string(&path).unwrap();
        let bytes: Vec<u8> = (0..hex.trim().len() / 2)
            .map(|i| u8::from_str_radix(&hex.trim()[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        *answer.lock().unwrap() = bytes;
        let result = rt.block_on(
            Pool::builder(&target)
                .dns(
                    DnsOptions::default()
                        .family(IpFamily::V4)
                        .timeout(Duration::from_millis(200))
                        .attempts(1),
                )
                .build_resolved(),
        );
        let e = result.expect_err(&name(&path)).to_string();
        assert!(e.starts_with(&format!("`{target}`: ")), "{e}");
        row(
            "dns answer",
            &format!("{}: {}", name(&path), shown(hex.trim(), 40)),
            &e.replace(&addr.to_string(), "127.0.0.1:PORT"),
        );
    }
}
