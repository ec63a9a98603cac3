//! Golden history: the stored data of every event type at every schema version it was ever
//! written at, read back by the current code.
//!
//! `tests/fixtures/events/{EventType}.v{N}.json` is the `data` of one real event of that type
//! as stored at schema version `N`. Those files are history: once an event has been stored at a
//! version, its fixture is never edited, only added to. All the fixtures of one type are the
//! same event, as it was stored at each version (`X.v2.json` is `X.v1.json` as the code at v2
//! stores it), so each upcaster is checked against a known answer.
//!
//! Every fixture is read as recorded at [`RECORDED_AT`]: half past midnight on 1 July 2025 in
//! Hong Kong, still 30 June in UTC. An upcaster that dates an old event by the day it was
//! recorded (the types that gained a business date in v2) must take the Hong Kong day, so their
//! `v2` fixtures hold 2025-07-01; the UTC day would upcast them to another event.
//!
//! These tests fail when
//! - stored data of some (type, version) no longer decodes, or no longer folds;
//! - an event type has no fixture for one of its versions up to the current one, or a fixture
//!   names a type the code no longer knows;
//! - the current code would store an event differently from the fixture at its version
//!   (changing the stored shape needs a new schema version and an upcaster);
//! - an upcaster turns old data into a different event than the one it was;
//! - unknown versions, or old data missing what its upcaster needs, are accepted;
//! - old data already holding a field its upcaster adds is accepted (and the field overwritten
//!   or kept, either way not what was stored at that version).

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use aisc_domain::codec::{CodecError, EventCodec, StoredContext};
use aisc_domain::command_service::Aggregate;
use aisc_domain::subsidy::application::Application;
use aisc_domain::subsidy::batches::BatchCalendar;
use aisc_domain::subsidy::capacity::Capacity;
use aisc_domain::subsidy::data_subjects::DataSubject;
use aisc_domain::subsidy::events::SchemeEvent;
use aisc_domain::subsidy::funding::FundingYear;
use aisc_domain::subsidy::prices::PriceSchedule;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

/// The fixtures' folder, as a reader of a failure message finds it from the workspace root.
const FOLDER: &str = "domain/tests/fixtures/events";

/// When every fixture's event is taken to have been recorded: 2025-06-30T16:30:00Z, which is
/// 2025-07-01 00:30 in Hong Kong (UTC+8).
const RECORDED_AT: &str = "2025-06-30T16:30:00Z";

/// The Hong Kong day of [`RECORDED_AT`]: the business date an upcaster gives an old event
/// that did not store one.
const RECORDED_ON: &str = "2025-07-01";

/// What is known of each fixture besides its data, as the store would pass it to the codec.
fn recorded() -> StoredContext {
    let recorded_at: DateTime<Utc> = RECORDED_AT.parse().expect("an RFC 3339 time");
    StoredContext::new(recorded_at)
}

/// One fixture file: the stored data of an event of `event_type` at `version`.
struct Fixture {
    file: String,
    event_type: String,
    version: u32,
    data: Value,
}

impl Fixture {
    fn decode(&self) -> Result<SchemeEvent, CodecError> {
        SchemeEvent::from_stored(&self.event_type, self.version, &self.data, recorded())
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events")
}

fn fixture_name(event_type: &str, version: u32) -> String {
    format!("{FOLDER}/{event_type}.v{version}.json")
}

/// Every fixture, by type and then version. Files not ending in `.json` are ignored; a `.json`
/// file whose name is not `{EventType}.v{N}.json`, or which does not hold JSON, fails the test.
fn fixtures() -> BTreeMap<String, BTreeMap<u32, Fixture>> {
    let dir = fixture_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()));
    let mut fixtures: BTreeMap<String, BTreeMap<u32, Fixture>> = BTreeMap::new();
    for entry in entries {
        let path = entry.unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display())).path();
        let file_name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_string();
        let Some(stem) = file_name.strip_suffix(".json") else { continue };
        let file = format!("{FOLDER}/{file_name}");
        let (event_type, version) = stem
            .rsplit_once(".v")
            .and_then(|(event_type, version)| Some((event_type.to_string(), version.parse::<u32>().ok()?)))
            .unwrap_or_else(|| {
                panic!("{file}: rename it {{EventType}}.v{{N}}.json, N being the schema version it was stored at")
            });
        let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{file}: cannot read it: {error}"));
        let data: Value = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{file}: not JSON ({error}); it must hold the stored `data` of one event"));
        fixtures.entry(event_type.clone()).or_default().insert(version, Fixture { file, event_type, version, data });
    }
    assert!(!fixtures.is_empty(), "no fixtures found in {}", dir.display());
    fixtures
}

/// Fails with every problem found, one a line, rather than with the first.
#[track_caller]
fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n- {}\n", problems.join("\n- "));
}

/// Where two JSON values differ, one line per differing path (`/key/0/key`): `expected` then
/// `actual`.
fn differences(expected: &Value, actual: &Value) -> String {
    fn walk(path: String, expected: Option<&Value>, actual: Option<&Value>, lines: &mut Vec<String>) {
        match (expected, actual) {
            (Some(Value::Object(expected)), Some(Value::Object(actual))) => {
                let keys: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
                for key in keys {
                    walk(format!("{path}/{key}"), expected.get(key), actual.get(key), lines);
                }
            }
            (Some(Value::Array(expected)), Some(Value::Array(actual))) => {
                for index in 0..expected.len().max(actual.len()) {
                    walk(format!("{path}/{index}"), expected.get(index), actual.get(index), lines);
                }
            }
            (expected, actual) if expected != actual => {
                let show = |value: Option<&Value>| value.map_or_else(|| "(absent)".to_string(), Value::to_string);
                let path = if path.is_empty() { "/" } else { &path };
                lines.push(format!("    {path}: {} then {}", show(expected), show(actual)));
            }
            _ => {}
        }
    }
    let mut lines = Vec::new();
    walk(String::new(), Some(expected), Some(actual), &mut lines);
    lines.join("\n")
}

/// Folds one event into the default state of its aggregate, as loading its stream would.
fn fold(event: &SchemeEvent) {
    match event {
        SchemeEvent::Application(event) => {
            let _ = Application::apply(Default::default(), event);
        }
        SchemeEvent::Batch(event) => {
            let _ = BatchCalendar::apply(Default::default(), event);
        }
        SchemeEvent::Capacity(event) => {
            let _ = Capacity::apply(Default::default(), event);
        }
        SchemeEvent::DataSubject(event) => {
            let _ = DataSubject::apply(Default::default(), event);
        }
        SchemeEvent::Funding(event) => {
            let _ = FundingYear::apply(Default::default(), event);
        }
        SchemeEvent::Price(event) => {
            let _ = PriceSchedule::apply(Default::default(), event);
        }
    }
}

/// The current schema version of every type with a fixture that decodes: what the code writes.
fn current_versions(fixtures: &BTreeMap<String, BTreeMap<u32, Fixture>>) -> BTreeMap<String, u32> {
    fixtures
        .iter()
        .filter_map(|(event_type, versions)| {
            let event = versions.values().find_map(|fixture| fixture.decode().ok())?;
            Some((event_type.clone(), event.schema_version()))
        })
        .collect()
}

#[test]
fn every_fixture_decodes_and_folds_into_its_aggregate() {
    let fixtures = fixtures();
    let current = current_versions(&fixtures);
    let known: BTreeSet<&str> = SchemeEvent::event_types().collect();
    let mut problems = Vec::new();
    for fixture in fixtures.values().flat_map(BTreeMap::values) {
        let file = &fixture.file;
        let event = match fixture.decode() {
            Ok(event) => event,
            Err(error) => {
                let what_to_do = if !known.contains(fixture.event_type.as_str()) {
                    "the type is gone (see every_event_type_has_a_fixture_for_each_of_its_versions_and_every_fixture_\
                     names_a_type)"
                        .to_string()
                } else if current.get(&fixture.event_type).is_some_and(|current| fixture.version > *current) {
                    "the fixture is at a version newer than the code writes".to_string()
                } else {
                    format!(
                        "stored data is never rewritten: make the code read it again (the type's payload struct, or \
                         its upcaster from v{} in EventPayload::upcast)",
                        fixture.version
                    )
                };
                problems.push(format!("{file}: {error}; {what_to_do}"));
                continue;
            }
        };
        if event.event_type() != fixture.event_type {
            problems.push(format!("{file}: decoded as a {}, not a {}", event.event_type(), fixture.event_type));
        }
        if catch_unwind(AssertUnwindSafe(|| fold(&event))).is_err() {
            problems.push(format!(
                "{file}: folding it into the default state of its aggregate panicked (see above); apply must not fail"
            ));
        }
    }
    assert_no_problems("stored events the current code cannot read", &problems);
}

#[test]
fn every_event_type_has_a_fixture_for_each_of_its_versions_and_every_fixture_names_a_type() {
    let fixtures = fixtures();
    let current = current_versions(&fixtures);
    let known: BTreeSet<&str> = SchemeEvent::event_types().collect();
    let mut problems = Vec::new();
    if known.len() != SchemeEvent::event_types().count() {
        let mut seen = BTreeSet::new();
        for event_type in SchemeEvent::event_types().filter(|event_type| !seen.insert(*event_type)) {
            problems.push(format!(
                "{event_type} is the type name of events of two aggregates: stored data must name one payload; \
                 rename the new one"
            ));
        }
    }
    for event_type in &known {
        let Some(versions) = fixtures.get(*event_type) else {
            problems.push(format!(
                "{event_type} has no fixture: add {FOLDER}/{event_type}.vN.json for N from 1 to its schema version: \
                 the stored data of a real event of that type at each version"
            ));
            continue;
        };
        let Some(&current) = current.get(*event_type) else {
            problems.push(format!(
                "{event_type}: none of its fixtures decodes (see every_fixture_decodes_and_folds_into_its_aggregate)"
            ));
            continue;
        };
        for version in (1..=current).filter(|version| !versions.contains_key(version)) {
            let hint = if version == current && versions.contains_key(&(version - 1)) {
                format!(
                    ": the stored data of a real event at that version; for a new version, the v{} fixture's event, read \
                     as recorded at {RECORDED_AT}, as the current code stores it (EventCodec::to_data)",
                    version - 1
                )
            } else {
                ": the stored data of a real event at that version".to_string()
            };
            problems.push(format!(
                "{event_type} is at schema version {current}: add {}{hint}",
                fixture_name(event_type, version)
            ));
        }
        for version in versions.keys().filter(|version| **version > current) {
            problems.push(format!(
                "{}: the code writes {event_type} at schema version {current}, not {version}: raise its SCHEMA_VERSION \
                 (and teach its upcaster the step), or remove the fixture if that version was never stored",
                fixture_name(event_type, *version)
            ));
        }
    }
    for (event_type, versions) in &fixtures {
        if !known.contains(event_type.as_str()) {
            for fixture in versions.values() {
                problems.push(format!(
                    "{}: {event_type} is not an event type of the scheme (SchemeEvent::event_types()). Stored events \
                     of that type cannot be read any more: keep the type (its name is stored), or delete the fixture \
                     only if no such event was ever stored",
                    fixture.file
                ));
            }
        }
    }
    assert_no_problems("event types and fixtures out of step", &problems);
}

#[test]
fn the_current_code_stores_each_event_exactly_as_its_fixture_at_the_current_version() {
    let mut problems = Vec::new();
    for fixture in fixtures().values().flat_map(BTreeMap::values) {
        let Ok(event) = fixture.decode() else { continue };
        if event.schema_version() != fixture.version {
            continue;
        }
        match event.to_data() {
            Ok(data) if data == fixture.data => {}
            Ok(data) => problems.push(format!(
                "{}: the current code stores this {} at schema version {} differently (path: fixture, then current \
                 code):\n{}\n  The stored shape of a version never changes: restore it, or raise the type's \
                 SCHEMA_VERSION to {}, teach its upcaster the step and add {} (this fixture's event as the new code \
                 stores it)",
                fixture.file,
                fixture.event_type,
                fixture.version,
                differences(&fixture.data, &data),
                fixture.version + 1,
                fixture_name(&fixture.event_type, fixture.version + 1),
            )),
            Err(error) => problems.push(format!("{}: cannot encode it again: {error}", fixture.file)),
        }
    }
    assert_no_problems("events the current code would store differently", &problems);
}

#[test]
fn older_versions_upcast_to_the_same_event_as_the_fixture_at_the_current_version() {
    let fixtures = fixtures();
    let current = current_versions(&fixtures);
    let mut problems = Vec::new();
    let mut compared = 0;
    for (event_type, versions) in &fixtures {
        let Some(latest) = current.get(event_type).and_then(|version| versions.get(version)) else { continue };
        let Ok(expected) = latest.decode() else { continue };
        for older in versions.values().filter(|fixture| fixture.version < latest.version) {
            compared += 1;
            match older.decode() {
                Ok(event) if event == expected => {}
                Ok(event) => problems.push(format!(
                    "{} upcasts to another event than {} (path: v{} fixture, then v{} fixture upcast; as the current \
                     code stores them):\n{}\n  Fix the upcaster of {event_type} from v{}; the fixtures of one type are \
                     one event, as stored at each version",
                    older.file,
                    latest.file,
                    latest.version,
                    older.version,
                    differences(&expected.to_data().unwrap_or_default(), &event.to_data().unwrap_or_default()),
                    older.version
                )),
                Err(error) => problems.push(format!("{}: {error}", older.file)),
            }
        }
    }
    assert_no_problems("upcasters that change the event", &problems);
    assert!(compared > 0, "no type has fixtures at two versions; the five application events moved to v2 should");
}

#[test]
fn data_at_a_version_this_code_does_not_know_is_refused_naming_the_version() {
    let fixtures = fixtures();
    let current = current_versions(&fixtures);
    let mut problems = Vec::new();
    for (event_type, version) in &current {
        let Some(fixture) = fixtures[event_type].get(version) else { continue };
        for unknown in [0, version + 1] {
            match SchemeEvent::from_stored(event_type, unknown, &fixture.data, recorded()) {
                Ok(event) => problems.push(format!(
                    "{event_type} at schema version {unknown} (the data of {}) was accepted as {event:?}; the code \
                     writes v{version} and must refuse versions it does not know",
                    fixture.file
                )),
                Err(error) => {
                    let message = error.to_string();
                    if error.event_type != *event_type || !message.contains(&format!("schema version {unknown}")) {
                        problems.push(format!(
                            "{event_type} at schema version {unknown} was refused with \"{message}\", which should \
                             name the type and \"schema version {unknown}\""
                        ));
                    }
                }
            }
        }
    }
    assert_no_problems("unknown schema versions", &problems);

    let data = Value::Object(serde_json::Map::new());
    let error = SchemeEvent::from_stored("NoSuchEvent", 1, &data, recorded()).map(|event| format!("{event:?}"));
    assert!(
        matches!(&error, Err(error) if error.event_type == "NoSuchEvent"),
        "an unknown event type must be refused naming it, got {error:?}"
    );
}

#[test]
fn old_data_missing_what_its_upcaster_needs_is_refused_not_defaulted() {
    let fixtures = fixtures();
    let current = current_versions(&fixtures);
    let mut problems = Vec::new();
    let mut checked = 0;
    for (event_type, versions) in &fixtures {
        let Some(latest) = current.get(event_type).and_then(|version| versions.get(version)) else { continue };
        let Some(latest_fields) = latest.data.as_object() else { continue };
        for older in versions.values().filter(|fixture| fixture.version < latest.version) {
            let Some(older_fields) = older.data.as_object() else { continue };
            // The objects an older version nested and the current one no longer has (flattened).
            let nested =
                older_fields.iter().filter(|(key, value)| value.is_object() && !latest_fields.contains_key(*key));
            for (key, _) in nested {
                checked += 1;
                let mut without = older.data.clone();
                if let Some(fields) = without.as_object_mut() {
                    fields.remove(key);
                }
                let mut not_an_object = older.data.clone();
                not_an_object[key] = Value::Null;
                for (how, data) in [("without", without), ("with a null", not_an_object)] {
                    match SchemeEvent::from_stored(event_type, older.version, &data, recorded()) {
                        Ok(event) => problems.push(format!(
                            "{} {how} `{key}` was accepted as {event:?}; its upcaster must refuse it rather than \
                             default what is missing",
                            older.file
                        )),
                        Err(error) if !error.to_string().contains(key.as_str()) => problems.push(format!(
                            "{} {how} `{key}` was refused with \"{error}\", which should name `{key}`",
                            older.file
                        )),
                        Err(_) => {}
                    }
                }
            }
        }
    }
    assert_no_problems("old data accepted though incomplete", &problems);
    assert!(checked > 0, "no older fixture nests an object its current version flattens; the v1 application events do");
}

#[test]
fn the_fixtures_are_read_as_recorded_on_a_day_that_differs_in_utc_and_in_hong_kong() {
    let context = recorded();
    let hong_kong_day: NaiveDate = RECORDED_ON.parse().expect("a date");
    assert_eq!(context.recorded_on(), hong_kong_day, "the Hong Kong day of {RECORDED_AT}");
    assert_ne!(
        context.recorded_at.date_naive(),
        hong_kong_day,
        "{RECORDED_AT} must fall on another day in UTC than in Hong Kong, or the fixtures would not show which one \
         an upcaster takes"
    );
}

#[test]
fn old_data_already_holding_a_field_its_upcaster_adds_is_refused_not_overwritten() {
    let fixtures = fixtures();
    let current = current_versions(&fixtures);
    let mut problems = Vec::new();
    let mut checked = 0;
    for (event_type, versions) in &fixtures {
        let Some(latest) = current.get(event_type).and_then(|version| versions.get(version)) else { continue };
        let Some(latest_fields) = latest.data.as_object() else { continue };
        for older in versions.values().filter(|fixture| fixture.version < latest.version) {
            let Some(older_fields) = older.data.as_object() else { continue };
            // The fields the current version has and the older one did not (added, or moved up
            // out of a nested object): data at the older version cannot have held them.
            for (key, value) in latest_fields.iter().filter(|(key, _)| !older_fields.contains_key(*key)) {
                checked += 1;
                let mut with = older.data.clone();
                with[key] = value.clone();
                match SchemeEvent::from_stored(event_type, older.version, &with, recorded()) {
                    Ok(event) => problems.push(format!(
                        "{} with `{key}` set was accepted as {event:?}; its upcaster must refuse data it would \
                         overwrite or that the version never held",
                        older.file
                    )),
                    Err(error) if !error.to_string().contains(key.as_str()) => problems.push(format!(
                        "{} with `{key}` set was refused with \"{error}\", which should name `{key}`",
                        older.file
                    )),
                    Err(_) => {}
                }
            }
        }
    }
    assert_no_problems("old data accepted though it holds what its upcaster adds", &problems);
    assert!(checked > 0, "no older fixture lacks a field of its current version; the v1 events that gained a date do");
}
