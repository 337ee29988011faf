//! `projectionist test [DIR]`: golden tests for projections. Each folder
//! `DIR/fixtures/<projection>/` holds `events.jsonl` (given) and
//! `expected.json` (the projections of that name they must produce, by key);
//! the events run offline through every definition in DIR, as in production.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use similar::TextDiff;

use super::{describe, fold_records, memory_caches, stored};
use crate::config::{CacheSettings, Settings};
use crate::fixtures::read_jsonl;
use crate::projection::{Definition, definition_files, load_dir};
use crate::projector::Registry;

/// The verdict on one fixture folder.
#[derive(Debug)]
pub struct FixtureReport {
    pub projection: String,
    /// Readable differences; empty when the fixture passes.
    pub mismatches: Vec<String>,
    /// Permanent failures met on the way (informational).
    pub failures: Vec<String>,
}

/// Settings for offline runs: memory caches under every name the definitions
/// use, so a fixture never needs the deployment's Redis.
pub fn offline_settings(dir: &Path) -> Settings {
    let mut settings = Settings::defaults();
    settings.projections_dir = dir.to_path_buf();
    for name in cache_names(dir) {
        settings
            .caches
            .entry(name)
            .or_insert_with(CacheSettings::memory_default);
    }
    settings
}

/// Cache names the definitions in `dir` mention (unreadable files are left to
/// the loader, which reports them properly).
fn cache_names(dir: &Path) -> Vec<String> {
    let Ok(files) = definition_files(dir) else {
        return Vec::new();
    };
    files
        .into_iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .filter_map(|text| text.parse::<toml::Table>().ok())
        .filter_map(|table| table.get("cache")?.as_str().map(str::to_owned))
        .collect()
}

/// Run every fixture under `dir/fixtures`; `Err` for what kept them from running.
pub async fn run(dir: &Path, registry: &Registry) -> Result<Vec<FixtureReport>, Vec<String>> {
    let settings = offline_settings(dir);
    // Loaded (read, validated, jq compiled) once: projectors are pure, so every
    // fixture can share them.
    let definitions = load_dir(&settings, registry).map_err(|error| error.errors)?;
    let fixtures_dir = dir.join("fixtures");
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&fixtures_dir)
        .map_err(|error| vec![format!("{}: {error}", fixtures_dir.display())])?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_dir())
        .collect();
    folders.sort();
    let mut reports = Vec::new();
    for folder in folders {
        reports.push(run_fixture(&settings, &definitions, &folder).await?);
    }
    Ok(reports)
}

async fn run_fixture(
    settings: &Settings,
    definitions: &[Definition],
    folder: &Path,
) -> Result<FixtureReport, Vec<String>> {
    let projection = folder
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let records = read_jsonl(&folder.join("events.jsonl")).map_err(|error| vec![error])?;
    let expected_path = folder.join("expected.json");
    let expected: BTreeMap<String, Value> = std::fs::read_to_string(&expected_path)
        .map_err(|error| error.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|error| error.to_string()))
        .map_err(|error| vec![format!("{}: {error}", expected_path.display())])?;
    let Some(cache_name) = definitions
        .iter()
        .find(|definition| definition.name == projection)
        .map(|definition| definition.cache.clone())
    else {
        return Err(vec![format!(
            "{}: no projection named {projection:?} is defined",
            folder.display()
        )]);
    };
    // Fresh caches per fixture: fixtures never see each other's state.
    let caches = memory_caches(settings);
    let failures = fold_records(settings, definitions.to_vec(), &caches, &records)
        .await
        .map_err(|error| vec![format!("{}: {error}", folder.display())])?;
    let actual: BTreeMap<String, Value> = stored(caches[&cache_name].as_ref(), &projection)
        .await
        .map_err(|error| vec![error.to_string()])?
        .into_iter()
        .collect();
    Ok(FixtureReport {
        mismatches: compare(&expected, &actual),
        failures: failures.iter().map(describe).collect(),
        projection,
    })
}

/// Every difference between expected and actual projections, readably.
pub fn compare(
    expected: &BTreeMap<String, Value>,
    actual: &BTreeMap<String, Value>,
) -> Vec<String> {
    let mut mismatches = Vec::new();
    for (key, want) in expected {
        match actual.get(key) {
            None => mismatches.push(format!("{key}: expected but absent")),
            Some(got) if got != want => {
                let (want, got) = (pretty(want), pretty(got));
                let diff = TextDiff::from_lines(&want, &got)
                    .unified_diff()
                    .header("expected", "actual")
                    .to_string();
                mismatches.push(format!("{key}: differs\n{diff}"));
            }
            Some(_) => {}
        }
    }
    for (key, got) in actual {
        if !expected.contains_key(key) {
            mismatches.push(format!("{key}: present but not expected:\n{}", pretty(got)));
        }
    }
    mismatches
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}
