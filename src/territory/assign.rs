//! Building the lists: which open accounts each rep's territory covers, their order, and the
//! change since each rep's previous list. No IO happens here.

use std::collections::{BTreeMap, BTreeSet};

use leadscore_connector::{Record, Value};

use super::{
    Change, DropReason, DroppedAccount, ListEntry, RepList, UNASSIGNED_KEY, UNASSIGNED_STEM,
};
use crate::store::{ScoreRow, StoredList};

/// Maximum length, in characters, of each part of a file name taken from a rep's name or id.
const MAX_STEM_PART: usize = 40;

/// A pulled user, as the lists name them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rep {
    pub name: Option<String>,
    pub active: Option<bool>,
}

/// Everything the lists are built from.
#[derive(Clone, Debug, Default)]
pub struct ListInputs {
    /// The account level's scores: one row per open, scored account.
    pub scores: Vec<ScoreRow>,
    /// Pulled accounts by id, without deleted or merged ones.
    pub accounts: BTreeMap<String, Record>,
    /// Pulled users by id.
    pub users: BTreeMap<String, Rep>,
    /// Each rep's previous list.
    pub previous: Vec<StoredList>,
    /// Accounts per list.
    pub top: usize,
    /// The account field whose values form territories, if any.
    pub field: Option<String>,
}

/// A scored account that is still live, with its current name, owner and territory value as
/// last pulled, which may be newer than the score.
#[derive(Clone, Debug)]
pub struct OpenAccount<'a> {
    pub row: &'a ScoreRow,
    pub name: String,
    pub owner: Option<String>,
    pub value: Option<String>,
}

/// Returns a field's value as text, or `None` when it is empty.
pub(super) fn text_of(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::Text(s) => s.trim().to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Date(d) => d.to_string(),
        Value::DateTime(t) => t.to_rfc3339(),
    };
    (!text.is_empty()).then_some(text)
}

/// Builds every list, ordered by rep name with the unassigned list last.
pub fn build_lists(inputs: &ListInputs) -> Vec<RepList> {
    let field = inputs.field.as_deref();
    // Scores of accounts that are no longer pulled as live (deleted, merged) are left out.
    let open: Vec<OpenAccount<'_>> = inputs
        .scores
        .iter()
        .filter_map(|row| {
            let record = inputs.accounts.get(&row.id)?;
            Some(OpenAccount {
                row,
                name: text_of(record.get("Name")).unwrap_or_else(|| row.name.clone()),
                owner: text_of(record.get("OwnerId")),
                value: field.and_then(|f| text_of(record.get(f))),
            })
        })
        .collect();

    let (candidates, territories) = match field {
        None => (by_owner(&open), BTreeMap::new()),
        Some(field) => by_field(&open, &inputs.accounts, field),
    };

    let previous: BTreeMap<&str, &StoredList> = inputs
        .previous
        .iter()
        .map(|list| (list.rep_key.as_str(), list))
        .collect();
    // A rep gets a list while their territory has open accounts, and once more after it has
    // none, so the page shows where the accounts of the last list went.
    let mut keys: BTreeSet<&str> = candidates.keys().map(String::as_str).collect();
    for list in &inputs.previous {
        if !list.accounts.is_empty() {
            keys.insert(list.rep_key.as_str());
        }
    }

    let open_ids: BTreeSet<&str> = open.iter().map(|a| a.row.id.as_str()).collect();
    let mut lists: Vec<RepList> = keys
        .into_iter()
        .map(|key| {
            let indices = candidates.get(key).map_or(&[][..], Vec::as_slice);
            build_one(
                key,
                indices,
                &open,
                &open_ids,
                previous.get(key).copied(),
                territories.get(key),
                inputs,
            )
        })
        .collect();
    lists.sort_by(|a, b| {
        let unassigned = |l: &RepList| l.rep_key == UNASSIGNED_KEY;
        unassigned(a)
            .cmp(&unassigned(b))
            .then_with(|| a.rep_name.to_lowercase().cmp(&b.rep_name.to_lowercase()))
            .then_with(|| a.rep_key.cmp(&b.rep_key))
    });
    assign_file_stems(&mut lists);
    lists
}

/// Returns the indices into `open` of each owner's accounts. Ownerless ones go to the
/// unassigned list.
fn by_owner(open: &[OpenAccount<'_>]) -> BTreeMap<String, Vec<usize>> {
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, account) in open.iter().enumerate() {
        let key = account.owner.as_deref().unwrap_or(UNASSIGNED_KEY);
        out.entry(key.to_string()).or_default().push(index);
    }
    out
}

/// Returns the indices into `open` of each rep's territory and each rep's territory values.
/// A rep's values are those of every live account they own, customers included. An owned
/// account without a value stays on its owner's list, and an account that no territory
/// covers goes to the unassigned list.
fn by_field(
    open: &[OpenAccount<'_>],
    accounts: &BTreeMap<String, Record>,
    field: &str,
) -> (
    BTreeMap<String, Vec<usize>>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let mut territories: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut reps_by_value: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for record in accounts.values() {
        let (Some(owner), Some(value)) =
            (text_of(record.get("OwnerId")), text_of(record.get(field)))
        else {
            continue;
        };
        territories
            .entry(owner.clone())
            .or_default()
            .insert(value.clone());
        reps_by_value.entry(value).or_default().insert(owner);
    }

    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, account) in open.iter().enumerate() {
        let reps: Vec<&String> = match (&account.value, &account.owner) {
            (Some(value), _) => reps_by_value.get(value).into_iter().flatten().collect(),
            (None, Some(owner)) => vec![owner],
            (None, None) => Vec::new(),
        };
        if reps.is_empty() {
            out.entry(UNASSIGNED_KEY.to_string())
                .or_default()
                .push(index);
        }
        for rep in reps {
            out.entry(rep.clone()).or_default().push(index);
        }
    }
    (out, territories)
}

fn build_one(
    key: &str,
    indices: &[usize],
    open: &[OpenAccount<'_>],
    open_ids: &BTreeSet<&str>,
    previous: Option<&StoredList>,
    territory: Option<&BTreeSet<String>>,
    inputs: &ListInputs,
) -> RepList {
    let mut ranked: Vec<&OpenAccount<'_>> = indices.iter().map(|&i| &open[i]).collect();
    // The probability orders accounts whose rounded scores tie.
    ranked.sort_by(|a, b| {
        b.row
            .probability
            .total_cmp(&a.row.probability)
            .then_with(|| a.row.id.cmp(&b.row.id))
    });
    let before: BTreeMap<&str, f64> = previous
        .into_iter()
        .flat_map(|list| &list.accounts)
        .map(|a| (a.id.as_str(), a.score))
        .collect();
    let owner_name = |owner: &Option<String>| -> Option<String> {
        let owner = owner.as_ref()?;
        Some(
            inputs
                .users
                .get(owner)
                .and_then(|rep| rep.name.clone())
                .unwrap_or_else(|| owner.clone()),
        )
    };

    let entries: Vec<ListEntry> = ranked
        .iter()
        .take(inputs.top)
        .enumerate()
        .map(|(position, account)| {
            let row = account.row;
            let change = match before.get(row.id.as_str()) {
                Some(&previous) => Change::Score {
                    previous,
                    delta: row.score - previous,
                },
                None => Change::New,
            };
            ListEntry {
                rank: position + 1,
                id: row.id.clone(),
                name: account.name.clone(),
                score: row.score,
                tier: row.tier.clone(),
                change,
                owner_id: account.owner.clone(),
                owner_name: owner_name(&account.owner),
                territory_value: account.value.clone(),
                reasons: row.reasons.clone(),
            }
        })
        .collect();

    let listed: BTreeSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    let in_territory: BTreeSet<&str> = ranked.iter().map(|a| a.row.id.as_str()).collect();
    let current_score: BTreeMap<&str, f64> = open
        .iter()
        .map(|a| (a.row.id.as_str(), a.row.score))
        .collect();
    let dropped = previous
        .into_iter()
        .flat_map(|list| &list.accounts)
        .filter(|account| !listed.contains(account.id.as_str()))
        .map(|account| {
            let id = account.id.as_str();
            let reason = if !inputs.accounts.contains_key(id) {
                DropReason::Deleted
            } else if !open_ids.contains(id) {
                DropReason::NoLongerOpen
            } else if in_territory.contains(id) {
                DropReason::BelowTop
            } else {
                DropReason::MovedTerritory
            };
            DroppedAccount {
                id: account.id.clone(),
                name: account.name.clone(),
                previous_score: account.score,
                previous_tier: account.tier.clone(),
                score: current_score.get(id).copied(),
                reason,
            }
        })
        .collect();

    let (rep_name, active) = if key == UNASSIGNED_KEY {
        ("Unassigned accounts".to_string(), None)
    } else {
        let rep = inputs.users.get(key);
        (
            rep.and_then(|r| r.name.clone())
                .unwrap_or_else(|| key.to_string()),
            rep.and_then(|r| r.active),
        )
    };
    RepList {
        rep_key: key.to_string(),
        rep_name,
        active,
        file_stem: String::new(),
        territory: territory
            .map(|values| values.iter().cloned().collect())
            .unwrap_or_default(),
        open_accounts: ranked.len(),
        entries,
        dropped,
        had_previous: previous.is_some(),
    }
}

/// Gives every list a distinct file name made of its rep's name and id in ASCII letters,
/// digits, `-` and `_`, so no name can reach outside the folder or clash with the index.
fn assign_file_stems(lists: &mut [RepList]) {
    let mut used: BTreeSet<String> = ["index".to_string(), UNASSIGNED_STEM.to_string()].into();
    for list in lists.iter_mut() {
        let base = if list.rep_key == UNASSIGNED_KEY {
            list.file_stem = UNASSIGNED_STEM.to_string();
            continue;
        } else {
            file_stem(&list.rep_name, &list.rep_key)
        };
        let mut stem = base.clone();
        let mut suffix = 1;
        while used.contains(&stem) {
            suffix += 1;
            stem = format!("{base}-{suffix}");
        }
        used.insert(stem.clone());
        list.file_stem = stem;
    }
}

/// Returns `name-id` in file-safe characters: the name in lower-case ASCII letters and digits
/// joined by `-`, the id with every other character left out.
fn file_stem(name: &str, id: &str) -> String {
    let mut name_part = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            name_part.push(c.to_ascii_lowercase());
        } else if !name_part.is_empty() && !name_part.ends_with('-') {
            name_part.push('-');
        }
        if name_part.len() >= MAX_STEM_PART {
            break;
        }
    }
    let name_part = name_part.trim_end_matches('-');
    let id_part: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(MAX_STEM_PART)
        .collect();
    match (name_part.is_empty(), id_part.is_empty()) {
        (false, false) if name_part != id_part.to_ascii_lowercase() => {
            format!("{name_part}-{id_part}")
        }
        (_, false) => format!("rep-{id_part}"),
        (false, true) => name_part.to_string(),
        (true, true) => "rep".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stem_keeps_safe_characters_only() {
        assert_eq!(
            file_stem("Ana <Ruiz> & Co", "005A0000001"),
            "ana-ruiz-co-005A0000001"
        );
        assert_eq!(file_stem("../../etc", "../x"), "etc-x");
        assert_eq!(file_stem("", "123"), "rep-123");
        assert_eq!(file_stem("José", ""), "jos");
        assert_eq!(file_stem("", "/"), "rep");
    }

    #[test]
    fn file_stems_never_clash() {
        let list = |key: &str, name: &str| RepList {
            rep_key: key.to_string(),
            rep_name: name.to_string(),
            active: None,
            file_stem: String::new(),
            territory: Vec::new(),
            open_accounts: 0,
            entries: Vec::new(),
            dropped: Vec::new(),
            had_previous: false,
        };
        let mut lists = vec![
            list("a/b", "Same"),
            list("a_b", "Same"),
            list("ab", "Same"),
            list("ab/", "Same"),
            list(UNASSIGNED_KEY, "Unassigned accounts"),
        ];
        assign_file_stems(&mut lists);
        let stems: Vec<&str> = lists.iter().map(|l| l.file_stem.as_str()).collect();
        assert_eq!(
            stems,
            [
                "same-ab",
                "same-a_b",
                "same-ab-2",
                "same-ab-3",
                "unassigned"
            ]
        );
    }
}
