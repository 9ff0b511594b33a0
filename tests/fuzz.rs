//! Fuzz tests of the parsers and decoders that read outside input: the TOML configuration,
//! the SOQL subset of the Salesforce sandbox, the Bulk API 2.0 CSV decoder, and the
//! Salesforce and HubSpot response decoders. Every target must turn any input into a value or
//! an error with a message, never a panic or a hang.
//!
//! Inputs come from a seeded mutator built on `rand`: structure-aware edits of valid inputs
//! (the shipped example configs, generated queries, CSV written from random rows, responses
//! of the sandboxes) followed by byte-level edits. `LEADSCORE_FUZZ_CASES` sets the cases per
//! target (default: a few seconds' worth in a debug build) and `LEADSCORE_FUZZ_SEED` replays a
//! run. A failing case prints its seed and input. FUZZING.md gives, for each target, the
//! case count of a run of a few minutes and the rates measured. For example:
//!
//! ```text
//! LEADSCORE_FUZZ_CASES=250000 cargo test --release --test fuzz config -- --nocapture
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadscore::config::{Config, ConnectorSecrets, Secrets};
use leadscore::demo::{
    hubspot_sandbox_config, sandbox_config, EXAMPLE_CONFIG, HUBSPOT_EXAMPLE_CONFIG,
};
use leadscore::run::{AnyConnector, Crm, FieldMap};
use leadscore_connector::{Connector, PullSpec, RecordUpdate, Value};
use leadscore_demo_org::{DemoOptions, DemoOrg};
use leadscore_hubspot::{HubSpotAuth, HubSpotConfig, HubSpotConnector};
use leadscore_salesforce::fuzzing::decode_csv_chunks;
use leadscore_sandbox::{HubSpotOptions, HubSpotSandbox, Sandbox, SandboxOptions};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use serde_json::Value as Json;

const CASES_VAR: &str = "LEADSCORE_FUZZ_CASES";
const SEED_VAR: &str = "LEADSCORE_FUZZ_SEED";

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not an unsigned integer")),
    )
}

/// Cases for one target: `LEADSCORE_FUZZ_CASES`, or `default`, which keeps a debug
/// `cargo test` within a few seconds per target.
fn case_count(default: u64) -> u64 {
    env_number(CASES_VAR).unwrap_or(default)
}

/// Returns the run's base seed, `LEADSCORE_FUZZ_SEED` or a fresh one, and prints it so a
/// failure can be replayed.
fn base_seed(target: &str) -> u64 {
    let seed = env_number(SEED_VAR).unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("fuzz {target}: {SEED_VAR}={seed}");
    seed
}

/// Seed of one case, so a single case can be replayed from the base seed and its index.
fn case_seed(base: u64, case: u64) -> u64 {
    base ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn report_rate(target: &str, cases: u64, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {target}: {cases} cases in {seconds:.1} s ({:.0} cases/s)",
        cases as f64 / seconds.max(1e-9)
    );
}

/// Runs `case` with its input and, if it panics, fails the test naming the seed and input.
fn run_case<I: std::fmt::Debug>(target: &str, seed: u64, input: &I, case: impl FnOnce(&I)) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(input)));
    if outcome.is_err() {
        panic!("fuzz {target}: case seed {seed} panicked on input {input:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Generic mutations

/// Text that has broken parsers before: odd Unicode, huge and negative numbers, escapes.
const ODD_TEXT: &[&str] = &[
    "",
    " ",
    "\u{0}",
    "\u{feff}",
    "\u{200b}",
    "\u{202e}",
    "e\u{301}",
    "\u{1F3E5}",
    "\u{10FFFF}",
    "\u{fffd}",
    "\\",
    "\\u0000",
    "\"",
    "'",
    "\r\n",
    "\n",
    "\r",
    "\t",
    "99999999999999999999999999",
    "-9223372036854775808",
    "18446744073709551616",
    "1e309",
    "-0",
    "nan",
    "inf",
    "0x10",
    "1_000",
    "2024-02-30",
    "2024-05-01T25:61:61Z",
    "1979-05-27T07:32:00-08:00",
    "9999-12-31T23:59:59.999999999+23:59",
];

/// Applies one to `count` byte-level edits: bit flips, inserted or deleted runs, duplicated
/// runs, a token from `dictionary`, or truncation.
fn mutate_bytes(rng: &mut StdRng, bytes: &mut Vec<u8>, dictionary: &[&str], count: usize) {
    for _ in 0..rng.gen_range(1..=count) {
        let len = bytes.len();
        let at = if len == 0 { 0 } else { rng.gen_range(0..=len) };
        match rng.gen_range(0..8) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                bytes[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => bytes.insert(at, rng.gen()),
            2 if len > 0 => {
                let start = rng.gen_range(0..len);
                let end = (start + rng.gen_range(1..=16)).min(len);
                bytes.drain(start..end);
            }
            3 if len > 0 => {
                let start = rng.gen_range(0..len);
                let end = (start + rng.gen_range(1..=64)).min(len);
                let copy = bytes[start..end].to_vec();
                bytes.splice(at..at, copy);
            }
            4 | 5 => {
                let pool = if rng.gen_bool(0.5) && !dictionary.is_empty() {
                    dictionary
                } else {
                    ODD_TEXT
                };
                let token = pool.choose(rng).expect("non-empty pool").as_bytes();
                bytes.splice(at..at, token.iter().copied());
            }
            6 if len > 0 => bytes.truncate(rng.gen_range(0..len)),
            _ => {
                let special = *[
                    b'"', b',', b'\n', b'\r', b'\\', b'[', b'{', b'=', b'\'', 0xff,
                ]
                .choose(rng)
                .expect("non-empty");
                bytes.insert(at, special);
            }
        }
    }
}

fn mutate_text(rng: &mut StdRng, text: &str, dictionary: &[&str], count: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    mutate_bytes(rng, &mut bytes, dictionary, count);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Splits `bytes` at random points into chunks of 0 to `max` bytes.
fn random_chunks<'a>(rng: &mut StdRng, bytes: &'a [u8], max: usize) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let size = rng.gen_range(0..=max.min(rest.len()));
        let (head, tail) = rest.split_at(size);
        chunks.push(head);
        rest = tail;
    }
    chunks
}

// ---------------------------------------------------------------------------------------------
// Configuration parser

/// Returns the configs `leadscore init` writes, for both CRMs, with and without `--sandbox`.
fn config_seeds() -> Vec<String> {
    vec![
        EXAMPLE_CONFIG.to_string(),
        HUBSPOT_EXAMPLE_CONFIG.to_string(),
        sandbox_config("http://127.0.0.1:8787", "leadscore-data"),
        hubspot_sandbox_config("http://127.0.0.1:8788", "leadscore-data"),
    ]
}

const TOML_TOKENS: &[&str] = &[
    "[connector]",
    "[[features.account]]",
    "[model]",
    "[tiers]",
    "kind = \"hubspot\"",
    "a.b.c = 1",
    " = ",
    "[[",
    "]]",
    "{",
    "}",
    "\"\"\"",
    "'''",
    "true",
    "[]",
    "{}",
    "#",
];

/// Returns a random TOML value of any type, nested at most `depth` levels.
fn random_toml(rng: &mut StdRng, depth: usize) -> toml::Value {
    match rng.gen_range(0..if depth == 0 { 6 } else { 8 }) {
        0 => toml::Value::String((*ODD_TEXT.choose(rng).expect("non-empty")).to_string()),
        1 => toml::Value::Integer(
            *[0, -1, 1, i64::MAX, i64::MIN, 86_400, 1 << 53]
                .choose(rng)
                .expect("non-empty"),
        ),
        2 => toml::Value::Float(
            *[
                0.0,
                -0.0,
                0.5,
                1.5,
                f64::MAX,
                f64::MIN_POSITIVE,
                f64::INFINITY,
                f64::NAN,
            ]
            .choose(rng)
            .expect("non-empty"),
        ),
        3 => toml::Value::Boolean(rng.gen()),
        4 => toml::Value::Datetime(
            "1979-05-27T07:32:00Z"
                .parse()
                .expect("a valid TOML datetime"),
        ),
        5 => toml::Value::String("x".repeat(rng.gen_range(0..5000))),
        6 => toml::Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_toml(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut table = toml::Table::new();
            for _ in 0..rng.gen_range(0..4) {
                let key = (*ODD_TEXT.choose(rng).expect("non-empty")).to_string();
                table.insert(key, random_toml(rng, depth - 1));
            }
            toml::Value::Table(table)
        }
    }
}

/// Wraps `value` in `depth` arrays or inline tables.
fn nest(rng: &mut StdRng, mut value: toml::Value, depth: usize) -> toml::Value {
    for _ in 0..depth {
        value = if rng.gen_bool(0.5) {
            toml::Value::Array(vec![value])
        } else {
            let mut table = toml::Table::new();
            table.insert("k".to_string(), value);
            toml::Value::Table(table)
        };
    }
    value
}

/// Collects the key path of every key in `table`, through tables and arrays of tables.
fn toml_keys(table: &toml::Table, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (key, value) in table {
        path.push(key.clone());
        out.push(path.clone());
        match value {
            toml::Value::Table(inner) => toml_keys(inner, path, out),
            toml::Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    if let toml::Value::Table(inner) = item {
                        path.push(index.to_string());
                        toml_keys(inner, path, out);
                        path.pop();
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
}

/// Returns the table that contains the last key of `path`, walking arrays by index.
fn parent_table<'t>(table: &'t mut toml::Table, path: &[String]) -> Option<&'t mut toml::Table> {
    let (_, parents) = path.split_last()?;
    let mut current = table;
    let mut steps = parents.iter();
    while let Some(step) = steps.next() {
        current = match current.get_mut(step)? {
            toml::Value::Table(inner) => inner,
            toml::Value::Array(items) => {
                let index: usize = steps.next()?.parse().ok()?;
                match items.get_mut(index)? {
                    toml::Value::Table(inner) => inner,
                    _ => return None,
                }
            }
            _ => return None,
        };
    }
    Some(current)
}

/// Edits the parsed seed: deletes, retypes, renames, nests or duplicates keys, then renders
/// it back to TOML.
fn mutate_config_tree(rng: &mut StdRng, seed: &str) -> String {
    let mut table: toml::Table = seed.parse().expect("the example configs are valid TOML");
    for _ in 0..rng.gen_range(1..=4) {
        let mut keys = Vec::new();
        toml_keys(&table, &mut Vec::new(), &mut keys);
        let Some(path) = keys.choose(rng).cloned() else {
            break;
        };
        let Some(parent) = parent_table(&mut table, &path) else {
            continue;
        };
        let key = path.last().expect("a key path is never empty").clone();
        match rng.gen_range(0..6) {
            0 => {
                parent.remove(&key);
            }
            1 => {
                let value = random_toml(rng, 3);
                parent.insert(key, value);
            }
            2 => {
                let inner = random_toml(rng, 0);
                // Deeper values overflow the stack of `toml::to_string` itself; `config_input`
                // covers deeper nesting as text.
                let depth = *[2, 16, 200].choose(rng).expect("non-empty");
                let value = nest(rng, inner, depth);
                parent.insert(key, value);
            }
            3 => {
                if let Some(value) = parent.remove(&key) {
                    let renamed = format!("{key}{}", ODD_TEXT.choose(rng).expect("non-empty"));
                    parent.insert(renamed, value);
                }
            }
            4 => {
                let value = random_toml(rng, 2);
                parent.insert(
                    (*ODD_TEXT.choose(rng).expect("non-empty")).to_string(),
                    value,
                );
            }
            _ => {
                if let Some(toml::Value::Array(items)) = parent.get_mut(&key) {
                    if let Some(item) = items.choose(rng).cloned() {
                        items.push(item);
                    }
                }
            }
        }
    }
    // A value the serializer cannot render leaves the seed unchanged for the text edits.
    toml::to_string(&table).unwrap_or_else(|_| seed.to_string())
}

/// Edits the seed as lines: deleted, duplicated (a duplicate key or table) or swapped.
fn mutate_config_lines(rng: &mut StdRng, seed: &str) -> String {
    let mut lines: Vec<&str> = seed.lines().collect();
    for _ in 0..rng.gen_range(1..=4) {
        if lines.is_empty() {
            break;
        }
        let i = rng.gen_range(0..lines.len());
        match rng.gen_range(0..3) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let line = lines[i];
                let at = rng.gen_range(0..=lines.len());
                lines.insert(at, line);
            }
            _ => {
                let j = rng.gen_range(0..lines.len());
                lines.swap(i, j);
            }
        }
    }
    lines.join("\n")
}

/// Builds one configuration input: a structure-aware edit of a seed, raw text edits, deep
/// nesting or random bytes.
fn config_input(rng: &mut StdRng, seeds: &[String]) -> String {
    let seed = seeds.choose(rng).expect("seeds");
    let text = match rng.gen_range(0..10) {
        0..=3 => mutate_config_tree(rng, seed),
        4 | 5 => mutate_config_lines(rng, seed),
        6 => {
            let depth = rng.gen_range(1..20_000);
            let open = if rng.gen_bool(0.5) { "[" } else { "{a=" };
            let close = if open == "[" { "]" } else { "}" };
            format!(
                "{}\nx = {}1{}",
                seed,
                open.repeat(depth),
                close.repeat(depth)
            )
        }
        7 => {
            let length = rng.gen_range(0..512);
            let bytes: Vec<u8> = (0..length).map(|_| rng.gen()).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => seed.clone(),
    };
    if rng.gen_bool(0.4) {
        mutate_text(rng, &text, TOML_TOKENS, 8)
    } else {
        text
    }
}

/// How far a configuration input got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConfigOutcome {
    Valid,
    InvalidToml,
    InvalidSettings,
}

/// Parses one input and checks that a rejection lists issues with messages.
fn check_config(text: &str) -> ConfigOutcome {
    let base = std::env::temp_dir();
    let error = match Config::parse(text, Path::new("fuzz.toml"), &base) {
        Ok(_) => return ConfigOutcome::Valid,
        Err(error) => error,
    };
    assert!(!error.issues.is_empty(), "a ConfigError without issues");
    for issue in &error.issues {
        assert!(!issue.message.trim().is_empty(), "an issue without message");
    }
    assert!(error.to_string().contains("fuzz.toml"));
    if error.issues[0].message.starts_with("invalid TOML") {
        ConfigOutcome::InvalidToml
    } else {
        ConfigOutcome::InvalidSettings
    }
}

#[test]
fn config_parser_survives_mutations() {
    let seeds = config_seeds();
    for seed in &seeds {
        Config::parse(seed, Path::new("seed.toml"), &std::env::temp_dir())
            .unwrap_or_else(|error| panic!("an unmutated seed must parse: {error}"));
    }
    let base = base_seed("config");
    let cases = case_count(300);
    let started = Instant::now();
    let mut counts = [0u64; 3];
    for case in 0..cases {
        let seed = case_seed(base, case);
        let mut rng = StdRng::seed_from_u64(seed);
        let text = config_input(&mut rng, &seeds);
        run_case("config", seed, &text, |text| {
            counts[check_config(text) as usize] += 1;
        });
    }
    report_rate("config", cases, started);
    eprintln!(
        "fuzz config: {} valid, {} invalid TOML, {} invalid settings",
        counts[0], counts[1], counts[2]
    );
}

// ---------------------------------------------------------------------------------------------
// Bulk API 2.0 CSV decoder

const CSV_TOKENS: &[&str] = &[
    "\"",
    "\"\"",
    ",",
    "\r\n",
    "\n",
    "\r",
    "\u{feff}",
    "\"a\"\"b\"",
];

/// A random field value, with the characters CSV must escape.
fn csv_value(rng: &mut StdRng) -> Option<String> {
    if rng.gen_bool(0.15) {
        return None;
    }
    let length = rng.gen_range(1..12);
    let mut text = String::new();
    for _ in 0..length {
        let piece = match rng.gen_range(0..6) {
            0 => *["\"", ",", "\n", "\r\n", "\r", " "]
                .choose(rng)
                .expect("non-empty"),
            1 => *ODD_TEXT.choose(rng).expect("non-empty"),
            _ => *["a", "Z", "0", "St. Mary's", "caf\u{e9}"]
                .choose(rng)
                .expect("non-empty"),
        };
        text.push_str(piece);
    }
    // An empty string reads back as a null, as in Bulk results.
    (!text.is_empty()).then_some(text)
}

/// Writes rows as Bulk API 2.0 does: quoted values (or bare ones where nothing needs
/// quoting), empty for null, with LF or CRLF, optionally after a byte order mark and before
/// trailing blank lines.
fn write_csv(rng: &mut StdRng, rows: &[Vec<Option<String>>]) -> Vec<u8> {
    let ending = if rng.gen_bool(0.5) { "\n" } else { "\r\n" };
    let mut out = String::new();
    if rng.gen_bool(0.1) {
        out.push('\u{feff}');
    }
    for row in rows {
        for (index, value) in row.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            match value {
                // A lone null must be quoted, because an empty line is a blank line.
                None if row.len() == 1 || rng.gen_bool(0.5) => out.push_str("\"\""),
                None => {}
                Some(text) => {
                    let bare = !text.contains(['"', ',', '\n', '\r']) && rng.gen_bool(0.3);
                    // A body that starts with U+FEFF loses it as a byte order mark.
                    let read_as_bom = out.is_empty() && text.starts_with('\u{feff}');
                    if bare && !read_as_bom {
                        out.push_str(text);
                    } else {
                        out.push('"');
                        out.push_str(&text.replace('"', "\"\""));
                        out.push('"');
                    }
                }
            }
        }
        out.push_str(ending);
    }
    for _ in 0..rng.gen_range(0..3) {
        if rng.gen_bool(0.3) {
            out.push_str(ending);
        }
    }
    if !rows.is_empty()
        && rng.gen_bool(0.2)
        && out.ends_with(ending)
        && !out.ends_with(&ending.repeat(2))
    {
        // The last row may end without a line break.
        out.truncate(out.len() - ending.len());
    }
    out.into_bytes()
}

#[derive(Debug)]
struct CsvCase {
    rows: Vec<Vec<Option<String>>>,
    body: Vec<u8>,
    chunks: Vec<usize>,
}

fn chunk_lengths(chunks: &[&[u8]]) -> Vec<usize> {
    chunks.iter().map(|c| c.len()).collect()
}

fn split_by_lengths<'a>(body: &'a [u8], lengths: &[usize]) -> Vec<&'a [u8]> {
    let mut rest = body;
    let mut chunks = Vec::new();
    for &length in lengths {
        let (head, tail) = rest.split_at(length);
        chunks.push(head);
        rest = tail;
    }
    chunks
}

#[test]
fn csv_decoder_round_trips_any_chunking() {
    let base = base_seed("csv-round-trip");
    let cases = case_count(3000);
    let started = Instant::now();
    for case in 0..cases {
        let seed = case_seed(base, case);
        let mut rng = StdRng::seed_from_u64(seed);
        let columns = rng.gen_range(1..6);
        let rows: Vec<Vec<Option<String>>> = (0..rng.gen_range(0..6))
            .map(|_| (0..columns).map(|_| csv_value(&mut rng)).collect())
            .collect();
        let body = write_csv(&mut rng, &rows);
        let max = *[1, 3, 64, 16 * 1024].choose(&mut rng).expect("non-empty");
        let chunks = chunk_lengths(&random_chunks(&mut rng, &body, max));
        let input = CsvCase { rows, body, chunks };
        run_case("csv-round-trip", seed, &input, |input| {
            let decoded = decode_csv_chunks(split_by_lengths(&input.body, &input.chunks))
                .unwrap_or_else(|error| panic!("valid CSV failed to decode: {error}"));
            assert_eq!(decoded, input.rows, "rows differ after the round trip");
        });
    }
    report_rate("csv-round-trip", cases, started);
}

#[test]
fn csv_decoder_same_result_for_any_chunking() {
    let base = base_seed("csv-bytes");
    let cases = case_count(3000);
    let started = Instant::now();
    for case in 0..cases {
        let seed = case_seed(base, case);
        let mut rng = StdRng::seed_from_u64(seed);
        let rows: Vec<Vec<Option<String>>> = (0..rng.gen_range(0..4))
            .map(|_| (0..3).map(|_| csv_value(&mut rng)).collect())
            .collect();
        let mut body = write_csv(&mut rng, &rows);
        if rng.gen_bool(0.1) {
            body = (0..rng.gen_range(0..256)).map(|_| rng.gen()).collect();
        }
        mutate_bytes(&mut rng, &mut body, CSV_TOKENS, 6);
        let max = *[1, 2, 7, 4096].choose(&mut rng).expect("non-empty");
        let chunks = chunk_lengths(&random_chunks(&mut rng, &body, max));
        let input = CsvCase {
            rows: Vec::new(),
            body,
            chunks,
        };
        run_case("csv-bytes", seed, &input, |input| {
            let whole = decode_csv_chunks([input.body.as_slice()]);
            let chunked = decode_csv_chunks(split_by_lengths(&input.body, &input.chunks));
            assert_eq!(whole, chunked, "chunking changed the result");
            if let Err(message) = whole {
                assert!(message.starts_with("CSV row "), "{message}");
            }
        });
    }
    report_rate("csv-bytes", cases, started);
}

// ---------------------------------------------------------------------------------------------
// SOQL parser of the Salesforce sandbox, over HTTP

const SOQL_TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "ORDER BY",
    "LIMIT",
    "ASC",
    "DESC",
    "NULLS LAST",
    "NULLS FIRST",
    "(",
    ")",
    ",",
    "=",
    "!=",
    "<>",
    "<=",
    ">=",
    "<",
    ">",
    "'",
    "\\'",
    "\\",
    "null",
    "TRUE",
    "2024-05-01",
    "2024-05-01T00:00:00Z",
    "2024-05-01T00:00:00+02:00",
    "2024-05-01T00:00:00.123456789-05:00",
    "+",
    "-",
    "1.5",
    ".",
    "..",
    "Owner.Name",
    "LIKE",
    "GROUP BY",
    "COUNT()",
    ":bind",
    "(SELECT Id FROM Contact)",
];

const SOQL_OBJECTS: &[(&str, &[&str])] = &[
    (
        "Account",
        &[
            "Id",
            "Name",
            "AnnualRevenue",
            "BillingState",
            "BillingAddress",
            "CreatedDate",
            "SystemModstamp",
            "IsDeleted",
            "OwnerId",
            "Owner.Name",
            "Parent.Name",
            "Parent.Parent.Name",
            "NumberOfEmployees",
        ],
    ),
    (
        "Contact",
        &[
            "Id",
            "Email",
            "AccountId",
            "Account.Name",
            "Account.Owner.Email",
            "LastName",
        ],
    ),
    (
        "Opportunity",
        &[
            "Id",
            "Amount",
            "CloseDate",
            "IsWon",
            "StageName",
            "Account.BillingState",
        ],
    ),
    (
        "Task",
        &[
            "Id",
            "WhoId",
            "Who.Name",
            "What.Name",
            "ActivityDate",
            "Subject",
        ],
    ),
];

fn soql_literal(rng: &mut StdRng) -> String {
    match rng.gen_range(0..8) {
        0 => "null".to_string(),
        1 => "true".to_string(),
        2 => format!("{}", rng.gen_range(-1e6..1e6)),
        3 => format!(
            "'{}'",
            ODD_TEXT
                .choose(rng)
                .expect("non-empty")
                .replace('\'', "\\'")
        ),
        4 => "2024-05-01".to_string(),
        5 => "2024-05-01T12:00:00.250+02:00".to_string(),
        6 => format!("{}", rng.gen::<i64>()),
        _ => "'St. Mary\\'s'".to_string(),
    }
}

fn soql_condition(rng: &mut StdRng, fields: &[&str], depth: usize) -> String {
    if depth == 0 || rng.gen_bool(0.4) {
        let field = fields.choose(rng).expect("fields");
        return match rng.gen_range(0..3) {
            0 => format!(
                "{field} {} {}",
                ["=", "!=", "<", "<=", ">", ">=", "<>"]
                    .choose(rng)
                    .expect("non-empty"),
                soql_literal(rng)
            ),
            1 => {
                let values: Vec<String> = (0..rng.gen_range(1..4))
                    .map(|_| soql_literal(rng))
                    .collect();
                let not = if rng.gen_bool(0.3) { "NOT " } else { "" };
                format!("{field} {not}IN ({})", values.join(", "))
            }
            _ => format!(
                "NOT {}",
                soql_condition(rng, fields, depth.saturating_sub(1))
            ),
        };
    }
    let joiner = if rng.gen_bool(0.5) { " AND " } else { " OR " };
    let parts: Vec<String> = (0..rng.gen_range(2..4))
        .map(|_| format!("({})", soql_condition(rng, fields, depth - 1)))
        .collect();
    parts.join(joiner)
}

/// Builds a query from the supported grammar, sometimes with pathological nesting, then
/// edits it.
fn soql_input(rng: &mut StdRng) -> String {
    let (object, fields) = SOQL_OBJECTS.choose(rng).expect("objects");
    let count = rng.gen_range(1..5);
    let selected: Vec<&str> = fields.choose_multiple(rng, count).copied().collect();
    let mut query = format!("SELECT {} FROM {object}", selected.join(", "));
    if rng.gen_bool(0.7) {
        query.push_str(" WHERE ");
        if rng.gen_bool(0.05) {
            let depth = rng.gen_range(1..5000);
            let (open, close) = if rng.gen_bool(0.5) {
                ("(", ")")
            } else {
                ("NOT ", "")
            };
            query.push_str(&open.repeat(depth));
            query.push_str("Id = null");
            query.push_str(&close.repeat(depth));
        } else {
            query.push_str(&soql_condition(rng, fields, 3));
        }
    }
    if rng.gen_bool(0.5) {
        let field = fields.choose(rng).expect("fields");
        query.push_str(&format!(" ORDER BY {field} DESC NULLS LAST, Id"));
    }
    if rng.gen_bool(0.3) {
        query.push_str(&format!(
            " LIMIT {}",
            rng.gen::<u64>() >> rng.gen_range(0..64)
        ));
    }
    if rng.gen_bool(0.7) {
        query = mutate_text(rng, &query, SOQL_TOKENS, 5);
    }
    query
}

fn small_org() -> DemoOrg {
    leadscore_demo_org::generate(&DemoOptions {
        max_hospitals: Some(6),
        ..DemoOptions::default()
    })
    .expect("demo org generates")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn salesforce_token(client: &reqwest::Client, url: &str) -> String {
    let options = SandboxOptions::default();
    let response: Json = client
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
    response["access_token"]
        .as_str()
        .expect("an access token")
        .to_string()
}

/// Sends one query and checks that the sandbox returned records or a Salesforce error.
async fn check_soql(
    client: &reqwest::Client,
    endpoint: &str,
    token: &str,
    query: &str,
) -> Result<u16, String> {
    let response = tokio::time::timeout(
        Duration::from_secs(20),
        client
            .get(endpoint)
            .bearer_auth(token)
            .query(&[("q", query)])
            .send(),
    )
    .await
    .map_err(|_| "the sandbox did not answer within 20 s".to_string())?
    .map_err(|error| format!("the request failed, so the handler may have panicked: {error}"))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|error| format!("the body was cut off: {error}"))?;
    let json: Json = serde_json::from_slice(&body)
        .map_err(|error| format!("status {status} with a body that is not JSON: {error}"))?;
    match status {
        200 => {
            if !json["records"].is_array() {
                return Err(format!("status 200 without records: {json}"));
            }
        }
        400 => {
            let message = json[0]["message"].as_str().unwrap_or("");
            let code = json[0]["errorCode"].as_str().unwrap_or("");
            if message.trim().is_empty() || code.is_empty() {
                return Err(format!(
                    "status 400 without an error code and message: {json}"
                ));
            }
        }
        other => return Err(format!("status {other}: {json}")),
    }
    Ok(status)
}

#[test]
fn sandbox_soql_survives_mutations() {
    let runtime = runtime();
    runtime.block_on(async {
        // Every case is one request, so a long run passes the default daily request limit.
        let options = SandboxOptions {
            daily_request_limit: u64::MAX,
            ..SandboxOptions::default()
        };
        let sandbox = Sandbox::new(small_org().records, options)
            .expect("sandbox accepts the demo org")
            .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("sandbox listens on loopback");
        let client = reqwest::Client::new();
        let token = salesforce_token(&client, &sandbox.url()).await;
        let endpoint = format!("{}/services/data/v59.0/query", sandbox.url());

        // The checks must be able to tell a good query from a bad one.
        let good = check_soql(&client, &endpoint, &token, "SELECT Id, Name FROM Account").await;
        assert_eq!(good, Ok(200));
        let bad = check_soql(&client, &endpoint, &token, "SELECT FROM").await;
        assert_eq!(bad, Ok(400));

        let base = base_seed("soql");
        let cases = case_count(1500);
        let started = Instant::now();
        let mut accepted = 0u64;
        for case in 0..cases {
            let seed = case_seed(base, case);
            let mut rng = StdRng::seed_from_u64(seed);
            let query = soql_input(&mut rng);
            match check_soql(&client, &endpoint, &token, &query).await {
                Ok(200) => accepted += 1,
                Ok(_) => {}
                Err(problem) => panic!("fuzz soql: case seed {seed}: {problem}\nquery: {query:?}"),
            }
        }
        report_rate("soql", cases, started);
        eprintln!("fuzz soql: {accepted} of {cases} queries returned records");
        sandbox.shutdown().await;
    });
}

// ---------------------------------------------------------------------------------------------
// CRM payload decoders, through a proxy that edits the sandboxes' responses

/// Scalars and shapes that JSON decoders mishandle.
fn odd_json(rng: &mut StdRng) -> Json {
    match rng.gen_range(0..10) {
        0 => Json::Null,
        1 => Json::Bool(rng.gen()),
        2 => serde_json::json!(*[0i64, -1, i64::MAX, i64::MIN]
            .choose(rng)
            .expect("non-empty")),
        3 => serde_json::json!(*[0.5f64, -0.0, 1e300, f64::MAX]
            .choose(rng)
            .expect("non-empty")),
        4 => serde_json::json!(u64::MAX),
        5 => Json::String((*ODD_TEXT.choose(rng).expect("non-empty")).to_string()),
        6 => Json::Array(Vec::new()),
        7 => Json::Object(serde_json::Map::new()),
        8 => Json::String("x".repeat(rng.gen_range(0..100_000))),
        _ => {
            let mut value = Json::Null;
            for _ in 0..rng.gen_range(1..200) {
                value = Json::Array(vec![value]);
            }
            value
        }
    }
}

/// Counts the nodes of `value`, so one can be picked uniformly.
fn node_count(value: &Json) -> usize {
    1 + match value {
        Json::Array(items) => items.iter().map(node_count).sum(),
        Json::Object(map) => map.values().map(node_count).sum(),
        _ => 0,
    }
}

fn nth_node(value: &mut Json, mut n: usize) -> Option<&mut Json> {
    fn walk<'v>(value: &'v mut Json, n: &mut usize) -> Option<&'v mut Json> {
        if *n == 0 {
            return Some(value);
        }
        *n -= 1;
        match value {
            Json::Array(items) => items.iter_mut().find_map(|item| walk(item, n)),
            Json::Object(map) => map.values_mut().find_map(|item| walk(item, n)),
            _ => None,
        }
    }
    walk(value, &mut n)
}

/// Edits one random node: deletes a key or element, retypes or replaces the value,
/// duplicates an element, or swaps string and number forms.
fn mutate_json(rng: &mut StdRng, value: &mut Json) {
    let n = rng.gen_range(0..node_count(value));
    let Some(node) = nth_node(value, n) else {
        return;
    };
    match node {
        Json::Object(map) if !map.is_empty() && rng.gen_bool(0.5) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = keys.choose(rng).expect("non-empty map");
            if rng.gen_bool(0.5) {
                map.remove(key);
            } else {
                map.insert(key.clone(), odd_json(rng));
            }
        }
        Json::Array(items) if !items.is_empty() && rng.gen_bool(0.5) => {
            let i = rng.gen_range(0..items.len());
            if rng.gen_bool(0.5) {
                items.remove(i);
            } else {
                let copy = items[i].clone();
                items.insert(i, copy);
            }
        }
        Json::String(text) if rng.gen_bool(0.5) => {
            *text = mutate_text(rng, text, &[], 3);
        }
        Json::Number(number) if rng.gen_bool(0.5) => {
            *node = Json::String(number.to_string());
        }
        _ => *node = odd_json(rng),
    }
}

/// Edits a response body: JSON structurally, anything else (Bulk CSV) byte by byte, and
/// sometimes both, or a truncation.
fn mutate_body(rng: &mut StdRng, body: &[u8]) -> Vec<u8> {
    let mut bytes = match serde_json::from_slice::<Json>(body) {
        Ok(mut json) if rng.gen_bool(0.85) => {
            for _ in 0..rng.gen_range(1..=3) {
                mutate_json(rng, &mut json);
            }
            serde_json::to_vec(&json).expect("JSON values serialize")
        }
        _ => {
            let mut bytes = body.to_vec();
            mutate_bytes(rng, &mut bytes, CSV_TOKENS, 4);
            bytes
        }
    };
    if rng.gen_bool(0.1) {
        mutate_bytes(rng, &mut bytes, &[], 2);
    }
    bytes
}

/// What the proxy does to responses in the current case.
struct ProxyState {
    rng: StdRng,
    /// Probability that one response body is edited.
    rate: f64,
    /// Requests of the case with the edits made, printed if the case fails.
    log: Vec<String>,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    /// The proxy's own base URL, which replaces the sandbox's in response bodies, so that a
    /// connector following the token's `instance_url` stays behind the proxy.
    url: String,
    client: reqwest::Client,
    state: Arc<Mutex<ProxyState>>,
}

impl Proxy {
    fn start_case(&self, seed: u64, rate: f64) {
        let mut state = self.state.lock().expect("proxy state");
        state.rng = StdRng::seed_from_u64(seed);
        state.rate = rate;
        state.log.clear();
    }

    fn log(&self) -> String {
        self.state.lock().expect("proxy state").log.join("\n")
    }
}

/// Forwards a request to the sandbox and returns its response, with the body edited at the
/// case's rate.
async fn forward(
    axum::extract::State(proxy): axum::extract::State<Proxy>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .expect("request body");

    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut upstream = proxy
        .client
        .request(parts.method.clone(), format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }

    let response = upstream
        .send()
        .await
        .expect("the sandbox answers the proxy");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("sandbox body");
    let body = String::from_utf8_lossy(&body).replace(&proxy.upstream, &proxy.url);
    let body = {
        let mut state = proxy.state.lock().expect("proxy state");
        let rate = state.rate;
        let (body, note) = if state.rng.gen_bool(rate) {
            let edited = mutate_body(&mut state.rng, body.as_bytes());
            let preview = String::from_utf8_lossy(&edited[..edited.len().min(600)]).into_owned();
            (edited, format!("edited to {preview:?}"))
        } else {
            (body.into_bytes(), "unchanged".to_string())
        };
        let line = format!("{} {path} -> {status}, {note}", parts.method);
        state.log.push(line);
        body
    };

    let mut builder = axum::http::Response::builder().status(status);
    for (name, value) in &headers {
        let hop = [
            reqwest::header::CONTENT_LENGTH,
            reqwest::header::TRANSFER_ENCODING,
            reqwest::header::CONNECTION,
        ];
        if !hop.contains(name) {
            builder = builder.header(name, value);
        }
    }
    builder
        .body(axum::body::Body::from(body))
        .expect("a valid response")
}

/// Serves the proxy in front of `upstream` on a loopback port.
async fn start_proxy(upstream: String) -> (Proxy, String) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("proxy listens on loopback");
    let url = format!("http://{}", listener.local_addr().expect("proxy address"));
    let proxy = Proxy {
        upstream,
        url: url.clone(),
        client: reqwest::Client::new(),
        state: Arc::new(Mutex::new(ProxyState {
            rng: StdRng::seed_from_u64(0),
            rate: 0.0,
            log: Vec::new(),
        })),
    };
    let router = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("proxy serves");
    });
    (proxy, url)
}

/// Loads a config text written for the proxy, with one retry and short timeouts so an
/// edited response that the connector retries costs little.
fn proxy_config(dir: &Path, text: String) -> Config {
    let text = text
        .replace("max_retries = 4", "max_retries = 1")
        .replace("timeout_secs = 60", "timeout_secs = 10")
        .replace(
            "# bulk_objects = [\"Task\", \"Event\"]",
            "bulk_objects = [\"Task\"]",
        );
    let path = dir.join("leadscore.toml");
    std::fs::write(&path, text).expect("config written");
    Config::load(&path).unwrap_or_else(|error| panic!("{error}"))
}

/// Runs what a pull and a push ask of the connector: describe, every page of every pull
/// spec, a fetch by id and an update. Returns the first error, which must have a message.
async fn drive_connector(connector: &AnyConnector, specs: &[PullSpec]) -> Result<usize, String> {
    let mut records = 0;
    let mut first_ids: Vec<(String, String)> = Vec::new();
    for spec in specs {
        connector
            .describe(&spec.object)
            .await
            .map_err(|error| error.to_string())?;
        let mut page = connector
            .pull_first(spec, None)
            .await
            .map_err(|error| error.to_string())?;
        // Both connectors read and write accounts by id, not every object.
        if let (true, Some(record)) = (spec.object == "Account", page.records.first()) {
            first_ids.push((spec.object.clone(), record.id.clone()));
        }
        records += page.records.len();
        let mut pages = 1;
        while let Some(next) = page.next.clone() {
            pages += 1;
            if pages > 200 {
                return Err(format!(
                    "more than 200 pages of {}; the pull loops",
                    spec.object
                ));
            }
            page = connector
                .pull_next(spec, None, &next)
                .await
                .map_err(|error| error.to_string())?;
            records += page.records.len();
        }
    }
    if let Some((object, id)) = first_ids.first() {
        connector
            .fetch(object, std::slice::from_ref(id), &["Name".to_string()])
            .await
            .map_err(|error| error.to_string())?;
        let update = RecordUpdate {
            object: object.clone(),
            id: id.clone(),
            fields: [("Name".to_string(), Value::Text("Fuzzed".to_string()))].into(),
        };
        connector
            .update(&[update])
            .await
            .map_err(|error| error.to_string())?;
    }
    Ok(records)
}

/// Runs the payload cases against one CRM: a clean case first, which must pull records and
/// request `expected_path` (so the decoder behind it is reached), then cases whose responses
/// the proxy edits.
async fn fuzz_payloads(
    target: &str,
    expected_path: &str,
    proxy: &Proxy,
    connect: impl Fn() -> AnyConnector,
    specs: &[PullSpec],
) {
    proxy.start_case(0, 0.0);
    let clean = drive_connector(&connect(), specs).await;
    let pulled = clean.unwrap_or_else(|error| {
        panic!(
            "fuzz {target}: unedited run failed: {error}\n{}",
            proxy.log()
        )
    });
    assert!(
        pulled > 0,
        "fuzz {target}: the unedited run pulled no records"
    );
    let requests = proxy.log();
    assert!(
        requests.contains(expected_path),
        "fuzz {target}: the unedited run never requested {expected_path}:\n{requests}"
    );

    let base = base_seed(target);
    let cases = case_count(60);
    let started = Instant::now();
    let mut failed = 0u64;
    for case in 0..cases {
        let seed = case_seed(base, case);
        let rate = *[0.01, 0.03, 0.1, 0.3]
            .choose(&mut StdRng::seed_from_u64(seed))
            .expect("non-empty");
        proxy.start_case(seed, rate);
        let connector = connect();
        let specs = specs.to_vec();
        let run = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(60), drive_connector(&connector, &specs)).await
        });
        match run.await {
            Err(join) if join.is_panic() => panic!(
                "fuzz {target}: case seed {seed} panicked: {join}\nrequests:\n{}",
                proxy.log()
            ),
            Err(join) => panic!("fuzz {target}: case seed {seed} was cancelled: {join}"),
            Ok(Err(_)) => panic!(
                "fuzz {target}: case seed {seed} did not finish within 60 s\nrequests:\n{}",
                proxy.log()
            ),
            Ok(Ok(Err(message))) => {
                failed += 1;
                assert!(
                    !message.trim().is_empty(),
                    "fuzz {target}: case seed {seed} failed without a message"
                );
            }
            Ok(Ok(Ok(_))) => {}
        }
    }
    report_rate(target, cases, started);
    eprintln!("fuzz {target}: {failed} of {cases} cases ended in an error");
}

#[test]
fn salesforce_payloads_survive_edits() {
    let runtime = runtime();
    runtime.block_on(async {
        let options = SandboxOptions {
            page_size: 40,
            bulk_page_size: 40,
            ..SandboxOptions::default()
        };
        let (client_secret, refresh_token) =
            (options.client_secret.clone(), options.refresh_token.clone());
        let sandbox = Sandbox::new(small_org().records, options)
            .expect("sandbox accepts the demo org")
            .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("sandbox listens on loopback");
        let (proxy, url) = start_proxy(sandbox.url()).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("store").display().to_string();
        let config = proxy_config(dir.path(), sandbox_config(&url, &store));
        let specs = leadscore::pipeline::pull_specs(&config);
        let connect = || {
            let secrets = Secrets {
                client_secret: SecretString::from(client_secret.clone()),
                refresh_token: SecretString::from(refresh_token.clone()),
            };
            leadscore::run::connect(&config, ConnectorSecrets::Salesforce(secrets))
                .expect("connector builds")
        };
        fuzz_payloads(
            "salesforce-payloads",
            "/jobs/query/",
            &proxy,
            connect,
            &specs,
        )
        .await;
        sandbox.shutdown().await;
    });
}

#[test]
fn hubspot_payloads_survive_edits() {
    let runtime = runtime();
    runtime.block_on(async {
        let options = HubSpotOptions {
            private_app_ten_second_limit: 1_000_000,
            search_per_second_limit: 100_000,
            ..HubSpotOptions::default()
        };
        let token = options.private_app_token.clone();
        let sandbox = HubSpotSandbox::new(small_org().records, options)
            .expect("portal accepts the demo org")
            .serve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("portal listens on loopback");
        let (proxy, url) = start_proxy(sandbox.url()).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("store").display().to_string();
        let config = proxy_config(dir.path(), hubspot_sandbox_config(&url, &store));
        let specs = leadscore::pipeline::pull_specs(&config);
        let field_map = config.field_map.clone();
        // A pull needs the write-back properties, which `check --fix` creates.
        let setup = leadscore::run::connect(
            &config,
            ConnectorSecrets::HubSpotToken(SecretString::from(token.clone())),
        )
        .expect("connector builds");
        leadscore::setup::fix(&setup, &config)
            .await
            .expect("check --fix creates the write-back properties");
        let connect = || {
            let mut settings = HubSpotConfig::new(
                url::Url::parse(&url).expect("proxy URL"),
                HubSpotAuth::PrivateApp(SecretString::from(token.clone())),
            );
            settings.search_per_second = 100_000;
            settings.max_retries = 1;
            let connector = HubSpotConnector::new(settings).expect("connector builds");
            AnyConnector::new(Crm::HubSpot(connector), FieldMap::new(&field_map))
        };
        fuzz_payloads("hubspot-payloads", "/search", &proxy, connect, &specs).await;
        sandbox.shutdown().await;
    });
}
