//! Reading torchrun's environment.

use std::collections::HashMap;

use nas_dist::{DistError, GlooDevice, Launch};

/// torchrun's variables for rank 1 of 4, with `changes` applied (`None` removes a variable).
fn lookup(changes: &[(&str, Option<&str>)]) -> impl Fn(&str) -> Option<String> {
    let mut vars: HashMap<String, String> = [
        ("RANK", "1"),
        ("WORLD_SIZE", "4"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "10.0.0.5"),
        ("MASTER_PORT", "29500"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (name, value) in changes {
        match value {
            Some(value) => vars.insert((*name).to_owned(), (*value).to_owned()),
            None => vars.remove(*name),
        };
    }
    move |name| vars.get(name).cloned()
}

/// The error for `changes`, which must name `variable`.
fn env_error(changes: &[(&str, Option<&str>)], variable: &str) -> String {
    match Launch::from_lookup(lookup(changes)) {
        Err(
            error @ DistError::Env {
                variable: named, ..
            },
        ) => {
            assert_eq!(named, variable, "{error}");
            let message = error.to_string();
            assert!(message.contains(variable), "{message}");
            message
        }
        other => panic!("{changes:?} must fail naming {variable}, got {other:?}"),
    }
}

#[test]
fn a_full_environment_is_read() {
    let launch = Launch::from_lookup(lookup(&[])).unwrap().unwrap();
    assert_eq!(
        launch,
        Launch {
            rank: 1,
            world_size: 4,
            local_rank: 1,
            master_addr: "10.0.0.5".to_owned(),
            master_port: 29500,
            agent_store: false,
            gloo_socket_ifname: None,
        }
    );
    assert!(!launch.hosts_store());
    assert_eq!(launch.gloo_device(), GlooDevice::Default);
}

#[test]
fn world_size_unset_empty_or_one_is_a_single_process_run() {
    assert_eq!(
        Launch::from_lookup(lookup(&[("WORLD_SIZE", None)])).unwrap(),
        None
    );
    assert_eq!(
        Launch::from_lookup(lookup(&[("WORLD_SIZE", Some(""))])).unwrap(),
        None
    );
    // With WORLD_SIZE=1 nothing else is needed.
    assert_eq!(
        Launch::from_lookup(lookup(&[
            ("WORLD_SIZE", Some("1")),
            ("RANK", None),
            ("MASTER_ADDR", None)
        ]))
        .unwrap(),
        None
    );
}

#[test]
fn missing_variables_are_named() {
    for variable in ["RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"] {
        let message = env_error(&[(variable, None)], variable);
        assert!(message.contains("is not set"), "{message}");
        assert!(message.contains("torchrun"), "{message}");
    }
}

#[test]
fn invalid_values_are_named_with_the_value() {
    let cases: [(&str, &str, &str); 8] = [
        ("WORLD_SIZE", "two", "whole number"),
        ("WORLD_SIZE", "0", "at least 1"),
        ("RANK", "-1", "whole number"),
        ("RANK", "4", "below WORLD_SIZE=4"),
        ("LOCAL_RANK", "x", "whole number"),
        ("MASTER_PORT", "70000", "1 to 65535"),
        ("MASTER_PORT", "0", "1 to 65535"),
        ("TORCHELASTIC_USE_AGENT_STORE", "maybe", "True or False"),
    ];
    for (variable, value, reason) in cases {
        let message = env_error(&[(variable, Some(value))], variable);
        assert!(
            message.contains(&format!("{variable}=\"{value}\"")),
            "{message}"
        );
        assert!(message.contains(reason), "{message}");
    }
    env_error(&[("MASTER_ADDR", Some("  "))], "MASTER_ADDR");
}

#[test]
fn store_mode_and_gloo_device_follow_the_environment() {
    let rank0 = |changes: &[(&str, Option<&str>)]| {
        let mut all = vec![("RANK", Some("0")), ("LOCAL_RANK", Some("0"))];
        all.extend_from_slice(changes);
        Launch::from_lookup(lookup(&all)).unwrap().unwrap()
    };
    assert!(rank0(&[]).hosts_store());
    for agent in ["True", "true", "1"] {
        let launch = rank0(&[("TORCHELASTIC_USE_AGENT_STORE", Some(agent))]);
        assert!(launch.agent_store && !launch.hosts_store(), "{agent}");
    }
    assert!(rank0(&[("TORCHELASTIC_USE_AGENT_STORE", Some("False"))]).hosts_store());

    for loopback in ["127.0.0.1", "localhost", "::1"] {
        assert_eq!(
            rank0(&[("MASTER_ADDR", Some(loopback))]).gloo_device(),
            GlooDevice::Hostname(loopback.to_owned())
        );
    }
    assert_eq!(
        rank0(&[("MASTER_ADDR", Some("node7.cluster"))]).gloo_device(),
        GlooDevice::Default
    );
    assert_eq!(
        rank0(&[
            ("MASTER_ADDR", Some("127.0.0.1")),
            ("GLOO_SOCKET_IFNAME", Some("eth0,eth1"))
        ])
        .gloo_device(),
        GlooDevice::Interfaces("eth0,eth1".to_owned())
    );
}

/// The one test here that touches the real environment (the others use `from_lookup`).
#[test]
fn from_env_reads_the_process_environment() {
    let names = [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "TORCHELASTIC_USE_AGENT_STORE",
        "GLOO_SOCKET_IFNAME",
    ];
    for name in names {
        std::env::remove_var(name);
    }
    assert_eq!(Launch::from_env().unwrap(), None);
    std::env::set_var("WORLD_SIZE", "1");
    assert_eq!(Launch::from_env().unwrap(), None);

    std::env::set_var("WORLD_SIZE", "2");
    match Launch::from_env() {
        Err(DistError::Env {
            variable: "RANK",
            value: None,
            ..
        }) => {}
        other => panic!("RANK is unset, got {other:?}"),
    }
    std::env::set_var("RANK", "1");
    std::env::set_var("LOCAL_RANK", "0");
    std::env::set_var("MASTER_ADDR", "127.0.0.1");
    std::env::set_var("MASTER_PORT", "29511");
    std::env::set_var("TORCHELASTIC_USE_AGENT_STORE", "True");
    let launch = Launch::from_env().unwrap().unwrap();
    assert_eq!(
        (launch.rank, launch.world_size, launch.local_rank),
        (1, 2, 0)
    );
    assert_eq!(
        (launch.master_addr.as_str(), launch.master_port),
        ("127.0.0.1", 29511)
    );
    assert!(launch.agent_store);
    for name in names {
        std::env::remove_var(name);
    }
}
