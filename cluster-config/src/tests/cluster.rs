//! The `[cluster]` seeds and Raft timings and the `[gossip]` section: defaults, rules,
//! env overrides and presets.

use super::*;
use std::num::{NonZeroU16, NonZeroU64};

#[test]
fn cluster_and_gossip_defaults() {
    let config = NodeConfig::from_toml_str(MINIMAL, no_env()).expect("minimal config is valid");
    let cluster = &config.cluster;
    assert_eq!(cluster, &ClusterSection::default());
    assert!(cluster.seeds.is_empty());
    assert_eq!(cluster.heartbeat_ms.get(), 100);
    assert_eq!(cluster.heartbeat(), Duration::from_millis(100));
    assert_eq!(cluster.election_timeout_min_ms.get(), 400);
    assert_eq!(cluster.election_timeout_min(), Duration::from_millis(400));
    assert_eq!(cluster.election_timeout_max_ms.get(), 800);
    assert_eq!(cluster.election_timeout_max(), Duration::from_millis(800));
    assert_eq!(cluster.lease_ms.get(), 300);
    assert_eq!(cluster.lease(), Duration::from_millis(300));
    assert_eq!(cluster.placement_grace_ms, 10_000);
    assert_eq!(cluster.placement_grace(), Duration::from_secs(10));
    assert_eq!(cluster.snapshot_every_entries.get(), 1024);
    let gossip = &config.gossip;
    assert_eq!(gossip, &GossipSection::default());
    assert_eq!(gossip.preset, GossipPreset::LanSmall);
    assert_eq!(gossip.preset.cluster_size_hint(), 8);
    assert_eq!(gossip.probe_period_ms, None);
    assert_eq!(gossip.probe_period(), None);
    assert_eq!(gossip.suspect_to_down_ms, None);
    assert_eq!(gossip.suspect_to_down(), None);
    assert_eq!(gossip.packet_bytes_max.get(), 1100);
}

#[test]
fn cluster_and_gossip_rules_fire_naming_the_key() {
    let cases: &[(Edits, &str, &str)] = &[
        // Single values.
        (
            &[("cluster.heartbeat_ms", "9")],
            "cluster.heartbeat_ms",
            "9 is outside 10..=10000; set heartbeat_ms to a value from 10 to 10000 (default 100)",
        ),
        (
            &[("cluster.election_timeout_max_ms", "60001")],
            "cluster.election_timeout_max_ms",
            "60001 is outside 20..=60000",
        ),
        (
            &[("cluster.lease_ms", "0")],
            "cluster.lease_ms",
            "0 is outside 10..=60000",
        ),
        (
            &[("cluster.placement_grace_ms", "-1")],
            "cluster.placement_grace_ms",
            "-1 is outside 0..=86400000",
        ),
        (
            &[("cluster.placement_grace_ms", "86400001")],
            "cluster.placement_grace_ms",
            "86400001 is outside 0..=86400000",
        ),
        (
            &[("cluster.snapshot_every_entries", "15")],
            "cluster.snapshot_every_entries",
            "15 is outside 16..=10000000",
        ),
        (
            &[("cluster.seeds", "\"10.0.0.12:7443\"")],
            "cluster.seeds",
            "expected an array of \"ip:port\" strings, found string \"10.0.0.12:7443\"",
        ),
        (
            &[("cluster.seeds", "[\"10.0.0.12:7443\", \"node-2:7443\"]")],
            "cluster.seeds[1]",
            "\"node-2:7443\" is not an ip:port socket address",
        ),
        (
            &[("cluster.seeds", "[7443]")],
            "cluster.seeds[0]",
            "expected a string, found integer 7443",
        ),
        (
            &[("gossip.preset", "\"lan-huge\"")],
            "gossip.preset",
            "\"lan-huge\" is not a gossip preset; use one of \"lan-small\" (up to 8 nodes), \
             \"lan-medium\" (up to 32 nodes), \"lan-large\" (up to 128 nodes)",
        ),
        (
            &[("gossip.preset", "8")],
            "gossip.preset",
            "expected a string, found integer 8",
        ),
        (
            &[("gossip.probe_period_ms", "99")],
            "gossip.probe_period_ms",
            "99 is outside 100..=60000; set probe_period_ms to a value from 100 to 60000, or remove it",
        ),
        (
            &[("gossip.suspect_to_down_ms", "600001")],
            "gossip.suspect_to_down_ms",
            "600001 is outside 100..=600000",
        ),
        (
            &[("gossip.packet_bytes_max", "1201")],
            "gossip.packet_bytes_max",
            "1201 is outside 512..=1200",
        ),
        (
            &[("gossip.packet_bytes_max", "511")],
            "gossip.packet_bytes_max",
            "511 is outside 512..=1200",
        ),
        // Cross-field rules.
        (
            &[("cluster.heartbeat_ms", "300")],
            "cluster.heartbeat_ms",
            "300 is not below `cluster.lease_ms` (300): a lease shorter than a heartbeat \
             interval expires between heartbeats; lower heartbeat_ms below 300 or raise \
             lease_ms above 300",
        ),
        (
            &[("cluster.lease_ms", "400")],
            "cluster.lease_ms",
            "400 is not below `cluster.election_timeout_min_ms` (400): the lease must be \
             shorter than the election timeout, or a new leader could be elected while the old \
             one still believes its lease; lower lease_ms below 400 or raise \
             election_timeout_min_ms above 400",
        ),
        (
            &[("cluster.lease_ms", "5000")],
            "cluster.lease_ms",
            "lease must be shorter than the election timeout",
        ),
        (
            &[("cluster.election_timeout_max_ms", "400")],
            "cluster.election_timeout_min_ms",
            "400 is not below `cluster.election_timeout_max_ms` (400)",
        ),
        (
            &[
                ("cluster.election_timeout_min_ms", "900"),
                ("cluster.election_timeout_max_ms", "800"),
            ],
            "cluster.election_timeout_min_ms",
            "lower election_timeout_min_ms below 800 or raise election_timeout_max_ms above 900",
        ),
        (
            &[
                ("cluster.heartbeat_ms", "150"),
                ("cluster.lease_ms", "200"),
                ("cluster.election_timeout_min_ms", "449"),
            ],
            "cluster.heartbeat_ms",
            "3 x 150 = 450 is above `cluster.election_timeout_min_ms` (449): followers must \
             hear several heartbeats per election timeout; lower heartbeat_ms to at most 149 \
             or raise election_timeout_min_ms to at least 450",
        ),
        (
            &[
                ("node.advertise_addr", "\"10.0.0.11:7443\""),
                ("cluster.seeds", "[\"10.0.0.12:7443\", \"10.0.0.11:7443\"]"),
            ],
            "cluster.seeds",
            "seeds[1] (10.0.0.11:7443) is this node's own `node.advertise_addr`; a node cannot \
             join through itself; remove this node's own address 10.0.0.11:7443 from \
             cluster.seeds",
        ),
        (
            // advertise_addr defaults to listen_addr.
            &[("cluster.seeds", "[\"127.0.0.1:7443\"]")],
            "cluster.seeds",
            "remove this node's own address 127.0.0.1:7443",
        ),
        (
            &[
                ("gossip.probe_period_ms", "2000"),
                ("gossip.suspect_to_down_ms", "2000"),
            ],
            "gossip.probe_period_ms",
            "2000 is not below `gossip.suspect_to_down_ms` (2000): a suspected member must get \
             at least one probe period to refute; lower probe_period_ms below 2000 or raise \
             suspect_to_down_ms above 2000",
        ),
    ];
    assert_rules_fire(cases);
}

#[test]
fn a_cluster_without_seeds_may_replicate() {
    // The first node of a cluster has no seeds, whatever the replication factor.
    let text = with(&[("cluster.replicas", "7"), ("cluster.seeds", "[]")]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("no seeds is fine");
    assert!(config.cluster.seeds.is_empty());
}

#[test]
fn one_gossip_timing_alone_is_not_compared() {
    // Only when both are set can the config check their order; alone, either may take
    // any value in its range.
    for edit in [
        ("gossip.probe_period_ms", "60000"),
        ("gossip.suspect_to_down_ms", "100"),
    ] {
        NodeConfig::from_toml_str(&with(&[edit]), no_env()).expect("one timing alone is valid");
    }
}

#[test]
fn seeds_are_bounded() {
    let addrs = |n: u16| -> String {
        let items: Vec<String> = (1..=n).map(|i| format!("\"10.0.1.1:{i}\"")).collect();
        format!("[{}]", items.join(", "))
    };
    let max = u16::try_from(SEEDS_MAX).expect("fits u16");
    let config = NodeConfig::from_toml_str(&with(&[("cluster.seeds", &addrs(max))]), no_env())
        .expect("SEEDS_MAX seeds are fine");
    assert_eq!(config.cluster.seeds.len(), SEEDS_MAX);
    let err = parse_err(&with(&[("cluster.seeds", &addrs(max + 1))]), &[]);
    assert_eq!(err.key(), "cluster.seeds", "{err}");
    assert!(
        err.to_string()
            .contains("65 seeds is more than 64; list at most 64 other nodes"),
        "{err}"
    );
    assert_one_line(&err);
}

#[test]
fn gossip_presets_by_name() {
    for (name, preset, hint) in [
        ("lan-small", GossipPreset::LanSmall, 8),
        ("lan-medium", GossipPreset::LanMedium, 32),
        ("lan-large", GossipPreset::LanLarge, 128),
    ] {
        let text = with(&[("gossip.preset", &format!("\"{name}\""))]);
        let config = NodeConfig::from_toml_str(&text, no_env()).expect("known preset");
        assert_eq!(config.gossip.preset, preset);
        assert_eq!(preset.as_str(), name);
        assert_eq!(preset.to_string(), name);
        assert_eq!(preset.cluster_size_hint(), hint);
    }
}

#[test]
fn cluster_and_gossip_env_overrides_apply() {
    let config = NodeConfig::from_toml_str(
        MINIMAL,
        env(&[
            ("SHOAL_CLUSTER__SEEDS", "10.0.0.12:7443, [fd00::13]:7443"),
            ("SHOAL_CLUSTER__HEARTBEAT_MS", "50"),
            ("SHOAL_CLUSTER__ELECTION_TIMEOUT_MIN_MS", "1000"),
            ("SHOAL_CLUSTER__ELECTION_TIMEOUT_MAX_MS", "2000"),
            ("SHOAL_CLUSTER__LEASE_MS", "600"),
            ("SHOAL_CLUSTER__PLACEMENT_GRACE_MS", "0"),
            ("SHOAL_CLUSTER__SNAPSHOT_EVERY_ENTRIES", "4096"),
            ("SHOAL_GOSSIP__PRESET", "lan-medium"),
            ("SHOAL_GOSSIP__PROBE_PERIOD_MS", "500"),
            ("SHOAL_GOSSIP__SUSPECT_TO_DOWN_MS", "3000"),
            ("SHOAL_GOSSIP__PACKET_BYTES_MAX", "1200"),
        ]),
    )
    .expect("cluster and gossip overrides are valid");
    let seeds: Vec<String> = config.cluster.seeds.iter().map(|a| a.to_string()).collect();
    assert_eq!(seeds, ["10.0.0.12:7443", "[fd00::13]:7443"]);
    assert_eq!(config.cluster.heartbeat_ms.get(), 50);
    assert_eq!(config.cluster.election_timeout_min_ms.get(), 1000);
    assert_eq!(config.cluster.election_timeout_max_ms.get(), 2000);
    assert_eq!(config.cluster.lease_ms.get(), 600);
    assert_eq!(config.cluster.placement_grace_ms, 0);
    assert_eq!(config.cluster.snapshot_every_entries.get(), 4096);
    assert_eq!(config.gossip.preset, GossipPreset::LanMedium);
    assert_eq!(
        config.gossip.probe_period_ms.map(NonZeroU64::get),
        Some(500)
    );
    assert_eq!(
        config.gossip.suspect_to_down_ms.map(NonZeroU64::get),
        Some(3000)
    );
    assert_eq!(config.gossip.packet_bytes_max.get(), 1200);

    // An empty (or blank) list clears seeds set in the file.
    let text = with(&[("cluster.seeds", "[\"10.0.0.12:7443\"]")]);
    for empty in ["", " "] {
        let config = NodeConfig::from_toml_str(&text, env(&[("SHOAL_CLUSTER__SEEDS", empty)]))
            .expect("empty seeds");
        assert!(config.cluster.seeds.is_empty(), "{empty:?}");
    }
}

#[test]
fn bad_cluster_and_gossip_env_values_name_the_variable() {
    let cases: &[(&str, &str, &str)] = &[
        ("SHOAL_CLUSTER__LEASE_MS", "short", "cluster.lease_ms"),
        (
            "SHOAL_CLUSTER__PLACEMENT_GRACE_MS",
            "-5",
            "cluster.placement_grace_ms",
        ),
        ("SHOAL_CLUSTER__SEEDS", "10.0.0.12", "cluster.seeds[0]"),
        (
            "SHOAL_CLUSTER__SEEDS",
            "10.0.0.12:7443,,10.0.0.13:7443",
            "cluster.seeds[1]",
        ),
        (
            "SHOAL_CLUSTER__SEEDS",
            "10.0.0.12:7443,",
            "cluster.seeds[1]",
        ),
        ("SHOAL_GOSSIP__PRESET", "wan", "gossip.preset"),
        (
            "SHOAL_GOSSIP__PROBE_PERIOD_MS",
            "10",
            "gossip.probe_period_ms",
        ),
        (
            "SHOAL_GOSSIP__PACKET_BYTES_MAX",
            "1500",
            "gossip.packet_bytes_max",
        ),
    ];
    assert_bad_env_values(cases);
}

#[test]
fn bad_env_preset_lists_the_allowed_values() {
    let err = parse_err(MINIMAL, &[("SHOAL_GOSSIP__PRESET", "lan-huge")]);
    assert_eq!(
        err.to_string(),
        "config error at `gossip.preset`: environment variable SHOAL_GOSSIP__PRESET: \
         \"lan-huge\" is not a gossip preset; use one of \"lan-small\" (up to 8 nodes), \
         \"lan-medium\" (up to 32 nodes), \"lan-large\" (up to 128 nodes): the smallest at \
         least your node count"
    );
}

#[test]
fn env_seed_equal_to_own_address_is_rejected() {
    let text = with(&[("node.advertise_addr", "\"10.0.0.11:7443\"")]);
    let err = parse_err(
        &text,
        &[("SHOAL_CLUSTER__SEEDS", "10.0.0.12:7443,10.0.0.11:7443")],
    );
    assert_eq!(err.key(), "cluster.seeds", "{err}");
    assert!(
        err.to_string()
            .contains("remove this node's own address 10.0.0.11:7443 from cluster.seeds"),
        "{err}"
    );
    // The same address as the advertise override is caught too.
    let err = parse_err(
        MINIMAL,
        &[
            ("SHOAL_NODE__ADVERTISE_ADDR", "10.0.0.11:7443"),
            ("SHOAL_CLUSTER__SEEDS", "10.0.0.11:7443"),
        ],
    );
    assert_eq!(err.key(), "cluster.seeds", "{err}");
}

#[test]
fn validate_catches_cluster_and_gossip_edited_in_code() {
    let cases: &[(Edit, &str)] = &[
        (
            |c| c.cluster.placement_grace_ms = u64::MAX,
            "cluster.placement_grace_ms",
        ),
        (
            |c| c.cluster.heartbeat_ms = NonZeroU64::MIN,
            "cluster.heartbeat_ms",
        ),
        (
            |c| c.cluster.lease_ms = c.cluster.election_timeout_min_ms,
            "cluster.lease_ms",
        ),
        (
            |c| c.cluster.election_timeout_max_ms = c.cluster.election_timeout_min_ms,
            "cluster.election_timeout_min_ms",
        ),
        (
            |c| c.cluster.seeds.push(c.node.advertise_addr),
            "cluster.seeds",
        ),
        (
            |c| {
                let seed = SocketAddr::from(([10, 0, 0, 12], 7443));
                c.cluster.seeds = vec![seed; SEEDS_MAX + 1];
            },
            "cluster.seeds",
        ),
        (
            |c| c.gossip.packet_bytes_max = NonZeroU16::MAX,
            "gossip.packet_bytes_max",
        ),
        (
            |c| c.gossip.probe_period_ms = NonZeroU64::new(50),
            "gossip.probe_period_ms",
        ),
        (
            |c| c.gossip.suspect_to_down_ms = Some(NonZeroU64::MAX),
            "gossip.suspect_to_down_ms",
        ),
        (
            |c| {
                c.gossip.probe_period_ms = NonZeroU64::new(5000);
                c.gossip.suspect_to_down_ms = NonZeroU64::new(4000);
            },
            "gossip.probe_period_ms",
        ),
    ];
    assert_edits_rejected(cases);
}
