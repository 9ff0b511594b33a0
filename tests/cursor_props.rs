//! Property tests of the incremental cursor. Random sequences of inserts, updates, deletes,
//! bursts of equal change stamps, late commits and page sizes are interleaved with pulls that
//! finish, pulls cut off partway and pulls whose token or query locator expires. Every case
//! must end with the store equal to the CRM. Each case drives the real `pipeline::pull` over
//! HTTP against a sandbox, with a real redb store in a temp dir.
//!
//! Every case derives from one seed, printed on failure with the operations it ran. Replay
//! it with `LEADSCORE_CURSOR_SEED=<seed> cargo test -p leadscore --test cursor_props`;
//! `LEADSCORE_CURSOR_CASES` sets the number of cases.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use leadscore::config::{Config, ConnectorSecrets, Secrets};
use leadscore::demo::{hubspot_sandbox_config, sandbox_config};
use leadscore::pipeline;
use leadscore::run::{AnyConnector, Crm, FieldMap};
use leadscore::store::Store;
use leadscore_connector::Value;
use leadscore_hubspot::{HubSpotAuth, HubSpotConfig, HubSpotConnector};
use leadscore_sandbox::hubspot::ObjectType;
use leadscore_sandbox::{
    HubSpotHandle, HubSpotOptions, HubSpotSandbox, RecordMap, RunningHubSpot, RunningSandbox,
    Sandbox, SandboxHandle, SandboxOptions,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;

const SEED_VAR: &str = "LEADSCORE_CURSOR_SEED";
const CASES_VAR: &str = "LEADSCORE_CURSOR_CASES";
/// Cases per run: each starts a sandbox and runs a few dozen pulls, well under a second.
const DEFAULT_CASES: u64 = 12;
/// Pulls tried at the end of a case before the store must equal the CRM.
const FINAL_PULLS: usize = 20;
const OBJECT: &str = "Account";
const LIMIT: u64 = 1_000_000;

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not an unsigned integer")),
    )
}

/// One step of a case.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// A new record, stamped at the clock.
    Insert,
    /// An edit of a live record, stamped at the clock.
    Update,
    /// A deletion, stamped at the clock.
    Delete,
    /// An edit of this many records that all get one new stamp.
    Burst(usize),
    /// A record created in a transaction that committed late: its stamp is up to half the
    /// lookback before the latest stamp in the CRM.
    LateInsert,
    /// A pull that runs to the end.
    Pull,
    /// A pull with this many requests left in the CRM's day, so the daily limit, or the share
    /// of it one run may use, stops the pull partway.
    PullCut(u64),
    /// A pull whose access token expires after this many requests.
    PullTokenExpiry(u64),
    /// A pull whose query locators are invalidated once this many query pages were served.
    PullLocatorInvalidated(usize),
}

/// The parameters of one case.
#[derive(Debug)]
struct Case {
    seed: u64,
    page_size: usize,
    lookback_secs: u64,
    /// Every query locator expires at once, so each pull restarts from the stored cursor
    /// after every page.
    locators_expire: bool,
    initial: usize,
    ops: Vec<Op>,
}

impl Case {
    fn generate(seed: u64, locators_expire: bool) -> Case {
        let mut rng = StdRng::seed_from_u64(seed);
        let page_size = rng.gen_range(1..=6);
        let lookback_secs = *[1, 5, 300].choose(&mut rng).expect("choices");
        let initial = rng.gen_range(0..=14);
        let count = rng.gen_range(6..=24);
        let ops = (0..count)
            .map(|_| match rng.gen_range(0..100) {
                0..=17 => Op::Insert,
                18..=37 => Op::Update,
                38..=47 => Op::Delete,
                48..=57 => Op::Burst(rng.gen_range(2..=8)),
                58..=65 => Op::LateInsert,
                66..=81 => Op::Pull,
                82..=89 => Op::PullCut(rng.gen_range(1..=16)),
                90..=94 => Op::PullLocatorInvalidated(rng.gen_range(1..=3)),
                _ => Op::PullTokenExpiry(rng.gen_range(1..=4)),
            })
            .collect();
        Case {
            seed,
            page_size,
            lookback_secs,
            locators_expire,
            initial,
            ops,
        }
    }
}

/// A running case: the sandbox, its config and store, the clock that stamps edits, and a log
/// of what was done, for the failure message.
struct Run {
    sandbox: RunningSandbox,
    handle: SandboxHandle,
    _dir: tempfile::TempDir,
    config: Config,
    store: Store,
    http: reqwest::Client,
    rng: StdRng,
    /// The stamp the next edit gets. It starts an hour before now, so the ticks of one case
    /// stay behind the host's time.
    clock: DateTime<Utc>,
    log: Vec<String>,
    stats: Stats,
}

/// What the faults did over all cases, printed so a run shows the cases cut pulls short.
#[derive(Default, Debug)]
struct Stats {
    pulls: usize,
    pulls_cut: usize,
    locators_invalidated: usize,
}

fn seed_records(rng: &mut StdRng, count: usize, start: DateTime<Utc>) -> Vec<RecordMap> {
    // The first characters after the key prefix put seeded ids before and after the ids the
    // sandbox gives new records (`001Sb...`), so ties in the stamp fall on both sides.
    (0..count)
        .map(|n| {
            let lead = ['0', 'T', 'a'][n % 3];
            let created = start - chrono::Duration::seconds(rng.gen_range(0..4));
            let mut record = RecordMap::new();
            record.insert("Id".into(), format!("001{lead}{n:011}AAA").into());
            record.insert("Name".into(), format!("seeded {n}").into());
            record.insert(
                "CreatedDate".into(),
                created.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string().into(),
            );
            record
        })
        .collect()
}

impl Run {
    async fn start(case: &Case) -> Run {
        let mut rng = StdRng::seed_from_u64(case.seed ^ 0x5eed);
        let clock = (Utc::now() - chrono::Duration::hours(1)).trunc_subsecs(3);
        let records = BTreeMap::from([(
            OBJECT.to_string(),
            seed_records(&mut rng, case.initial, clock),
        )]);
        let options = SandboxOptions {
            page_size: case.page_size,
            locator_ttl: if case.locators_expire {
                Duration::ZERO
            } else {
                SandboxOptions::default().locator_ttl
            },
            ..SandboxOptions::default()
        };
        let sandbox = Sandbox::new(records, options)
            .expect("the sandbox accepts the seeded records")
            .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("the sandbox listens on loopback");

        let dir = tempfile::tempdir().expect("temp dir");
        let store_path = dir.path().join("store");
        let text = sandbox_config(&sandbox.url(), &store_path.display().to_string())
            .replace(
                "cursor_lookback_secs = 300",
                &format!("cursor_lookback_secs = {}", case.lookback_secs),
            )
            .replace(
                r#"levels = ["account", "contact", "lead"]"#,
                r#"levels = ["account"]"#,
            );
        let config_path = dir.path().join("leadscore.toml");
        std::fs::write(&config_path, &text).expect("config written");
        let config = Config::load(&config_path).unwrap_or_else(|err| panic!("{err}"));
        let store = Store::open(&config.store_path).expect("store opens");

        Run {
            handle: sandbox.handle(),
            sandbox,
            _dir: dir,
            config,
            store,
            http: reqwest::Client::new(),
            rng,
            clock,
            log: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn secrets(&self) -> Secrets {
        let options = self.sandbox.options();
        Secrets {
            client_secret: SecretString::from(options.client_secret.clone()),
            refresh_token: SecretString::from(options.refresh_token.clone()),
        }
    }

    /// Moves the clock forward by 0 ms, 1 ms, 0.7 s or 3 s.
    fn tick(&mut self) {
        let millis = *[0, 1, 1, 700, 3000].choose(&mut self.rng).expect("choices");
        self.clock += chrono::Duration::milliseconds(millis);
    }

    /// Returns the live (not deleted) records of the sandbox by id, with their stamps.
    fn crm_records(&self) -> BTreeMap<String, (DateTime<Utc>, Value)> {
        self.handle
            .records(OBJECT)
            .into_iter()
            .filter(|r| r.get("IsDeleted") != Some(&serde_json::Value::Bool(true)))
            .map(|r| {
                let id = r["Id"].as_str().expect("id").to_string();
                let stamp = r["SystemModstamp"].as_str().expect("stamp");
                let stamp = DateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.3f%z")
                    .unwrap_or_else(|err| panic!("{id}: stamp {stamp:?}: {err}"))
                    .with_timezone(&Utc);
                let name = match r.get("Name") {
                    Some(serde_json::Value::String(name)) => Value::Text(name.clone()),
                    _ => Value::Null,
                };
                (id, (stamp, name))
            })
            .collect()
    }

    fn live_ids(&self) -> Vec<String> {
        self.crm_records().into_keys().collect()
    }

    /// Returns the latest stamp of any record, deleted ones included.
    fn latest_stamp(&self) -> Option<DateTime<Utc>> {
        self.handle
            .records(OBJECT)
            .iter()
            .filter_map(|r| r["SystemModstamp"].as_str().map(str::to_string))
            .filter_map(|s| DateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.3f%z").ok())
            .map(|s| s.with_timezone(&Utc))
            .max()
    }

    fn current_stamp(&self, id: &str) -> DateTime<Utc> {
        let record = self.handle.record(OBJECT, id).expect("record exists");
        let text = record["SystemModstamp"].as_str().expect("stamp");
        DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.3f%z")
            .expect("stamp parses")
            .with_timezone(&Utc)
    }

    /// Returns a clock stamp later than the record's own, moving the clock if needed: a real
    /// edit always gets a new stamp.
    fn edit_stamp(&mut self, id: &str) -> DateTime<Utc> {
        let current = self.current_stamp(id);
        if self.clock <= current {
            self.clock = current + chrono::Duration::milliseconds(1);
        }
        self.clock
    }

    fn rename(&mut self, id: &str, stamp: DateTime<Utc>) {
        let name = format!("edit {} at {}", self.log.len(), stamp.timestamp_millis());
        let mut fields = RecordMap::new();
        fields.insert("Name".into(), name.into());
        self.handle
            .update_record(OBJECT, id, fields)
            .expect("edit applies");
        self.handle
            .set_system_modstamp(OBJECT, id, stamp)
            .expect("stamp applies");
    }

    /// Creates a record over the REST API, as a user would, and returns its id.
    async fn create(&mut self) -> String {
        let url = self.sandbox.url();
        let options = self.sandbox.options().clone();
        let name = format!("created {}", self.log.len());
        for _ in 0..2 {
            let token: serde_json::Value = self
                .http
                .post(format!("{url}/services/oauth2/token"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", options.client_id.as_str()),
                    ("client_secret", options.client_secret.as_str()),
                    ("refresh_token", options.refresh_token.as_str()),
                ])
                .send()
                .await
                .expect("token request")
                .json()
                .await
                .expect("token JSON");
            let token = token["access_token"].as_str().expect("access token");
            let response = self
                .http
                .post(format!("{url}/services/data/v59.0/sobjects/{OBJECT}"))
                .bearer_auth(token)
                .json(&serde_json::json!({ "Name": name }))
                .send()
                .await
                .expect("create request");
            // A token expiry armed for a pull can fall on this request; a new token follows.
            if response.status() == reqwest::StatusCode::UNAUTHORIZED {
                continue;
            }
            let status = response.status();
            let body: serde_json::Value = response.json().await.expect("create JSON");
            assert!(status.is_success(), "create failed: {status} {body}");
            return body["id"].as_str().expect("new id").to_string();
        }
        panic!("create was rejected twice with 401");
    }

    /// Runs one pull with a new connector, as each `leadscore pull` or daemon pass does, so
    /// the API budget of one run does not carry over to the next.
    async fn pull(&mut self) -> Result<usize, String> {
        self.stats.pulls += 1;
        let connector =
            leadscore::run::connect(&self.config, self.secrets()).expect("connector builds");
        pipeline::pull(&connector, &self.store, &self.config)
            .await
            .map(|report| {
                report
                    .objects
                    .iter()
                    .filter(|o| o.object == OBJECT)
                    .map(|o| o.pulled)
                    .sum()
            })
            .map_err(|err| format!("{err:#}"))
    }

    /// Returns every difference between the stored records and the sandbox's live ones.
    fn differences(&self) -> Vec<String> {
        let crm = self.crm_records();
        let stored: BTreeMap<String, (DateTime<Utc>, Value)> = self
            .store
            .records(OBJECT)
            .expect("records read")
            .into_iter()
            .map(|r| {
                let name = r.get("Name").clone();
                (r.id, (r.modstamp, name))
            })
            .collect();
        let mut out = Vec::new();
        for (id, (stamp, name)) in &crm {
            match stored.get(id) {
                None => out.push(format!(
                    "{id} ({stamp}, {name:?}) is missing from the store"
                )),
                Some(copy) if copy != &(*stamp, name.clone()) => out.push(format!(
                    "{id}: the store has {copy:?}, the CRM has ({stamp}, {name:?})"
                )),
                Some(_) => {}
            }
        }
        for id in stored.keys().filter(|id| !crm.contains_key(*id)) {
            out.push(format!("{id} is stored but deleted or absent in the CRM"));
        }
        out
    }

    fn assert_equal(&self, case: &Case, when: &str) {
        let differences = self.differences();
        assert!(
            differences.is_empty(),
            "seed {} ({SEED_VAR}={}): the store differs from the CRM {when}:\n  {}\ncase: page size {}, lookback {} s, locators expire: {}, {} seeded records\noperations:\n  {}",
            case.seed,
            case.seed,
            differences.join("\n  "),
            case.page_size,
            case.lookback_secs,
            case.locators_expire,
            case.initial,
            self.log.join("\n  ")
        );
    }

    async fn apply(&mut self, case: &Case, op: Op) {
        self.tick();
        match op {
            Op::Insert => {
                // The sandbox stamps a new record with the host's time; the clock replaces it.
                let id = self.create().await;
                let stamp = self.clock;
                self.handle
                    .set_system_modstamp(OBJECT, &id, stamp)
                    .expect("stamp");
                self.log.push(format!("insert {id} at {stamp}"));
            }
            Op::Update => {
                let ids = self.live_ids();
                let Some(id) = ids.choose(&mut self.rng).cloned() else {
                    return self.log.push("update skipped: no live record".into());
                };
                let stamp = self.edit_stamp(&id);
                self.rename(&id, stamp);
                self.log.push(format!("update {id} at {stamp}"));
            }
            Op::Delete => {
                let ids = self.live_ids();
                let Some(id) = ids.choose(&mut self.rng).cloned() else {
                    return self.log.push("delete skipped: no live record".into());
                };
                let stamp = self.edit_stamp(&id);
                self.handle.delete_record(OBJECT, &id).expect("delete");
                self.handle
                    .set_system_modstamp(OBJECT, &id, stamp)
                    .expect("stamp");
                self.log.push(format!("delete {id} at {stamp}"));
            }
            Op::Burst(size) => {
                let mut ids = self.live_ids();
                ids.shuffle(&mut self.rng);
                ids.truncate(size);
                // One stamp later than every record's, shared by the whole burst.
                if let Some(latest) = self.latest_stamp() {
                    if self.clock <= latest {
                        self.clock = latest + chrono::Duration::milliseconds(1);
                    }
                }
                let stamp = self.clock;
                for id in &ids {
                    self.rename(id, stamp);
                }
                self.log.push(format!(
                    "burst of {} at {stamp}: {}",
                    ids.len(),
                    ids.join(" ")
                ));
            }
            Op::LateInsert => {
                let latest = self.latest_stamp().unwrap_or(self.clock);
                let half = i64::try_from(case.lookback_secs * 500).expect("small");
                let back = self.rng.gen_range(0..half.max(1));
                let stamp = latest - chrono::Duration::milliseconds(back);
                let id = self.create().await;
                self.handle
                    .set_system_modstamp(OBJECT, &id, stamp)
                    .expect("stamp");
                self.log.push(format!("late insert {id} at {stamp}"));
            }
            Op::Pull => {
                let result = self.pull().await;
                self.log.push(format!("pull: {result:?}"));
                if case.locators_expire && result.is_err() {
                    return;
                }
                if let Err(err) = result {
                    panic!(
                        "seed {}: a pull without injected faults failed: {err}\noperations:\n  {}",
                        case.seed,
                        self.log.join("\n  ")
                    );
                }
                self.assert_equal(case, "after a pull");
            }
            Op::PullCut(requests) => {
                let (used, _) = self.handle.api_usage();
                self.handle.set_daily_limit(used + requests);
                let result = self.pull().await;
                self.handle.set_daily_limit(LIMIT);
                if result.is_err() {
                    self.stats.pulls_cut += 1;
                }
                self.log
                    .push(format!("pull cut after {requests} requests: {result:?}"));
                if result.is_ok() {
                    self.assert_equal(case, "after a pull that finished under the limit");
                }
            }
            Op::PullLocatorInvalidated(pages) => {
                // NOTE: the watcher invalidates the locators after it finds the page in the
                // request log, so the page the pull is fetching then may still succeed. A replay
                // of the seed can therefore cut the pull one page later.
                let handle = self.handle.clone();
                let before = query_requests(&handle);
                let watcher = tokio::spawn(async move {
                    while query_requests(&handle) < before + pages {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    handle.invalidate_locators();
                });
                let result = self.pull().await;
                let invalidated = watcher.is_finished();
                watcher.abort();
                if invalidated {
                    self.stats.locators_invalidated += 1;
                }
                self.log.push(format!(
                    "pull with locators invalidated after {pages} query pages (invalidated: {invalidated}): {result:?}"
                ));
                if let Err(err) = result {
                    panic!(
                        "seed {}: a pull did not survive an invalidated query locator: {err}\noperations:\n  {}",
                        case.seed,
                        self.log.join("\n  ")
                    );
                }
                self.assert_equal(case, "after a pull whose locators were invalidated");
            }
            Op::PullTokenExpiry(requests) => {
                self.handle.expire_tokens_after_requests(requests);
                let result = self.pull().await;
                self.log.push(format!(
                    "pull with the token expiring after {requests} requests: {result:?}"
                ));
                if case.locators_expire && result.is_err() {
                    return;
                }
                if let Err(err) = result {
                    panic!(
                        "seed {}: a pull did not survive an expired token: {err}\noperations:\n  {}",
                        case.seed,
                        self.log.join("\n  ")
                    );
                }
                self.assert_equal(case, "after a pull whose token expired");
            }
        }
    }

    /// Pulls until a pull finishes, checks the store, then checks that a repeat pull stores
    /// nothing.
    async fn finish(&mut self, case: &Case) {
        let mut last = Err(String::new());
        for _ in 0..FINAL_PULLS {
            last = self.pull().await;
            self.log.push(format!("final pull: {last:?}"));
            if last.is_ok() {
                break;
            }
        }
        if let Err(err) = last {
            panic!(
                "seed {}: no pull finished in {FINAL_PULLS} tries: {err}\noperations:\n  {}",
                case.seed,
                self.log.join("\n  ")
            );
        }

        self.assert_equal(case, "at the end");
        // Deleted records in the lookback are read again but match their tombstones, so an
        // unchanged CRM gives a pull that stores nothing.
        let repeat = self.pull().await;
        self.log.push(format!("repeat pull: {repeat:?}"));
        let counted = repeat
            .clone()
            .unwrap_or_else(|err| panic!("seed {}: the repeat pull failed: {err}", case.seed));
        assert_eq!(
            counted,
            0,
            "seed {}: a pull of an unchanged CRM stored {counted} records again\noperations:\n  {}",
            case.seed,
            self.log.join("\n  ")
        );
        self.assert_equal(case, "after a repeat pull");
    }
}

/// Counts the query requests (first pages and later ones) the sandbox has served.
fn query_requests(handle: &SandboxHandle) -> usize {
    handle
        .request_log()
        .iter()
        .filter(|r| r.path.contains("/query"))
        .count()
}

async fn run_case(case: &Case, stats: &mut Stats) {
    let mut run = Run::start(case).await;
    for &op in &case.ops {
        run.apply(case, op).await;
    }
    run.finish(case).await;
    stats.pulls += run.stats.pulls;
    stats.pulls_cut += run.stats.pulls_cut;
    stats.locators_invalidated += run.stats.locators_invalidated;
    run.sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_store_matches_crm() {
    let first = env_number(SEED_VAR).unwrap_or_else(rand::random);
    let cases = env_number(CASES_VAR).unwrap_or(DEFAULT_CASES);
    println!("cursor property seeds {first} to {first} + {cases}; replay one with {SEED_VAR}=<seed> {CASES_VAR}=1");
    let mut stats = Stats::default();
    for n in 0..cases {
        let case = Case::generate(first.wrapping_add(n), false);
        run_case(&case, &mut stats).await;
    }
    println!("{cases} cases: {stats:?}");
    assert!(stats.pulls_cut > 0, "no pull was cut short: {stats:?}");
}

/// The same cases with every query locator expiring before its next page is fetched: each
/// restart resumes strictly after the last page read, inside a block of equal stamps too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_store_matches_crm_locators_expiring() {
    let first = env_number(SEED_VAR).unwrap_or_else(rand::random);
    let cases = env_number(CASES_VAR).unwrap_or(DEFAULT_CASES);
    println!("cursor property seeds {first} to {first} + {cases}; replay one with {SEED_VAR}=<seed> {CASES_VAR}=1");
    let mut stats = Stats::default();
    for n in 0..cases {
        let case = Case::generate(first.wrapping_add(n), true);
        run_case(&case, &mut stats).await;
    }
}

// ---- HubSpot ----

/// One step of a HubSpot case.
#[derive(Clone, Copy, Debug)]
enum HsOp {
    /// This many new contacts, all stamped at the clock.
    Insert(usize),
    Update,
    /// Archives a contact, which the portal stamps with the host's time.
    Archive,
    /// Merges one contact into another, as the merge endpoint does.
    Merge,
    Burst(usize),
    /// A contact whose stamp is up to half the lookback before the latest stamp.
    LateInsert,
    Pull,
    PullCut(u64),
}

#[derive(Debug)]
struct HsCase {
    seed: u64,
    /// Records per search page.
    page_size: u32,
    lookback_secs: u64,
    /// Contacts at the start, in three groups with one stamp each.
    initial: [usize; 3],
    ops: Vec<HsOp>,
}

impl HsCase {
    fn generate(seed: u64) -> HsCase {
        let mut rng = StdRng::seed_from_u64(seed);
        let page_size = *[2, 7, 25, 200].choose(&mut rng).expect("choices");
        let lookback_secs = *[1, 5, 300].choose(&mut rng).expect("choices");
        // Three groups with one stamp each, so that a group can fill pages with one stamp.
        let initial = [
            rng.gen_range(0..=60),
            rng.gen_range(0..=10),
            rng.gen_range(0..=60),
        ];
        let count = rng.gen_range(6..=20);
        let ops = (0..count)
            .map(|_| match rng.gen_range(0..100) {
                0..=14 => HsOp::Insert(rng.gen_range(1..=3)),
                15..=34 => HsOp::Update,
                35..=44 => HsOp::Archive,
                45..=51 => HsOp::Merge,
                52..=61 => HsOp::Burst(rng.gen_range(2..=8)),
                62..=69 => HsOp::LateInsert,
                70..=87 => HsOp::Pull,
                _ => HsOp::PullCut(rng.gen_range(1..=16)),
            })
            .collect();
        HsCase {
            seed,
            page_size,
            lookback_secs,
            initial,
            ops,
        }
    }
}

const HS_OBJECT: &str = "Contact";

fn hubspot_token() -> ConnectorSecrets {
    ConnectorSecrets::HubSpotToken(SecretString::from(
        HubSpotOptions::default().private_app_token,
    ))
}

struct HsRun {
    sandbox: RunningHubSpot,
    handle: HubSpotHandle,
    _dir: tempfile::TempDir,
    config: Config,
    store: Store,
    rng: StdRng,
    clock: DateTime<Utc>,
    log: Vec<String>,
    stats: Stats,
    page_size: u32,
    /// Ids of the contacts the case archived.
    archived: Vec<String>,
}

fn iso_stamp(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|err| panic!("stamp {text:?}: {err}"))
        .with_timezone(&Utc)
}

impl HsRun {
    async fn start(case: &HsCase) -> HsRun {
        let options = HubSpotOptions {
            private_app_ten_second_limit: 100_000,
            search_per_second_limit: 1_000,
            ..HubSpotOptions::default()
        };
        let sandbox = HubSpotSandbox::new(BTreeMap::new(), options)
            .expect("an empty portal")
            .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("the portal listens on loopback");

        let dir = tempfile::tempdir().expect("temp dir");
        let text = hubspot_sandbox_config(
            &sandbox.url(),
            &dir.path().join("store").display().to_string(),
        )
        .replace(
            "cursor_lookback_secs = 300",
            &format!("cursor_lookback_secs = {}", case.lookback_secs),
        )
        .replace(
            r#"levels = ["account", "contact", "lead"]"#,
            r#"levels = ["account", "contact"]"#,
        );
        let config_path = dir.path().join("leadscore.toml");
        std::fs::write(&config_path, text).expect("config written");
        let config = Config::load(&config_path).unwrap_or_else(|err| panic!("{err}"));
        let store = Store::open(&config.store_path).expect("store opens");

        // The pull checks that the write-back properties exist, as `check --fix` creates them.
        let connector = leadscore::run::connect(&config, hubspot_token()).expect("connector");
        leadscore::setup::fix(&connector, &config)
            .await
            .expect("check --fix creates the write-back properties");

        let handle = sandbox.handle();
        let clock = Utc::now().trunc_subsecs(3);
        for (group, count) in case.initial.iter().enumerate() {
            let at = clock - chrono::Duration::seconds(3 - group as i64);
            handle.add_contacts(*count, at);
        }
        HsRun {
            sandbox,
            handle,
            _dir: dir,
            config,
            store,
            rng: StdRng::seed_from_u64(case.seed ^ 0x5eed),
            clock,
            log: Vec::new(),
            stats: Stats::default(),
            page_size: case.page_size,
            archived: Vec::new(),
        }
    }

    /// Builds the connector as `leadscore` does, except for the case's page size and a
    /// client-side search limit the sandbox allows, so that a case takes a second, not a minute.
    fn connector(&self) -> AnyConnector {
        let url = url::Url::parse(&self.sandbox.url()).expect("sandbox URL");
        let mut settings = HubSpotConfig::new(
            url,
            HubSpotAuth::PrivateApp(SecretString::from(
                HubSpotOptions::default().private_app_token,
            )),
        );
        settings.page_size = self.page_size;
        settings.search_per_second = 1_000;
        let connector = HubSpotConnector::new(settings)
            .expect("connector builds")
            .with_api_budget(0.25, None);
        AnyConnector::new(
            Crm::HubSpot(connector),
            FieldMap::new(&self.config.field_map),
        )
    }

    fn stamp_of(&self, id: &str) -> Option<DateTime<Utc>> {
        self.handle
            .properties(ObjectType::Contacts, id)?
            .get("hs_lastmodifieddate")
            .map(|text| iso_stamp(text))
    }

    /// Returns the live contacts by id, with their stamps and names.
    fn crm_records(&self) -> BTreeMap<String, (DateTime<Utc>, Value)> {
        self.handle
            .ids(ObjectType::Contacts)
            .into_iter()
            .map(|id| {
                let properties = self
                    .handle
                    .properties(ObjectType::Contacts, &id)
                    .expect("listed contact");
                let stamp = iso_stamp(&properties["hs_lastmodifieddate"]);
                // The connector builds the neutral Name from the first and last names.
                let parts: Vec<&str> = ["firstname", "lastname"]
                    .iter()
                    .filter_map(|key| properties.get(*key).map(String::as_str))
                    .collect();
                let name = match parts.is_empty() {
                    true => Value::Null,
                    false => Value::Text(parts.join(" ")),
                };
                (id, (stamp, name))
            })
            .collect()
    }

    fn latest_stamp(&self) -> DateTime<Utc> {
        let state = self.crm_records();
        state
            .values()
            .map(|(stamp, _)| *stamp)
            .max()
            .unwrap_or(self.clock)
            .max(self.clock)
    }

    /// Moves the clock to now, or a millisecond past its last stamp when that is later. The
    /// portal stamps archives and merges with the host's time, which the case cannot change,
    /// so the clock here follows real time.
    fn tick(&mut self) {
        let millis = *[0, 1].choose(&mut self.rng).expect("choices");
        let now = Utc::now().trunc_subsecs(3);
        self.clock = (self.clock + chrono::Duration::milliseconds(millis)).max(now);
    }

    fn edit_stamp(&mut self, id: &str) -> DateTime<Utc> {
        if let Some(current) = self.stamp_of(id) {
            if self.clock <= current {
                self.clock = current + chrono::Duration::milliseconds(1);
            }
        }
        self.clock
    }

    fn stamp(&self, ids: &[String], at: DateTime<Utc>) {
        self.handle
            .set_modified(ObjectType::Contacts, ids, at)
            .expect("stamp applies");
    }

    fn rename(&mut self, id: &str) {
        let name = format!("edit {}", self.log.len());
        self.handle
            .set_property(ObjectType::Contacts, id, "lastname", &name)
            .expect("edit applies");
    }

    async fn pull(&mut self) -> Result<usize, String> {
        self.stats.pulls += 1;
        let connector = self.connector();
        let result = pipeline::pull(&connector, &self.store, &self.config).await;
        result
            .map(|report| {
                report
                    .objects
                    .iter()
                    .filter(|o| o.object == HS_OBJECT)
                    .map(|o| o.pulled)
                    .sum()
            })
            .map_err(|err| format!("{err:#}"))
    }

    fn differences(&self) -> Vec<String> {
        let crm = self.crm_records();
        let stored: BTreeMap<String, (DateTime<Utc>, Value)> = self
            .store
            .records(HS_OBJECT)
            .expect("records read")
            .into_iter()
            .map(|r| {
                let name = r.get("Name").clone();
                (r.id, (r.modstamp, name))
            })
            .collect();
        let mut out = Vec::new();
        for (id, (stamp, last)) in &crm {
            match stored.get(id) {
                None => out.push(format!(
                    "{id} ({stamp}, {last:?}) is missing from the store"
                )),
                Some(copy) if copy != &(*stamp, last.clone()) => out.push(format!(
                    "{id}: the store has {copy:?}, the CRM has ({stamp}, {last:?})"
                )),
                Some(_) => {}
            }
        }
        for id in stored.keys().filter(|id| !crm.contains_key(*id)) {
            out.push(format!(
                "{id} is stored but archived, merged or absent in the CRM"
            ));
        }
        out
    }

    fn fail(&self, case: &HsCase, message: &str) -> ! {
        panic!(
            "seed {} ({SEED_VAR}={}, HubSpot): {message}\ncase: page size {}, lookback {} s, initial contacts {:?}\noperations:\n  {}",
            case.seed,
            case.seed,
            case.page_size,
            case.lookback_secs,
            case.initial,
            self.log.join("\n  ")
        );
    }

    fn assert_equal(&self, case: &HsCase, when: &str) {
        let differences = self.differences();
        if !differences.is_empty() {
            self.fail(
                case,
                &format!(
                    "the store differs from the CRM {when}:\n  {}",
                    differences.join("\n  ")
                ),
            );
        }
    }

    fn pick_live(&mut self) -> Option<String> {
        self.handle
            .ids(ObjectType::Contacts)
            .choose(&mut self.rng)
            .cloned()
    }

    async fn apply(&mut self, case: &HsCase, op: HsOp) {
        self.tick();
        match op {
            HsOp::Insert(count) => {
                let ids = self.handle.add_contacts(count, self.clock);
                self.log
                    .push(format!("insert {} at {}", ids.join(" "), self.clock));
            }
            HsOp::Update => {
                let Some(id) = self.pick_live() else {
                    return self.log.push("update skipped: no live contact".into());
                };
                let stamp = self.edit_stamp(&id);
                self.rename(&id);
                self.stamp(std::slice::from_ref(&id), stamp);
                self.log.push(format!("update {id} at {stamp}"));
            }
            HsOp::Archive => {
                let ids = self.handle.ids(ObjectType::Contacts);
                let Some(id) = ids.choose(&mut self.rng).cloned() else {
                    return self.log.push("archive skipped: no live contact".into());
                };
                self.handle
                    .archive(ObjectType::Contacts, &id)
                    .expect("archive");
                let stamp = self.stamp_of(&id);
                self.log.push(format!("archive {id} at {stamp:?}"));
                self.archived.push(id);
            }
            HsOp::Merge => {
                let mut ids = self.handle.ids(ObjectType::Contacts);
                if ids.len() < 2 {
                    return self
                        .log
                        .push("merge skipped: fewer than two contacts".into());
                }
                ids.shuffle(&mut self.rng);
                let (primary, merged) = (ids[0].clone(), ids[1].clone());
                let survivor = self
                    .handle
                    .merge(ObjectType::Contacts, &primary, &merged)
                    .expect("merge");
                let stamp = self.stamp_of(&survivor);
                self.log.push(format!(
                    "merge {merged} into {primary}, survivor {survivor} at {stamp:?}"
                ));
            }
            HsOp::Burst(size) => {
                let mut ids = self.handle.ids(ObjectType::Contacts);
                ids.shuffle(&mut self.rng);
                ids.truncate(size);
                let latest = self.latest_stamp();
                if self.clock <= latest {
                    self.clock = latest + chrono::Duration::milliseconds(1);
                }
                for id in &ids {
                    self.rename(id);
                }
                self.stamp(&ids, self.clock);
                self.log.push(format!(
                    "burst of {} at {}: {}",
                    ids.len(),
                    self.clock,
                    ids.join(" ")
                ));
            }
            HsOp::LateInsert => {
                let latest = self.latest_stamp();
                let half = i64::try_from(case.lookback_secs * 500).expect("small");
                let back = self.rng.gen_range(0..half.max(1));
                let stamp = latest - chrono::Duration::milliseconds(back);
                let ids = self.handle.add_contacts(1, stamp);
                self.log
                    .push(format!("late insert {} at {stamp}", ids.join(" ")));
            }
            HsOp::Pull => {
                let result = self.pull().await;
                self.log.push(format!("pull: {result:?}"));
                if let Err(err) = result {
                    self.fail(
                        case,
                        &format!("a pull without injected faults failed: {err}"),
                    );
                }
                self.assert_equal(case, "after a pull");
            }
            HsOp::PullCut(requests) => {
                let (used, max) = self.handle.daily_usage();
                self.handle.set_daily_limit(used + requests);
                let result = self.pull().await;
                self.handle.set_daily_limit(max);
                if result.is_err() {
                    self.stats.pulls_cut += 1;
                }
                self.log
                    .push(format!("pull cut after {requests} requests: {result:?}"));
                if result.is_ok() {
                    self.assert_equal(case, "after a pull that finished under the limit");
                }
            }
        }
    }

    async fn finish(&mut self, case: &HsCase) {
        let mut last = Err(String::new());
        for _ in 0..FINAL_PULLS {
            last = self.pull().await;
            self.log.push(format!("final pull: {last:?}"));
            if last.is_ok() {
                break;
            }
        }
        if let Err(err) = last {
            self.fail(
                case,
                &format!("no pull finished in {FINAL_PULLS} tries: {err}"),
            );
        }

        self.assert_equal(case, "at the end");
        // As for Salesforce, archived and merged-away contacts match their tombstones.
        let repeat = self.pull().await;
        self.log.push(format!("repeat pull: {repeat:?}"));
        match repeat {
            Ok(0) => {}
            other => self.fail(
                case,
                &format!("a pull of an unchanged CRM returned {other:?}, expected Ok(0)"),
            ),
        }
        self.assert_equal(case, "after a repeat pull");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_store_matches_crm() {
    let first = env_number(SEED_VAR).unwrap_or_else(rand::random);
    let cases = env_number(CASES_VAR).unwrap_or(DEFAULT_CASES);
    println!("HubSpot cursor property seeds {first} to {first} + {cases}; replay one with {SEED_VAR}=<seed> {CASES_VAR}=1");
    let mut stats = Stats::default();
    for n in 0..cases {
        let case = HsCase::generate(first.wrapping_add(n));
        let mut run = HsRun::start(&case).await;
        for &op in &case.ops {
            run.apply(&case, op).await;
        }
        run.finish(&case).await;
        stats.pulls += run.stats.pulls;
        stats.pulls_cut += run.stats.pulls_cut;
        run.sandbox.shutdown().await;
    }
    println!(
        "{cases} HubSpot cases: {} pulls, {} cut short",
        stats.pulls, stats.pulls_cut
    );
    assert!(stats.pulls_cut > 0, "no pull was cut short: {stats:?}");
}

/// A contact merged into another whose survivor is archived before the next pull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_archived_survivor_removes_merged() {
    let case = HsCase {
        seed: 0,
        page_size: 200,
        lookback_secs: 300,
        initial: [3, 0, 0],
        ops: Vec::new(),
    };
    let mut run = HsRun::start(&case).await;
    run.pull().await.expect("first pull");

    let ids = run.handle.ids(ObjectType::Contacts);
    let (primary, merged) = (ids[0].clone(), ids[1].clone());
    let survivor = run
        .handle
        .merge(ObjectType::Contacts, &primary, &merged)
        .expect("merge");
    run.handle
        .archive(ObjectType::Contacts, &survivor)
        .expect("archive");
    run.pull().await.expect("second pull");

    let stored: Vec<String> = run
        .store
        .records(HS_OBJECT)
        .expect("records")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(
        !stored.contains(&merged),
        "the merged-away contact {merged} is still stored: {stored:?}"
    );
    assert!(
        !stored.contains(&survivor),
        "the archived survivor {survivor} is still stored"
    );
    run.sandbox.shutdown().await;
}
