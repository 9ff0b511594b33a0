//! Organisation-name normalisation and a name-plus-state index with exact, then fuzzy, lookup.
//!
//! CRM account names and public or vendor files spell the same hospital differently
//! (`St. Mary's Med Ctr` and `SAINT MARYS MEDICAL CENTER`). [`normalise_name`] removes the
//! differences of spelling, and [`NameIndex`] finds a name within one state: first by equal
//! normalised names, then by token-set similarity ([`token_similarity`]) when the best
//! candidate clears [`FUZZY_THRESHOLD`] and no other candidate comes within
//! [`AMBIGUITY_MARGIN`] of it.

use std::collections::{BTreeSet, HashMap};

/// Minimum [`token_similarity`] for a fuzzy match. A name of two or more words with one word
/// added still matches (`MERCY HOSPITAL` and `MERCY HOSPITAL JOPLIN` score 0.8). Two names of
/// four words that differ in one do not (`BAPTIST MEDICAL CENTER SOUTH` and
/// `BAPTIST MEDICAL CENTER EAST` score 0.75).
// NOTE: chosen from examples like those above, not measured against labelled matches. In the
// shipped CMS hospital file, 807 pairs of different hospitals in one state score 0.8 or more
// against each other, mostly generic names (COMMUNITY HOSPITAL), so fuzzy matches need review.
pub const FUZZY_THRESHOLD: f64 = 0.8;

/// A fuzzy match is rejected as ambiguous when another entry in the state scores within this
/// margin of the best one.
pub const AMBIGUITY_MARGIN: f64 = 0.1;

/// Abbreviations expanded word by word, after punctuation is removed.
const ABBREVIATIONS: [(&str, &str); 9] = [
    ("ST", "SAINT"),
    ("STE", "SAINTE"),
    ("MT", "MOUNT"),
    ("MED", "MEDICAL"),
    ("CTR", "CENTER"),
    ("HOSP", "HOSPITAL"),
    ("MEM", "MEMORIAL"),
    ("REG", "REGIONAL"),
    ("UNIV", "UNIVERSITY"),
];

/// Words dropped wherever they occur: articles and legal forms that one source writes and
/// another leaves out.
const DROPPED_WORDS: [&str; 3] = ["THE", "INC", "LLC"];

/// Normalises an organisation name for comparison.
///
/// The name is upper-cased, `&` becomes `AND` and apostrophes are removed (`MARY'S` becomes
/// `MARYS`). Every other character that is not a letter or digit separates words. The
/// abbreviations ST, STE, MT, MED, CTR, HOSP, MEM, REG and UNIV are written out (SAINT,
/// SAINTE, MOUNT, MEDICAL, CENTER, HOSPITAL, MEMORIAL, REGIONAL, UNIVERSITY). THE, INC and LLC
/// are dropped, and the words are joined by single spaces. When `city` is given and the name ends with it
/// (`MERCY HOSPITAL - JOPLIN` in Joplin), the city is dropped too, unless nothing would remain.
pub fn normalise_name(name: &str, city: Option<&str>) -> String {
    let mut words = name_words(name);
    if let Some(city) = city {
        let city_words = name_words(city);
        if !city_words.is_empty() && words.len() > city_words.len() && words.ends_with(&city_words)
        {
            words.truncate(words.len() - city_words.len());
        }
    }
    words.join(" ")
}

/// Splits a name into normalised words (every step of [`normalise_name`] except the city).
fn name_words(name: &str) -> Vec<String> {
    let mut text = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '&' => text.push_str(" AND "),
            '\'' | '\u{2019}' => {}
            c if c.is_alphanumeric() => text.extend(c.to_uppercase()),
            _ => text.push(' '),
        }
    }
    text.split_whitespace()
        .filter(|word| !DROPPED_WORDS.contains(word))
        .map(|word| {
            ABBREVIATIONS
                .iter()
                .find(|(short, _)| *short == word)
                .map_or(word, |(_, long)| long)
                .to_string()
        })
        .collect()
}

/// Normalises a state or province code: trimmed and upper-case.
pub fn normalise_state(state: &str) -> String {
    state.trim().to_uppercase()
}

/// Returns the Dice coefficient of the two names' word sets: twice the number of shared words
/// over the total number of words, from 0 (nothing shared) to 1 (same words in any order).
/// Both arguments are normalised names. A final `S` is ignored on words of four or more
/// letters, so that `JOSEPH` and `JOSEPHS` count as the same word.
pub fn token_similarity(a: &str, b: &str) -> f64 {
    let b: Vec<&str> = word_stems(b).into_iter().collect();
    stem_similarity(&word_stems(a), &b)
}

/// Returns [`token_similarity`] from the word stems of the two names, both as [`word_stems`]
/// returns them.
fn stem_similarity(a: &BTreeSet<&str>, b: &[&str]) -> f64 {
    // Both sides are sorted sets, so one merge pass counts the shared stems.
    let mut shared = 0;
    let mut others = b.iter().peekable();
    for stem in a {
        while others.next_if(|other| *other < stem).is_some() {}
        if others.next_if_eq(&stem).is_some() {
            shared += 1;
        }
    }
    dice(shared, a.len(), b.len())
}

/// Returns the Dice coefficient of two stem sets of `a` and `b` stems that share `shared`.
/// Every similarity goes through this one expression, so the index's figures equal
/// [`token_similarity`]'s to the bit.
fn dice(shared: usize, a: usize, b: usize) -> f64 {
    if a == 0 || b == 0 {
        return 0.0;
    }
    2.0 * shared as f64 / (a + b) as f64
}

/// Counts the values two ascending lists share.
fn shared_count(a: &[u32], b: &[u32]) -> usize {
    let (mut i, mut j, mut shared) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                shared += 1;
                i += 1;
                j += 1;
            }
        }
    }
    shared
}

fn word_stems(name: &str) -> BTreeSet<&str> {
    name.split_whitespace()
        .map(|word| {
            if word.len() >= 4 {
                word.strip_suffix('S').unwrap_or(word)
            } else {
                word
            }
        })
        .collect()
}

/// The result of a [`NameIndex::lookup`].
#[derive(Clone, Debug, PartialEq)]
pub enum NameMatch<'a, T> {
    /// The normalised names and the states are equal.
    Exact(&'a T),
    /// The best similar name in the state, clear of every other candidate.
    Fuzzy {
        id: &'a T,
        /// The matched entry's name as inserted.
        name: &'a str,
        similarity: f64,
    },
    /// Two or more entries in the state are similar enough and too close to each other.
    Ambiguous {
        /// The names of the closest candidates, best first (at most 3).
        candidates: Vec<&'a str>,
    },
    /// No entry in the state is similar enough.
    NotFound,
}

struct Entry<T> {
    id: T,
    name: String,
    /// The numbers of the word stems of the normalised name in its state's
    /// [`StateEntries::stem_ids`], ascending and without repeats.
    stems: Vec<u32>,
}

/// The lowest similarity that can still decide a lookup: a fuzzy match needs
/// [`FUZZY_THRESHOLD`], and a runner-up within [`AMBIGUITY_MARGIN`] of it makes it ambiguous.
const CANDIDATE_FLOOR: f64 = FUZZY_THRESHOLD - AMBIGUITY_MARGIN;

/// The entries of one state, with an inverted index from word stem to entries.
///
/// Stems are numbered per state, so a comparison of two names compares integers rather than
/// strings.
struct StateEntries<T> {
    entries: Vec<Entry<T>>,
    /// The number of each word stem of the state's entries.
    stem_ids: HashMap<String, u32>,
    /// For each stem number, the positions in `entries` of the entries that have it, ascending.
    postings: Vec<Vec<usize>>,
}

impl<T> Default for StateEntries<T> {
    fn default() -> Self {
        StateEntries {
            entries: Vec::new(),
            stem_ids: HashMap::new(),
            postings: Vec::new(),
        }
    }
}

impl<T> StateEntries<T> {
    /// Adds an entry whose name has the word stems `stems`.
    fn push(&mut self, id: T, name: String, stems: &BTreeSet<&str>) {
        let position = self.entries.len();
        let mut numbers = Vec::with_capacity(stems.len());
        for stem in stems {
            let number = match self.stem_ids.get(*stem) {
                Some(&number) => number,
                None => {
                    let number = u32::try_from(self.postings.len()).unwrap_or(u32::MAX);
                    self.stem_ids.insert((*stem).to_string(), number);
                    self.postings.push(Vec::new());
                    number
                }
            };
            self.postings[number as usize].push(position);
            numbers.push(number);
        }
        numbers.sort_unstable();
        self.entries.push(Entry {
            id,
            name,
            stems: numbers,
        });
    }

    /// Returns the numbers of the stems this state has, ascending. A stem no entry has
    /// cannot be shared, so it is left out.
    fn known_stems(&self, stems: &BTreeSet<&str>) -> Vec<u32> {
        let mut numbers: Vec<u32> = stems
            .iter()
            .filter_map(|stem| self.stem_ids.get(*stem).copied())
            .collect();
        numbers.sort_unstable();
        numbers
    }

    /// Returns the positions, ascending, of a superset of the entries whose similarity to a
    /// name with these stems reaches [`CANDIDATE_FLOOR`].
    ///
    /// Such an entry shares at least `required` stems with the name ([`min_shared_stems`]),
    /// so at most `stems.len() - required` of the name's stems are missing from it, and any
    /// `stems.len() - required + 1` of them include one that it has. Visiting the postings of
    /// that many stems therefore finds it. The rarest stems are taken because their postings
    /// are the shortest, so a common word such as HOSPITAL is skipped whenever the name has
    /// rarer ones.
    fn candidates(&self, stems: &BTreeSet<&str>) -> Vec<usize> {
        let Some(required) = min_shared_stems(stems.len()) else {
            return Vec::new();
        };
        let mut postings: Vec<&[usize]> = stems
            .iter()
            .map(|stem| {
                self.stem_ids
                    .get(*stem)
                    .map_or(&[][..], |&number| self.postings[number as usize].as_slice())
            })
            .collect();
        // NOTE: a name made only of common words (MEDICAL CENTER) still visits most entries of
        // its state, so generic names keep a cost that grows with the entries per state.
        postings.sort_by_key(|positions| positions.len());
        let probed = stems.len() - required + 1;
        let mut positions: Vec<usize> = postings[..probed].concat();
        positions.sort_unstable();
        positions.dedup();
        positions
    }
}

/// Returns the smallest number of shared stems with which a name of `stems` stems can reach
/// [`CANDIDATE_FLOOR`] against some entry, or `None` for a name without stems.
///
/// The similarity of `shared` stems is largest when the entry has no other stems, and it is
/// computed here with the same floating-point expression as in [`dice`]. Rounded
/// division never grows with the divisor, so no entry reaches the floor with fewer shared
/// stems than this.
fn min_shared_stems(stems: usize) -> Option<usize> {
    (1..=stems).find(|&shared| dice(shared, stems, shared) >= CANDIDATE_FLOOR)
}

/// An index from (organisation name, state) to an id, for example CMS rows or CRM accounts.
pub struct NameIndex<T> {
    /// Entries per normalised state.
    by_state: HashMap<String, StateEntries<T>>,
    /// (normalised state, normalised name) to the position in `by_state`.
    exact: HashMap<(String, String), usize>,
}

impl<T> Default for NameIndex<T> {
    fn default() -> Self {
        NameIndex {
            by_state: HashMap::new(),
            exact: HashMap::new(),
        }
    }
}

impl<T> NameIndex<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry. A name whose normalised form is empty (only punctuation or dropped words)
    /// is not added. When the same normalised name and state are already present, the first
    /// entry is kept and its id returned as `Err`, so that the caller can report the duplicate.
    pub fn insert(&mut self, name: &str, state: &str, city: Option<&str>, id: T) -> Result<(), &T> {
        let normalised = normalise_name(name, city);
        let state = normalise_state(state);
        if normalised.is_empty() {
            return Ok(());
        }
        let key = (state.clone(), normalised.clone());
        let in_state = self.by_state.entry(state).or_default();
        if let Some(&position) = self.exact.get(&key) {
            return Err(&in_state.entries[position].id);
        }
        self.exact.insert(key, in_state.entries.len());
        in_state.push(id, name.trim().to_string(), &word_stems(&normalised));
        Ok(())
    }

    /// Returns the number of entries.
    pub fn len(&self) -> usize {
        self.exact.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// Looks a name up within its state: an equal normalised name first, then the most similar
    /// name if it clears [`FUZZY_THRESHOLD`] and leads every other candidate by
    /// [`AMBIGUITY_MARGIN`].
    ///
    /// Only entries that share enough word stems with the name are compared
    /// ([`StateEntries::candidates`]), in the order they were inserted, so the result equals
    /// a comparison with every entry of the state.
    pub fn lookup(&self, name: &str, state: &str, city: Option<&str>) -> NameMatch<'_, T> {
        self.lookup_with(name, state, city, StateEntries::candidates)
    }

    /// Looks a name up like [`NameIndex::lookup`], choosing the entries to compare with
    /// `candidates`, which returns positions in ascending order.
    fn lookup_with(
        &self,
        name: &str,
        state: &str,
        city: Option<&str>,
        candidates: impl Fn(&StateEntries<T>, &BTreeSet<&str>) -> Vec<usize>,
    ) -> NameMatch<'_, T> {
        let normalised = normalise_name(name, city);
        let state = normalise_state(state);
        let Some(in_state) = self.by_state.get(&state) else {
            return NameMatch::NotFound;
        };
        if normalised.is_empty() {
            return NameMatch::NotFound;
        }
        if let Some(&position) = self.exact.get(&(state, normalised.clone())) {
            return NameMatch::Exact(&in_state.entries[position].id);
        }

        let stems = word_stems(&normalised);
        let known = in_state.known_stems(&stems);
        let mut scored: Vec<(f64, &Entry<T>)> = candidates(in_state, &stems)
            .into_iter()
            .map(|position| &in_state.entries[position])
            .map(|entry| {
                let shared = shared_count(&known, &entry.stems);
                (dice(shared, stems.len(), entry.stems.len()), entry)
            })
            .filter(|(similarity, _)| *similarity >= CANDIDATE_FLOOR)
            .collect();
        // A stable sort, so that entries of equal similarity stay in insertion order.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let Some(&(best, entry)) = scored.first() else {
            return NameMatch::NotFound;
        };
        if best < FUZZY_THRESHOLD {
            return NameMatch::NotFound;
        }
        match scored.get(1) {
            Some(&(second, _)) if best - second < AMBIGUITY_MARGIN => NameMatch::Ambiguous {
                candidates: scored
                    .iter()
                    .take(3)
                    .map(|(_, entry)| entry.name.as_str())
                    .collect(),
            },
            _ => NameMatch::Fuzzy {
                id: &entry.id,
                name: &entry.name,
                similarity: best,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Looks a name up by comparing it with every entry of its state: the definition that
    /// [`NameIndex::lookup`] must reproduce.
    fn lookup_every_entry<'a, T>(
        index: &'a NameIndex<T>,
        name: &str,
        state: &str,
    ) -> NameMatch<'a, T> {
        index.lookup_with(name, state, None, |in_state, _| {
            (0..in_state.entries.len()).collect()
        })
    }

    /// Words with shared stems (MARY and MARYS), abbreviations, dropped words and short words,
    /// few enough that generated names often tie, match and collide.
    const WORDS: [&str; 20] = [
        "SAINT",
        "St.",
        "MARY",
        "Mary's",
        "MARYS",
        "MEDICAL",
        "Med",
        "CENTER",
        "HOSPITAL",
        "MERCY",
        "JOSEPH",
        "JOSEPHS",
        "COMMUNITY",
        "REGIONAL",
        "BAPTIST",
        "SOUTH",
        "EAST",
        "THE",
        "A",
        "2",
    ];

    fn random_name(rng: &mut StdRng) -> String {
        let words = rng.gen_range(1..=7);
        (0..words)
            .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The stem index must give the same result as comparing with every entry, including
    /// which names are ambiguous and the order of their candidates.
    #[test]
    fn indexed_lookup_matches_every_entry() {
        let states = ["AL", "MO", "mn"];
        let mut outcomes = [0usize; 4];
        for seed in 0..40 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut index = NameIndex::new();
            let mut inserted = Vec::new();
            for id in 0..rng.gen_range(1..400) {
                let name = random_name(&mut rng);
                let state = states[rng.gen_range(0..states.len())];
                if index.insert(&name, state, None, id).is_ok() {
                    inserted.push((name, state));
                }
            }
            for _ in 0..300 {
                // Half the queries are an inserted name with one word added or removed, so
                // that near matches are common.
                let query = if rng.gen_bool(0.5) {
                    let (name, _) = &inserted[rng.gen_range(0..inserted.len())];
                    let mut words: Vec<&str> = name.split(' ').collect();
                    if rng.gen_bool(0.5) && words.len() > 1 {
                        words.remove(rng.gen_range(0..words.len()));
                    } else {
                        words.push(WORDS[rng.gen_range(0..WORDS.len())]);
                    }
                    words.join(" ")
                } else {
                    random_name(&mut rng)
                };
                let state = states[rng.gen_range(0..states.len())];
                let indexed = index.lookup(&query, state, None);
                let expected = lookup_every_entry(&index, &query, state);
                assert_eq!(indexed, expected, "seed {seed}, {query:?} in {state}");
                let kind = match indexed {
                    NameMatch::Exact(_) => 0,
                    NameMatch::Fuzzy { .. } => 1,
                    NameMatch::Ambiguous { .. } => 2,
                    NameMatch::NotFound => 3,
                };
                outcomes[kind] += 1;
            }
        }
        // Every kind of result must occur, or the comparison above proves little.
        for (kind, count) in ["exact", "fuzzy", "ambiguous", "not found"]
            .iter()
            .zip(outcomes)
        {
            assert!(
                count >= 100,
                "only {count} {kind} results in the generated lookups"
            );
        }
    }

    /// The bound must be the smallest count that reaches the floor: a name of four stems needs
    /// three shared (6/7 >= 0.7 but 4/6 < 0.7), and one of two stems needs both.
    #[test]
    fn min_shared_stems_of_small_names() {
        assert_eq!(min_shared_stems(0), None);
        assert_eq!(min_shared_stems(1), Some(1));
        assert_eq!(min_shared_stems(2), Some(2));
        assert_eq!(min_shared_stems(3), Some(2));
        assert_eq!(min_shared_stems(4), Some(3));
        for stems in 1..=40 {
            let required = min_shared_stems(stems).unwrap();
            let best = |shared: usize| 2.0 * shared as f64 / (stems + shared) as f64;
            assert!(best(required) >= CANDIDATE_FLOOR, "{stems} stems");
            assert!(best(required - 1) < CANDIDATE_FLOOR, "{stems} stems");
        }
    }

    /// The merge count over sorted stems must give the Dice coefficient that a set
    /// intersection gives, including repeated words and the final `S` rule.
    #[test]
    fn stem_merge_matches_set_intersection() {
        let names = [
            "SAINT JOSEPHS MEDICAL CENTER",
            "SAINT JOSEPH MEDICAL CENTER SOUTH",
            "MERCY HOSPITAL HOSPITAL",
            "MERCY HOSPITAL JOPLIN",
            "A B C",
            "C B A D",
            "COMMUNITY HOSPITAL",
            "",
        ];
        for a in names {
            for b in names {
                let (left, right) = (word_stems(a), word_stems(b));
                let expected = if left.is_empty() || right.is_empty() {
                    0.0
                } else {
                    2.0 * left.intersection(&right).count() as f64
                        / (left.len() + right.len()) as f64
                };
                assert_eq!(token_similarity(a, b), expected, "{a:?} and {b:?}");
            }
        }
    }

    #[test]
    fn normalise_spelling_variants() {
        let cases = [
            ("St. Mary's Med Ctr", "SAINT MARYS MEDICAL CENTER"),
            ("ST MARYS MEDICAL CENTER", "SAINT MARYS MEDICAL CENTER"),
            ("The Johns Hopkins Hospital, Inc.", "JOHNS HOPKINS HOSPITAL"),
            ("Mercy Health & Rehab LLC", "MERCY HEALTH AND REHAB"),
            (
                "  southeast   health-medical center ",
                "SOUTHEAST HEALTH MEDICAL CENTER",
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(normalise_name(raw, None), expected, "input {raw:?}");
        }
    }

    #[test]
    fn normalise_drops_trailing_city() {
        assert_eq!(
            normalise_name("Mercy Hospital - Joplin", Some("JOPLIN")),
            "MERCY HOSPITAL"
        );
        // The city is dropped only at the end, and never when it is the whole name.
        assert_eq!(
            normalise_name("Joplin Regional Hospital", Some("Joplin")),
            "JOPLIN REGIONAL HOSPITAL"
        );
        assert_eq!(normalise_name("Joplin", Some("Joplin")), "JOPLIN");
    }

    #[test]
    fn similarity_of_word_sets() {
        assert_eq!(token_similarity("A B C", "C B A"), 1.0);
        assert_eq!(
            token_similarity("MERCY HOSPITAL", "MERCY HOSPITAL JOPLIN"),
            0.8
        );
        assert_eq!(
            token_similarity(
                "BAPTIST MEDICAL CENTER SOUTH",
                "BAPTIST MEDICAL CENTER EAST"
            ),
            0.75
        );
        assert_eq!(token_similarity("SAINT JOSEPH", "SAINT JOSEPHS"), 1.0);
        assert_eq!(token_similarity("", "A"), 0.0);
    }

    #[test]
    fn lookup_exact_fuzzy_and_ambiguous() {
        let mut index = NameIndex::new();
        assert!(index.insert("Saint Marys Hospital", "MN", None, 1).is_ok());
        assert!(index
            .insert("Baptist Medical Center South", "AL", None, 2)
            .is_ok());
        assert!(index
            .insert("Baptist Medical Center East", "AL", None, 3)
            .is_ok());
        assert!(index.insert("Mercy Hospital Joplin", "MO", None, 4).is_ok());
        assert_eq!(index.insert("ST. MARY'S HOSPITAL", "mn", None, 5), Err(&1));
        assert_eq!(index.len(), 4);

        assert_eq!(
            index.lookup("St Mary's Hospital", " mn ", None),
            NameMatch::Exact(&1)
        );
        // Same name in another state: no match.
        assert_eq!(
            index.lookup("St Mary's Hospital", "WI", None),
            NameMatch::NotFound
        );
        match index.lookup("Mercy Hospital", "MO", None) {
            NameMatch::Fuzzy {
                id,
                name,
                similarity,
            } => {
                assert_eq!(*id, 4);
                assert_eq!(name, "Mercy Hospital Joplin");
                assert!((similarity - 0.8).abs() < 1e-9);
            }
            other => panic!("expected a fuzzy match, got {other:?}"),
        }
        // Both Baptist entries score 6/7 against the shorter name.
        match index.lookup("Baptist Medical Center", "AL", None) {
            NameMatch::Ambiguous { candidates } => assert_eq!(candidates.len(), 2),
            other => panic!("expected an ambiguous match, got {other:?}"),
        }
        assert_eq!(
            index.lookup("Baptist Hospital", "AL", None),
            NameMatch::NotFound
        );
    }
}
