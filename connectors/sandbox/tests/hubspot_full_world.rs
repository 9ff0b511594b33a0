//! Seeding time of the full default demo world (about 180,000 records).

use std::time::{Duration, Instant};

use leadscore_demo_org::{generate, DemoOptions};
use leadscore_sandbox::hubspot::ObjectType;
use leadscore_sandbox::{HubSpotOptions, HubSpotSandbox};

/// Ignored by default because generating the full world takes a while in a debug build;
/// run it with `cargo test -p leadscore-sandbox --test hubspot_full_world -- --ignored`.
#[tokio::test]
#[ignore]
async fn full_world_seeds_in_seconds() {
    let started = Instant::now();
    let org = generate(&DemoOptions::default()).expect("demo org generates");
    let generated = started.elapsed();
    let total: usize = org.records.values().map(Vec::len).sum();

    let started = Instant::now();
    let sandbox = HubSpotSandbox::new(org.records, HubSpotOptions::default()).expect("seeds");
    let seeded = started.elapsed();
    let portal = sandbox.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let handle = portal.handle();
    let contacts = handle.count(ObjectType::Contacts);
    println!("{total} demo records generated in {generated:?}, seeded in {seeded:?}; {contacts} contacts");
    assert!(contacts > 0);
    assert!(seeded < Duration::from_secs(10), "seeding took {seeded:?}");
    portal.shutdown().await;
}
