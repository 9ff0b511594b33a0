//! The store after hard stops and damage. A child process writes through the store's public
//! API and is killed with SIGKILL at random moments, and the store must then reopen with every
//! acknowledged write. Damaged store folders give an error with the recovery steps, never a
//! panic, both from `Store::open` and from the `leadscore` binary.
//!
//! A migration of a sled store to redb is killed the same way and must leave the sled store
//! whole until the redb copy is complete.
//!
//! The crash test re-executes this test binary as the writer. Replay a failure with the seed
//! it prints: `LEADSCORE_CRASH_SEED=<seed> cargo test -p leadscore --test store_crash`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use common::Env;
use leadscore::level::Level;
use leadscore::store::{
    ConfirmedWrite, ScoreEvent, ScoreRow, Store, StoreError, WrittenValues, DB_FILE,
};
use leadscore_connector::{Cursor, Record, Value};
use leadscore_sandbox::SandboxOptions;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Environment variable that turns [`crash_writer_child`] into the writer, naming its store.
const CHILD_STORE: &str = "LEADSCORE_CRASH_CHILD_STORE";
/// Environment variable with the generation number the writer uses in its keys.
const CHILD_GENERATION: &str = "LEADSCORE_CRASH_CHILD_GENERATION";
/// Environment variable that fixes the crash test's random seed.
const SEED_VAR: &str = "LEADSCORE_CRASH_SEED";
/// Hard stops in one run of the crash test.
const KILLS: usize = 100;
/// Records in each page the writer saves.
const PAGE_RECORDS: u32 = 20;
/// Pages after which a writer stops on its own; the kills come well before that.
const MAX_PAGES: u32 = 1000;
const OBJECT: &str = "Account";

fn seed() -> u64 {
    match std::env::var(SEED_VAR) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR}={text:?} is not an unsigned integer")),
        Err(_) => rand::random(),
    }
}

/// Returns the change stamp of record `k` of page `n` in generation `g`. Stamps increase
/// strictly over generations, pages and records, so the last record saved is the cursor.
fn stamp(g: u32, n: u32, k: u32) -> DateTime<Utc> {
    let base = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid time");
    let millis = (i64::from(g) * 100_000 + i64::from(n) * 100 + i64::from(k)) * 10;
    base + chrono::Duration::milliseconds(millis)
}

fn record_id(g: u32, n: u32, k: u32) -> String {
    format!("001G{g:04}N{n:04}K{k:03}")
}

fn record(g: u32, n: u32, k: u32) -> Record {
    Record {
        object: OBJECT.into(),
        id: record_id(g, n, k),
        modstamp: stamp(g, n, k),
        deleted: false,
        fields: BTreeMap::from([
            ("Name".to_string(), Value::Text(format!("g{g} n{n} k{k}"))),
            // Padding, so the log fills and rolls over segments within a few writers.
            ("Description".to_string(), Value::Text("x".repeat(300))),
        ]),
    }
}

fn written_values(g: u32, n: u32) -> WrittenValues {
    WrittenValues {
        score: f64::from(n),
        tier: "A".into(),
        reasons: format!("written g{g} n{n}"),
        sales_ready: None,
        model_version: format!("g{g}n{n}"),
        written_at: stamp(g, n, 0),
    }
}

/// Score rows in one run the writer stores, pushed [`PAGE_RECORDS`] at a time.
const SCORE_RUN_ROWS: u32 = 4 * PAGE_RECORDS;

/// The model version that tags every row of one score run.
fn scores_tag(g: u32, n: u32) -> String {
    format!("scores-{g:04}-{n:04}")
}

fn score_rows(g: u32, n: u32) -> Vec<ScoreRow> {
    (0..SCORE_RUN_ROWS)
        .map(|k| ScoreRow {
            object: OBJECT.into(),
            id: format!("{}S{k:03}", record_id(g, n, 0)),
            name: format!("g{g} n{n} k{k}"),
            owner_id: None,
            probability: 0.5,
            score: 50.0,
            tier: "B".into(),
            reasons: vec!["padding ".repeat(40)],
            hint: None,
            sales_ready: None,
            model_version: scores_tag(g, n),
            scored_at: stamp(g, n, k),
            reasons_key: None,
            inputs_key: None,
            valid_from: None,
            valid_until: None,
        })
        .collect()
}

fn event(g: u32, n: u32) -> ScoreEvent {
    ScoreEvent {
        level: Level::Account,
        object: OBJECT.into(),
        id: format!("event-{g:04}-{n:04}"),
        kind: "sales_ready".into(),
        score: 75.0,
        previous_score: None,
        at: stamp(g, n, 0),
    }
}

/// Prints one acknowledgement line and flushes it, so the parent reads it even after a kill.
fn acknowledge(out: &mut std::io::StdoutLock<'_>, line: &str) {
    writeln!(out, "ACK {line}").expect("stdout");
    out.flush().expect("stdout");
}

/// The writer: a no-op unless the crash test started this binary with [`CHILD_STORE`] set.
/// Every store call below flushes before it returns, so a returned call is acknowledged.
#[test]
fn crash_writer_child() {
    let Ok(path) = std::env::var(CHILD_STORE) else {
        return;
    };
    let g: u32 = std::env::var(CHILD_GENERATION)
        .expect("generation set")
        .parse()
        .expect("generation is a number");
    let store = Store::open(Path::new(&path)).expect("the writer opens the store");
    let mut out = std::io::stdout().lock();
    acknowledge(&mut out, "open");
    for n in 0..MAX_PAGES {
        let mut page: Vec<Record> = Vec::new();
        // Every third page deletes the first record of the page before it.
        if n % 3 == 2 {
            let mut deleted_record = record(g, n - 1, 0);
            deleted_record.deleted = true;
            page.push(deleted_record);
        }
        page.extend((0..PAGE_RECORDS).map(|k| record(g, n, k)));
        let last = page.last().expect("page has records");
        let cursor = Cursor {
            modstamp: last.modstamp,
            id: last.id.clone(),
        };
        store.save_page(OBJECT, &page, &cursor).expect("save_page");
        acknowledge(&mut out, &format!("page {g} {n}"));

        let writes: Vec<ConfirmedWrite> = (1..PAGE_RECORDS)
            .map(|k| ConfirmedWrite {
                id: record_id(g, n, k),
                values: written_values(g, n),
                fields: BTreeMap::from([("LS_Score__c".to_string(), Value::Number(f64::from(n)))]),
            })
            .collect();
        store.record_writes(OBJECT, &writes).expect("record_writes");
        acknowledge(&mut out, &format!("written {g} {n}"));

        // One run in several pushes, each its own write transaction, so kills land between
        // the batches of a run and between its last batch and the pointer switch.
        let rows = score_rows(g, n);
        let mut writer = store.score_writer().expect("score_writer");
        for part in rows.chunks(PAGE_RECORDS as usize) {
            writer.push(part).expect("push");
        }
        writer.commit().expect("commit");
        acknowledge(&mut out, &format!("scores {g} {n}"));

        store.append_events(&[event(g, n)]).expect("append_events");
        acknowledge(&mut out, &format!("event {g} {n}"));
    }
}

/// What the writers acknowledged, over all generations so far.
#[derive(Default)]
struct Acknowledged {
    /// (generation, page) of every saved page.
    pages: BTreeSet<(u32, u32)>,
    written: BTreeSet<(u32, u32)>,
    /// The last score run acknowledged.
    scores: Option<(u32, u32)>,
    events: BTreeSet<(u32, u32)>,
}

impl Acknowledged {
    fn take(&mut self, line: &str) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [_, kind, g, n] = parts[..] else {
            return;
        };
        let key: (u32, u32) = (
            g.parse().expect("generation"),
            n.parse().expect("page number"),
        );
        match kind {
            "page" => {
                self.pages.insert(key);
            }
            "written" => {
                self.written.insert(key);
            }
            "scores" => self.scores = Some(key),
            "event" => {
                self.events.insert(key);
            }
            _ => {}
        }
    }
}

/// Checks the reopened store against everything acknowledged; returns the problems found.
fn check_store(store: &Store, acked: &Acknowledged) -> Vec<String> {
    let mut problems = Vec::new();
    let records = store.records(OBJECT).expect("records read");
    let by_id: BTreeMap<&str, &Record> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    for &(g, n) in &acked.pages {
        for k in 0..PAGE_RECORDS {
            let id = record_id(g, n, k);
            // Record 0 is deleted by page n + 1 when n + 1 is a deleting page.
            let deleted_by_next = k == 0 && (n + 1) % 3 == 2;
            if deleted_by_next && acked.pages.contains(&(g, n + 1)) {
                if by_id.contains_key(id.as_str()) {
                    problems.push(format!(
                        "{id} was deleted by an acknowledged page but is stored"
                    ));
                }
                continue;
            }
            if deleted_by_next {
                continue;
            }
            match by_id.get(id.as_str()) {
                None => problems.push(format!("{id} of acknowledged page g{g} n{n} is missing")),
                Some(stored) if stored.get("Name") != &Value::Text(format!("g{g} n{n} k{k}")) => {
                    problems.push(format!("{id} has the wrong Name: {:?}", stored.get("Name")))
                }
                Some(_) => {}
            }
        }
    }

    // A page and its cursor land in one transaction, so the cursor is the latest stored record.
    let cursor = store.cursor(OBJECT).expect("cursor read");
    let latest = records
        .iter()
        .map(|r| Cursor {
            modstamp: r.modstamp,
            id: r.id.clone(),
        })
        .max();
    if cursor != latest {
        problems.push(format!(
            "the cursor {cursor:?} is not the latest stored record {latest:?}"
        ));
    }
    if let Some(&(g, n)) = acked.pages.last() {
        let acked_cursor = Cursor {
            modstamp: stamp(g, n, PAGE_RECORDS - 1),
            id: record_id(g, n, PAGE_RECORDS - 1),
        };
        if cursor.as_ref().is_none_or(|c| *c < acked_cursor) {
            problems.push(format!(
                "the cursor {cursor:?} is before the acknowledged page g{g} n{n}"
            ));
        }
    }

    let written = store.written().expect("written read");
    for &(g, n) in &acked.written {
        for k in 1..PAGE_RECORDS {
            let id = record_id(g, n, k);
            if written.get(&id) != Some(&written_values(g, n)) {
                problems.push(format!("the acknowledged write of {id} is missing"));
            }
            let score = by_id.get(id.as_str()).map(|r| r.get("LS_Score__c"));
            if score != Some(&Value::Number(f64::from(n))) {
                problems.push(format!(
                    "the stored copy of {id} lacks its acknowledged write: {score:?}"
                ));
            }
        }
    }

    // A score run is staged and switched in by one pointer insert, so the stored scores are
    // all from one run, and that run is the last acknowledged one or a later one.
    let scores = store.scores().expect("scores read");
    let tags: BTreeSet<&str> = scores.iter().map(|s| s.model_version.as_str()).collect();
    if tags.len() > 1 {
        problems.push(format!("the scores mix several calls: {tags:?}"));
    }
    if let Some((g, n)) = acked.scores {
        let acked_tag = scores_tag(g, n);
        match tags.iter().next() {
            Some(tag) if **tag >= *acked_tag.as_str() => {}
            other => problems.push(format!(
                "the scores are {other:?}, older than the acknowledged {acked_tag}"
            )),
        }
        if scores.len() != SCORE_RUN_ROWS as usize {
            problems.push(format!(
                "{} score rows stored, expected {SCORE_RUN_ROWS}",
                scores.len()
            ));
        }
    }
    // The next score writer drops the staging trees of runs a kill interrupted.
    drop(store.score_writer().expect("score writer"));
    let stale = store.stale_score_trees().expect("score trees listed");
    if !stale.is_empty() {
        problems.push(format!("score trees of interrupted runs remain: {stale:?}"));
    }

    let events: BTreeSet<String> = store
        .events()
        .expect("events read")
        .into_iter()
        .map(|e| e.id)
        .collect();
    for &(g, n) in &acked.events {
        if !events.contains(&event(g, n).id) {
            problems.push(format!("the acknowledged event g{g} n{n} is missing"));
        }
    }
    problems
}

/// Starts this test binary as the writer for generation `g`.
fn spawn_writer(store: &Path, g: u32) -> std::process::Child {
    let exe = std::env::current_exe().expect("the test binary's path");
    Command::new(exe)
        .args([
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_STORE, store)
        .env(CHILD_GENERATION, g.to_string())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the writer starts")
}

#[test]
fn store_survives_sigkill_during_writes() {
    let seed = seed();
    println!("crash test seed: {seed} (replay with {SEED_VAR}={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    let started = Instant::now();
    let mut acked = Acknowledged::default();
    let mut killed_mid_write = 0;
    let mut killed_before_open = 0;
    let mut acked_total = 0;
    for g in 0..KILLS as u32 {
        // A quarter of the kills land while the writer is starting or recovering the store.
        let delay = if rng.gen_bool(0.25) {
            rng.gen_range(0..30)
        } else {
            rng.gen_range(30..120)
        };
        let mut child = spawn_writer(&path, g);
        let stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        std::thread::sleep(Duration::from_millis(delay));
        // `Child::kill` sends SIGKILL on Unix.
        let _ = child.kill();
        let status = child.wait().expect("the writer is reaped");
        let lines = reader.join().expect("reader thread");
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
        }
        assert!(
            status.code().is_none() || status.success(),
            "seed {seed}, generation {g}: the writer failed on its own ({status}):\n{stderr}"
        );
        if status.code().is_none() {
            killed_mid_write += 1;
        }
        // libtest prints "test crash_writer_child ... " before the test's own output, on the
        // same line, so an acknowledgement is found anywhere in a line.
        let acks: Vec<&str> = lines
            .iter()
            .filter_map(|line| line.find("ACK ").map(|start| &line[start..]))
            .collect();
        if !acks.contains(&"ACK open") {
            killed_before_open += 1;
        }
        for line in acks {
            acked.take(line);
            acked_total += 1;
        }

        let store = match Store::open(&path) {
            Ok(store) => store,
            Err(err) => panic!(
                "seed {seed}: the store failed to open after kill {} of {KILLS} ({delay} ms after start, {} acknowledged writes so far): {err}",
                g + 1,
                acked_total
            ),
        };
        let problems = check_store(&store, &acked);
        assert!(
            problems.is_empty(),
            "seed {seed}: after kill {} of {KILLS} ({delay} ms after start) acknowledged writes were lost:\n{}",
            g + 1,
            problems.join("\n")
        );
        drop(store);
    }
    println!(
        "{KILLS} writers, {killed_mid_write} killed before finishing ({killed_before_open} while starting or opening the store), {acked_total} acknowledged writes, {} pages stored, {:.1} s",
        acked.pages.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        killed_mid_write >= KILLS / 2,
        "only {killed_mid_write} of {KILLS} writers were killed before they finished; the kill delays are too long"
    );
    assert!(
        !acked.pages.is_empty(),
        "no writer saved a page before it was killed"
    );
}

// ---- Migration from sled ----

/// Environment variable that turns [`migration_child`] into a process that opens (and so
/// migrates) the store it names.
const MIGRATION_CHILD_STORE: &str = "LEADSCORE_MIGRATION_CHILD_STORE";
/// Records in the sled store that the migration kill test migrates.
const MIGRATION_RECORDS: u32 = 20_000;
/// Hard stops of the migrating process before the test lets one finish.
const MIGRATION_KILLS: usize = 12;

/// The migrating process: a no-op unless [`migration_survives_sigkill`] started this binary.
#[test]
fn migration_child() {
    let Ok(path) = std::env::var(MIGRATION_CHILD_STORE) else {
        return;
    };
    Store::open(Path::new(&path)).expect("the child opens the store");
    println!("ACK migrated");
}

/// Writes a sled store of format `leadscore-store-1` the way the sled code laid it out:
/// records under `records/Account`, the cursor under `cursors`, the stamp under `meta`.
fn sled_store(path: &Path) {
    let db = sled::open(path).expect("sled opens");
    let meta = db.open_tree("meta").expect("meta");
    meta.insert("format", "leadscore-store-1").expect("format");
    let records = db.open_tree("records/Account").expect("records");
    for n in 0..MIGRATION_RECORDS / PAGE_RECORDS {
        let mut batch = sled::Batch::default();
        for k in 0..PAGE_RECORDS {
            let record = record(0, n, k);
            let bytes = serde_json::to_vec(&record).expect("json");
            batch.insert(record.id.as_bytes(), bytes);
        }
        records.apply_batch(batch).expect("batch");
    }
    let last = record(0, MIGRATION_RECORDS / PAGE_RECORDS - 1, PAGE_RECORDS - 1);
    let cursor = Cursor {
        modstamp: last.modstamp,
        id: last.id.clone(),
    };
    db.open_tree("cursors")
        .expect("cursors")
        .insert(OBJECT, serde_json::to_vec(&cursor).expect("json"))
        .expect("cursor");
    db.flush().expect("flush");
}

/// Returns the records in a copy of the sled store in `path`, read with sled itself. The
/// copy keeps sled's lock, which its threads release late, off the store under test.
fn sled_record_count(path: &Path, scratch: &Path) -> usize {
    if scratch.exists() {
        std::fs::remove_dir_all(scratch).expect("clear scratch");
    }
    copy_store(path, scratch);
    let db = sled::open(scratch).expect("the sled store still opens");
    let count = db.open_tree("records/Account").expect("records").len();
    drop(db);
    count
}

#[test]
fn migration_survives_sigkill() {
    let seed = seed();
    println!("migration test seed: {seed} (replay with {SEED_VAR}={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    let scratch = dir.path().join("scratch");
    sled_store(&path);

    let exe = std::env::current_exe().expect("the test binary's path");
    let mut killed_mid_copy = 0;
    for kill in 0..MIGRATION_KILLS {
        let mut child = Command::new(&exe)
            .args(["--exact", "migration_child", "--nocapture"])
            .env(MIGRATION_CHILD_STORE, &path)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the child starts");
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..400)));
        let _ = child.kill();
        child.wait().expect("the child is reaped");
        if path.join(DB_FILE).exists() {
            println!("the migration finished before kill {}", kill + 1);
            break;
        }
        killed_mid_copy += usize::from(path.join("leadscore.redb.migrating").exists());
        assert_eq!(
            sled_record_count(&path, &scratch),
            MIGRATION_RECORDS as usize,
            "seed {seed}: after kill {} the sled store lost records",
            kill + 1
        );
    }

    let store = Store::open(&path).expect("the migration finishes");
    assert_eq!(
        store.record_count(OBJECT).expect("count"),
        MIGRATION_RECORDS as usize,
        "seed {seed}: the migrated store lost records"
    );
    let cursor = store.cursor(OBJECT).expect("cursor").expect("a cursor");
    assert_eq!(
        cursor.id,
        record_id(0, MIGRATION_RECORDS / PAGE_RECORDS - 1, PAGE_RECORDS - 1)
    );
    assert!(!path.join("db").exists(), "sled's files were moved aside");
    println!("{killed_mid_copy} kills landed while the copy was under way");
}

// ---- Damaged stores ----

/// Fills a store with pulled pages, written values and scores, and closes it.
fn filled_store(path: &Path) {
    let store = Store::open(path).expect("a new store opens");
    for n in 0..30 {
        let page: Vec<Record> = (0..PAGE_RECORDS).map(|k| record(0, n, k)).collect();
        let last = page.last().expect("records");
        let cursor = Cursor {
            modstamp: last.modstamp,
            id: last.id.clone(),
        };
        store.save_page(OBJECT, &page, &cursor).expect("save_page");
    }
    store.replace_scores(&score_rows(0, 0)).expect("scores");
}

fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("copy dir");
    for entry in std::fs::read_dir(from).expect("read store dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("file type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
        }
    }
}

fn overwrite(file: &Path, offset: usize, len: usize) {
    let mut bytes = std::fs::read(file).expect("read file");
    let end = (offset + len).min(bytes.len());
    for byte in &mut bytes[offset.min(end)..end] {
        *byte = 0x5a;
    }
    std::fs::write(file, bytes).expect("write file");
}

/// A way to damage a store folder: its name, the damage, and whether the open must fail.
type Damage = (&'static str, fn(&Path), bool);

fn damages() -> Vec<Damage> {
    vec![
        (
            "header overwritten",
            |p| overwrite(&p.join(DB_FILE), 0, 4096),
            true,
        ),
        (
            "database removed",
            |p| std::fs::remove_file(p.join(DB_FILE)).expect("remove"),
            true,
        ),
        (
            "database truncated to zero",
            |p| {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(p.join(DB_FILE))
                    .expect("open database");
                file.set_len(0).expect("truncate");
            },
            true,
        ),
        (
            "database overwritten entirely",
            |p| {
                let len = std::fs::metadata(p.join(DB_FILE)).expect("database").len() as usize;
                overwrite(&p.join(DB_FILE), 0, len);
            },
            true,
        ),
        // redb checks page checksums only when it repairs a file after a crash, so damage
        // to pages that the open does not read may go unnoticed until they are read. These
        // must not panic.
        (
            "database overwritten in the middle",
            |p| {
                let len = std::fs::metadata(p.join(DB_FILE)).expect("database").len() as usize;
                overwrite(&p.join(DB_FILE), len / 3, 4096);
            },
            false,
        ),
        (
            "database truncated to half",
            |p| {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(p.join(DB_FILE))
                    .expect("open database");
                let len = file.metadata().expect("metadata").len();
                file.set_len(len / 2).expect("truncate");
            },
            false,
        ),
    ]
}

fn assert_recovery_message(case: &str, message: &str, path: &Path) {
    assert!(
        message.contains(&path.display().to_string()),
        "{case}: the error names no folder: {message}"
    );
    assert!(
        message.contains("move the folder aside"),
        "{case}: the error gives no recovery step: {message}"
    );
    assert!(
        message.contains("leadscore pull"),
        "{case}: the error does not say a pull rebuilds the store: {message}"
    );
    assert!(
        message.contains("written values") && message.contains("write journal"),
        "{case}: the error does not say what a rebuild loses: {message}"
    );
}

#[test]
fn damaged_store_open_gives_recovery() {
    let dir = tempfile::tempdir().expect("temp dir");
    let original = dir.path().join("original");
    filled_store(&original);
    for (case, damage, must_fail) in damages() {
        let path = dir.path().join(case.replace(' ', "-"));
        copy_store(&original, &path);
        damage(&path);
        let outcome = std::panic::catch_unwind(|| {
            Store::open(&path).map(|store| store.record_count(OBJECT).map_err(|e| e.to_string()))
        });
        let result = outcome.unwrap_or_else(|_| panic!("{case}: opening the store panicked"));
        match result {
            Err(err @ StoreError::Damaged { .. }) => {
                assert_recovery_message(case, &err.to_string(), &path)
            }
            Err(other) => panic!("{case}: expected a damaged-store error, got: {other}"),
            Ok(count) => {
                assert!(!must_fail, "{case}: the store opened ({count:?} records)");
                println!(
                    "{case}: opened with {count:?} of {} records",
                    30 * PAGE_RECORDS
                );
            }
        }
    }
}

#[test]
fn store_path_that_is_a_file_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    std::fs::write(&path, b"a file").expect("write");
    let err = Store::open(&path).err().expect("a file is not a store");
    let message = err.to_string();
    assert!(
        matches!(err, StoreError::NotADirectory { .. }),
        "unexpected error: {message}"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("not a directory"), "{message}");
}

#[test]
fn unreadable_store_folder_reported() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    filled_store(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    if std::fs::read_dir(&path).is_ok() {
        // NOTE: root (or CAP_DAC_OVERRIDE) reads the folder anyway, so this case is only
        // checked when the tests run as an ordinary user.
        println!("skipped: this user can read a folder with mode 000");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        return;
    }
    let result = Store::open(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let message = result.err().expect("an unreadable store fails").to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("read and write"), "{message}");
}

/// Runs `leadscore pull -c CONFIG` off the runtime's worker threads, so the in-process
/// sandbox keeps serving while the child talks to it.
async fn run_pull(env: &Env) -> std::process::Output {
    let options = env.sandbox.options();
    let config = env.config_path.clone();
    let secrets = [
        ("LEADSCORE_SF_CLIENT_SECRET", options.client_secret.clone()),
        ("LEADSCORE_SF_REFRESH_TOKEN", options.refresh_token.clone()),
    ];
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_leadscore"))
            .arg("pull")
            .arg("-c")
            .arg(config)
            .envs(secrets)
            .env_remove("RUST_LOG")
            .output()
            .expect("the leadscore binary runs")
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_store_pull_fails_clearly() {
    let env = Env::start(SandboxOptions::default()).await;
    let store_path: PathBuf = env.config.store_path.clone();
    let first = run_pull(&env).await;
    assert!(
        first.status.success(),
        "the first pull failed: {}",
        String::from_utf8_lossy(&first.stderr)
    );

    let file = store_path.join(DB_FILE);
    let len = std::fs::metadata(&file).expect("database").len() as usize;
    overwrite(&file, 0, len);
    let damaged = run_pull(&env).await;
    let stderr = String::from_utf8_lossy(&damaged.stderr);
    assert_eq!(damaged.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_recovery_message("pull on a damaged store", &stderr, &store_path);

    // The recovery step works: with the folder moved aside, a full pull rebuilds the store.
    let aside = store_path.with_extension("damaged");
    std::fs::rename(&store_path, &aside).expect("move the store aside");
    let rebuilt = run_pull(&env).await;
    assert!(
        rebuilt.status.success(),
        "the pull after recovery failed: {}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    let store = Store::open(&store_path).expect("the rebuilt store opens");
    assert_eq!(
        store.record_count("Account").expect("count"),
        env.org.records["Account"].len()
    );

    let file_store = run_pull_with_store_file(&env, &store_path).await;
    assert_eq!(file_store.0, Some(1), "stderr: {}", file_store.1);
    assert!(file_store.1.contains("not a directory"), "{}", file_store.1);
}

/// Replaces the store folder with a file and runs a pull; returns the exit code and stderr.
async fn run_pull_with_store_file(env: &Env, store_path: &Path) -> (Option<i32>, String) {
    std::fs::remove_dir_all(store_path).expect("remove store");
    std::fs::write(store_path, b"a file where the store folder should be").expect("write");
    let output = run_pull(env).await;
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
