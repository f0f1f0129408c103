//! The target parser never panics, on any input, and what it accepts it reads back the
//! same way (property tests with many cases).
#![cfg(feature = "discovery")]

use proptest::prelude::*;
use resilient_runtime::discover::{ErrorKind, Target, TargetKind};

fn label() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}[a-z0-9]"
}

fn host() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..5).prop_map(|l| l.join("."))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8_000))]

    #[test]
    fn any_text_gives_a_target_or_an_error_naming_it(text in "\\PC{0,80}") {
        match Target::parse(&text) {
            Ok(t) => prop_assert_eq!(t.as_str(), text.trim()),
            Err(e) => {
                prop_assert_eq!(e.kind(), ErrorKind::InvalidTarget);
                prop_assert!(!e.message().is_empty());
            }
        }
    }

    #[test]
    fn target_like_text_never_panics_and_reparses_the_same(
        scheme in prop::sample::select(vec!["", "dns:", "dns://", "dns:///", "static:///", "consul://",
            "consul:///", "etcd:///", "etcd://", "http://", "https://", "unix:", "x://"]),
        rest in "[a-z0-9:/_.,?=&@\\[\\]%#-]{0,40}",
    ) {
        let text = format!("{scheme}{rest}");
        if let Ok(t) = Target::parse(&text) {
            let again = Target::parse(t.as_str()).unwrap();
            prop_assert_eq!(again.kind(), t.kind());
            match t.kind() {
                TargetKind::Static(list) => prop_assert!(!list.is_empty() && list.iter().all(|a| a.port() > 0)),
                TargetKind::Dns(d) => prop_assert!(d.port != Some(0) && !d.name.is_empty()),
                TargetKind::Consul(c) => prop_assert!(!c.service.is_empty()),
                TargetKind::Etcd(e) => prop_assert!(!e.prefix.is_empty()),
                _ => {}
            }
        }
    }

    #[test]
    fn well_formed_targets_read_back(host in host(), port in 1u16.., dns_port in 1u16..) {
        let t = Target::parse(&format!("dns://127.0.0.1:{dns_port}/{host}:{port}")).unwrap();
        let TargetKind::Dns(d) = t.kind() else { panic!("{t}") };
        prop_assert_eq!(&d.name, &host);
        prop_assert_eq!(d.port, Some(port));
        prop_assert_eq!(d.server.map(|s| s.port()), Some(dns_port));

        let bare = Target::parse(&format!("{host}:{port}")).unwrap();
        let http = Target::parse(&format!("http://{host}:{port}")).unwrap();
        prop_assert_eq!(bare.kind(), http.kind());

        let list = format!("static:///{host}:{port},127.0.0.2:{port}");
        let TargetKind::Static(s) = Target::parse(&list).unwrap().kind().clone() else { panic!() };
        prop_assert_eq!(s.len(), 2);
    }
}
