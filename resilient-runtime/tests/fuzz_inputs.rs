//! Bad input, fuzzed with proptest (cargo-fuzz needs a nightly toolchain CI does not
//! have): target strings, registry address lists, the runtime TOML config, Consul and
//! etcd answers, the etcd watch stream cut anywhere, and garbled DNS answers from a DNS
//! server on loopback. Inputs are bounded; nothing may panic; every error names its
//! input (the target, the config file, the registry); what is accepted is well formed.
//! Crashes found here are kept as files under `tests/corpus/` (see `fuzz_corpus.rs`).
#![cfg(all(feature = "dns", feature = "consul", feature = "etcd"))]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use resilient_runtime::Pool;
use resilient_runtime::config::RuntimeConfig;
use resilient_runtime::discover::fuzzing;
use resilient_runtime::discover::{Address, DnsOptions, ErrorKind, IpFamily, Target};

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- targets

const VALID_TARGETS: &[&str] = &[
    "static:///10.0.0.1:8083,10.0.0.2:8083",
    "dns:///auth-service.nova.svc.cluster.local:8083",
    "dns://127.0.0.1:5353/auth-service.nova.svc.cluster.local:8083",
    "dns:///_grpc._tcp.auth-service.nova.svc.cluster.local",
    "dns://[::1]:53/auth:1",
    "auth-service:8083",
    "http://auth-service:8083",
    "https://auth-service.nova.svc.cluster.local",
    "consul:///auth-service?dc=eu1&tag=v2&tag=canary",
    "consul://127.0.0.1:8500/auth-service",
    "etcd:///nova/services/auth-service",
    "etcd://127.0.0.1:23790,10.0.0.8/nova/services/auth-service",
    "[::1]:8083",
];

/// A valid target with a few characters inserted, removed or replaced.
fn mutated_target() -> impl Strategy<Value = String> {
    (
        prop::sample::select(VALID_TARGETS),
        prop::collection::vec(
            (
                0usize..80,
                0u8..3,
                prop::sample::select(
                    ":/@?&=#[]%,._-0123456789azAZ \t\u{0}\u{7f}é\u{200b}\u{fffd}"
                        .chars()
                        .collect::<Vec<_>>(),
                ),
            ),
            0..6,
        ),
    )
        .prop_map(|(base, edits)| {
            let mut chars: Vec<char> = base.chars().collect();
            for (at, op, c) in edits {
                let i = at % (chars.len() + 1);
                match op {
                    0 => chars.insert(i, c),
                    1 if i < chars.len() => {
                        chars.remove(i);
                    }
                    _ if i < chars.len() => chars[i] = c,
                    _ => chars.push(c),
                }
            }
            chars.into_iter().collect()
        })
}

fn check_target(text: &str) -> Result<(), TestCaseError> {
    match Target::parse(text) {
        Ok(t) => {
            let again = Target::parse(t.as_str()).expect("what parses, parses again");
            prop_assert_eq!(again.kind(), t.kind());
            prop_assert_eq!(again.uses_tls(), t.uses_tls());
        }
        Err(e) => {
            prop_assert_eq!(e.kind(), ErrorKind::InvalidTarget);
            prop_assert!(!e.message().is_empty());
            let shown = e.to_string();
            if text.is_empty() {
                prop_assert!(shown.starts_with("empty target"), "{}", shown);
            } else if !text.contains('@') && !text.chars().any(char::is_control) {
                // The error quotes the target as given.
                prop_assert_eq!(e.target(), text);
                prop_assert!(shown.starts_with(&format!("`{text}`: ")), "{}", shown);
            }
            // No control character reaches a message (a log line cannot be forged).
            prop_assert!(!shown.chars().any(char::is_control), "{:?}", shown);
            // Messages grow with the input, not beyond.
            prop_assert!(shown.len() <= 8 * text.len() + 400, "{} bytes", shown.len());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(10_000))]

    #[test]
    fn targets_any_text(text in "\\PC{0,300}") {
        check_target(&text)?;
    }

    #[test]
    fn targets_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_target(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn targets_near_valid_ones(text in mutated_target()) {
        check_target(&text)?;
    }

    #[test]
    fn registry_address_lists(text in "[a-z0-9:/@\\[\\],. _-]{0,120}") {
        match fuzzing::endpoint_list(&text) {
            Ok(list) => {
                prop_assert!(!list.is_empty());
                for a in list {
                    let parsed: Address = a.parse().map_err(TestCaseError::fail)?;
                    prop_assert!(parsed.port() > 0);
                }
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }
}

#[test]
fn a_megabyte_target_is_an_error_not_a_hang() {
    for text in [
        "a".repeat(1 << 20),
        format!("static:///{}", "10.0.0.1:1,".repeat(100_000)),
        format!("dns:///{}:80", "a.".repeat(500_000)),
        "[".repeat(1 << 20),
        ":".repeat(1 << 20),
    ] {
        let started = std::time::Instant::now();
        let result = Target::parse(&text);
        assert!(started.elapsed() < Duration::from_secs(2));
        if let Err(e) = result {
            assert!(e.message().len() < 4 * text.len() + 400);
        }
    }
}

// ---------------------------------------------------------------- runtime config

const KEYS: &[&str] = &[
    "target",
    "failure_threshold",
    "success_threshold",
    "open_for_ms",
    "timeout_ms",
    "half_open_max_calls",
    "fallback",
    "mode",
    "max_attempts",
    "initial_backoff_ms",
    "max_backoff_ms",
    "backoff_multiplier",
    "retryable_codes",
    "attempt_timeout_ms",
    "max_concurrent",
    "max_wait_ms",
    "bulkhead_shared",
    "retry_budget_percent",
    "retry_budget_min_per_second",
    "timeout",
    "Target",
];

fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "0",
            "-1",
            "18446744073709551615",
            "4294967296",
            "1e309",
            "nan",
            "inf",
            "-inf",
            "1.5",
            "0.0",
            "true",
            "false",
            "\"\"",
            "\"  \"",
            "\"open\"",
            "\"metrics_only\"",
            "[\"open\", \"timeout\"]",
            "[\"UNAVAILABLE\", \"nope\"]",
            "[]",
            "[1, 2]",
            "{}",
            "1979-05-27T07:32:00Z",
            "\"dns:///auth:1\"",
            "\"\\u0000\"",
        ])
        .prop_map(str::to_string),
        "\"[^\"\\\\\\n]{0,30}\"",
    ]
}

fn toml_table() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            ".nova.auth.v1.AuthService",
            ".nova.auth.v1.AuthService.ValidateToken",
            "nova.auth",
            ".",
            "",
            ". x",
            ".a.b",
        ]),
        prop::collection::vec((prop::sample::select(KEYS), toml_value()), 0..6),
    )
        .prop_map(|(path, fields)| {
            let mut t = format!("[\"{path}\"]\n");
            for (k, v) in fields {
                t.push_str(&format!("{k} = {v}\n"));
            }
            t
        })
}

fn check_config(text: &str) -> Result<(), TestCaseError> {
    match RuntimeConfig::from_toml_str("fuzz.toml", text) {
        Ok(c) => prop_assert_eq!(c.source(), "fuzz.toml"),
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(shown.contains("fuzz.toml"), "{}", shown);
            prop_assert!(
                shown.len() <= 2 * text.len() + 1000,
                "{} bytes",
                shown.len()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(4_000))]

    #[test]
    fn config_structured(tables in prop::collection::vec(toml_table(), 0..4)) {
        check_config(&tables.concat())?;
    }

    #[test]
    fn config_any_text(text in "\\PC{0,400}") {
        check_config(&text)?;
    }

    #[test]
    fn config_toml_like_text(text in "[\\[\\]\"'=.a-z0-9_ \\n#{},\\\\-]{0,300}") {
        check_config(&text)?;
    }
}

// ---------------------------------------------------------------- Consul answers

fn json_scalar() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "",
            "127.0.0.2",
            "::1",
            "[::1]",
            "pod-a.local",
            "a b",
            "10.0.0.1:80",
            "é",
            "-",
        ])
        .prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
    ]
}

fn consul_entry() -> impl Strategy<Value = serde_json::Value> {
    (json_scalar(), json_scalar(), json_scalar(), any::<u8>()).prop_map(
        |(node, addr, port, shape)| {
            use serde_json::json;
            match shape % 4 {
                0 => json!({"Node": {"Address": node}, "Service": {"Address": addr, "Port": port}}),
                1 => json!({"Service": {"Address": addr}}),
                2 => json!({"Node": node, "Service": port}),
                _ => json!([node, addr, port]),
            }
        },
    )
}

proptest! {
    #![proptest_config(cases(3_000))]

    #[test]
    fn consul_answers_structured(
        entries in prop::collection::vec(consul_entry(), 0..20),
        status in prop::sample::select(vec![200u16, 200, 200, 403, 404, 500, 503]),
        index in prop::option::of(prop::sample::select(vec![
            "0", "1", "42", "-1", "18446744073709551615", "18446744073709551616", "x", " 7 ", "",
        ])),
    ) {
        let body = serde_json::Value::Array(entries).to_string();
        match fuzzing::consul_health_answer(status, index.map(str::as_bytes), body.as_bytes()) {
            Ok((addresses, _)) => {
                prop_assert_eq!(status, 200);
                for a in addresses {
                    let parsed: Address = a.parse().map_err(TestCaseError::fail)?;
                    prop_assert!(parsed.port() > 0);
                }
            }
            Err(e) => prop_assert!(e.contains("consul agent at 127.0.0.1:8500"), "{}", e),
        }
    }

    #[test]
    fn consul_answers_any_bytes(
        body in prop::collection::vec(any::<u8>(), 0..2000),
        status in 100u16..1000,
        index in prop::option::of(prop::collection::vec(any::<u8>(), 0..30)),
    ) {
        match fuzzing::consul_health_answer(status, index.as_deref(), &body) {
            Ok(_) => {}
            Err(e) => prop_assert!(
                e.contains("consul agent at 127.0.0.1:8500") || e.starts_with("status") || e.starts_with("header"),
                "{}", e
            ),
        }
    }
}

// ---------------------------------------------------------------- etcd answers

fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn etcd_kv() -> impl Strategy<Value = serde_json::Value> {
    (
        prop::sample::select(vec![
            "nova/services/auth-service/127.0.0.2:8083",
            "nova/services/auth-service/x",
            "",
        ]),
        prop_oneof![
            prop::sample::select(vec![
                r#"{"Addr":"127.0.0.2:8083","Metadata":null}"#,
                r#"{"Addr":"[::1]:9"}"#,
                r#"{"Addr":"127.0.0.2"}"#,
                r#"{"Addr":5}"#,
                r#"{"Addr":"a:0"}"#,
                "127.0.0.3:1",
                "",
                "{",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 0..40),
        ],
        any::<u8>(),
        json_scalar(),
    )
        .prop_map(|(key, value, shape, junk)| {
            use serde_json::json;
            match shape % 5 {
                0 | 1 => json!({"key": b64(key.as_bytes()), "value": b64(&value)}),
                2 => json!({"key": junk, "value": b64(&value)}),
                3 => json!({"key": b64(key.as_bytes()), "value": junk}),
                _ => json!({"key": "%%%not base64", "value": "***"}),
            }
        })
}

proptest! {
    #![proptest_config(cases(3_000))]

    #[test]
    fn etcd_range_answers(
        kvs in prop::collection::vec(etcd_kv(), 0..10),
        revision in json_scalar(),
        error in prop::option::of(json_scalar()),
        status in prop::sample::select(vec![200u16, 200, 400, 401, 500]),
    ) {
        let mut v = serde_json::json!({"header": {"revision": revision}, "kvs": kvs});
        if let Some(e) = error {
            v["error"] = e;
            v["code"] = serde_json::json!(16);
        }
        match fuzzing::etcd_range_answer(status, v.to_string().as_bytes()) {
            Ok((addresses, _)) => {
                for a in addresses {
                    let parsed: Address = a.parse().map_err(TestCaseError::fail)?;
                    prop_assert!(parsed.port() > 0);
                }
            }
            Err(e) => prop_assert!(e.starts_with("etcd error"), "{}", e),
        }
    }

    #[test]
    fn etcd_range_any_bytes(body in prop::collection::vec(any::<u8>(), 0..2000), status in 100u16..600) {
        if let Err(e) = fuzzing::etcd_range_answer(status, &body) {
            prop_assert!(e.starts_with("etcd error"), "{}", e);
        }
    }

    /// A watch stream of well-formed and broken messages, cut at arbitrary points.
    #[test]
    fn etcd_watch_streams(
        events in prop::collection::vec((etcd_kv(), any::<bool>()), 0..10),
        extra in prop::sample::select(vec![
            "",
            r#"{"result":{"canceled":true,"cancel_reason":"compacted"}}"#,
            r#"{"result":{"compact_revision":"7"}}"#,
            r#"{"error":{"grpc_code":16,"message":"etcdserver: invalid auth token"}}"#,
            r#"{"result":{"events":"nope"}}"#,
            r#"{"result":null}"#,
            "[1,2,3]",
            "}{",
            "\"\\ud800\"",
            "{\"result\":",
        ]),
        cuts in prop::collection::vec(0usize..4000, 0..8),
    ) {
        let mut stream = String::new();
        for (kv, delete) in events {
            let kind = if delete { "DELETE" } else { "PUT" };
            stream.push_str(&serde_json::json!({"result": {"events": [{"type": kind, "kv": kv}]}}).to_string());
            stream.push('\n');
        }
        stream.push_str(extra);
        let bytes = stream.as_bytes();
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for p in points {
            chunks.push(&bytes[from..p]);
            from = p;
        }
        chunks.push(&bytes[from..]);
        match fuzzing::etcd_watch_stream(&chunks) {
            Ok((members, changes)) => {
                prop_assert!(changes <= 10);
                for a in members {
                    prop_assert!(a.parse::<Address>().is_ok());
                }
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }
}

#[test]
fn an_endless_etcd_watch_message_is_cut_off() {
    // An opening quote and then megabytes without an end: the buffer stops at the cap.
    let chunk = vec![b'a'; 1 << 20];
    let mut chunks: Vec<&[u8]> = vec![b"{\"result\":\""];
    for _ in 0..(fuzzing::MAX_WATCH_MESSAGE >> 20) + 1 {
        chunks.push(&chunk);
    }
    let e = fuzzing::etcd_watch_stream(&chunks).unwrap_err();
    assert!(e.contains("watch message over 4 MiB"), "{e}");
}

// ---------------------------------------------------------------- DNS answers

/// A DNS server on 127.0.0.1 that answers every query with the bytes the current case
/// sets, with the query's id copied in (so that the resolver reads them).
struct GarbleDns {
    addr: SocketAddr,
    answer: Arc<Mutex<Vec<u8>>>,
}

impl GarbleDns {
    fn start() -> GarbleDns {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(Vec::new()));
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
        GarbleDns { addr, answer }
    }
}

/// A well-formed answer to `auth.test. A`: two A records (127.0.0.2, 127.0.0.3).
fn good_answer() -> Vec<u8> {
    let mut m = vec![
        0, 0, // id
        0x85, 0x00, // QR, AA, RD
        0, 1, // questions
        0, 2, // answers
        0, 0, 0, 0,
    ];
    for label in ["auth", "test"] {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    for last in [2u8, 3] {
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 127, 0, 0, last]);
    }
    m
}

fn dns_answer() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Random bytes.
        prop::collection::vec(any::<u8>(), 0..600),
        // The good answer with bytes overwritten, cut short or lengthened.
        (
            prop::collection::vec((0usize..60, any::<u8>()), 0..6),
            0usize..80,
            prop::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(writes, cut, tail)| {
                let mut m = good_answer();
                for (at, b) in writes {
                    let i = at % m.len();
                    m[i] = b;
                }
                m.truncate(cut.max(2));
                m.extend_from_slice(&tail);
                m
            }),
    ]
}

#[test]
fn garbled_dns_answers_give_errors_naming_the_target() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dns = GarbleDns::start();
    let target = format!("dns://{}/auth.test:8083", dns.addr);
    let resolve = |bytes: Vec<u8>| -> Result<Vec<String>, String> {
        *dns.answer.lock().unwrap() = bytes;
        rt.block_on(async {
            Pool::builder(&target)
                .dns(
                    DnsOptions::default()
                        .family(IpFamily::V4)
                        .timeout(Duration::from_millis(100))
                        .attempts(1),
                )
                .first_resolution_wait(Duration::from_secs(2))
                .build_resolved()
                .await
                .map(|p| p.addresses().iter().map(ToString::to_string).collect())
                .map_err(|e| e.to_string())
        })
    };
    // The template itself is read as it should be.
    assert_eq!(
        resolve(good_answer()).unwrap(),
        ["127.0.0.2:8083", "127.0.0.3:8083"]
    );
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let errors = Mutex::new(std::collections::BTreeMap::<String, u32>::new());
    runner
        .run(&dns_answer(), |bytes| {
            match resolve(bytes) {
                Ok(addresses) => {
                    for a in addresses {
                        prop_assert!(a.parse::<Address>().is_ok(), "{}", a);
                    }
                }
                Err(e) => {
                    prop_assert!(e.starts_with(&format!("`{target}`: ")), "{}", e);
                    let kind = e.split(": ").nth(1).unwrap_or("").to_string();
                    *errors.lock().unwrap().entry(kind).or_default() += 1;
                }
            }
            Ok(())
        })
        .unwrap();
    println!(
        "garbled DNS answers, errors by kind: {:?}",
        errors.lock().unwrap()
    );
}
