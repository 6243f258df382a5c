//! Table-driven tests that run every case and report every failing case by name, with its reason (issue 24:
//! one bad case must not hide the others).

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A row of a table: its name says what it tries, and is how a failure is reported and a run is filtered.
pub trait Case {
    fn name(&self) -> &'static str;
}

/// Set to part of a case name to run only the cases whose names contain it, in every table (the table's test
/// still has to be selected: `MLFLOW_OIDC_TEST_CASE='toml: dup' cargo test --test bad_input configuration`).
pub const FILTER: &str = "MLFLOW_OIDC_TEST_CASE";

/// Run `run` on every case of `table`, each under `catch_unwind`, then fail naming every case that failed with the
/// first line of its panic message (the full message and backtrace are above it in the captured output).
/// Names must be unique, and the table must have at least `at_least` cases, filtered or not: a row lost in an edit
/// is noticed. Only the rows named by [`FILTER`] run when it is set.
// The filter is the developer's, read here rather than in every table; the note says the run is partial.
#[allow(clippy::disallowed_methods)]
pub fn run_every<C: Case>(table: &str, at_least: usize, cases: Vec<C>, run: impl Fn(&C)) {
    let filter = std::env::var(FILTER).ok().filter(|f| !f.is_empty());
    run_matching(table, at_least, cases, filter.as_deref(), run);
}

/// [`run_every`] with the filter given: only the rows whose names contain `filter` run.
#[allow(clippy::print_stderr)]
pub fn run_matching<C: Case>(table: &str, at_least: usize, cases: Vec<C>, filter: Option<&str>, run: impl Fn(&C)) {
    let name = |c: &C| c.name();
    let total = cases.len();
    assert!(total >= at_least, "{table}: {total} cases, fewer than the {at_least} it had");
    let mut names = BTreeSet::new();
    for c in &cases {
        assert!(names.insert(name(c)), "{table}: duplicate case name {:?}", name(c));
    }
    let chosen: Vec<C> = cases.into_iter().filter(|c| filter.is_none_or(|f| name(c).contains(f))).collect();
    if let Some(f) = filter {
        eprintln!("{table}: running {} of {total} cases ({FILTER}={f:?})", chosen.len());
    }
    let ran = chosen.len();
    let mut failed = Vec::new();
    for c in &chosen {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| run(c))) {
            let why = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(a panic without a message)");
            // The first line says which property failed; assert_eq!'s values follow the (long) stderr dump.
            let mut lines = why.lines();
            let mut said = lines.next().unwrap_or("").to_string();
            for l in lines.filter(|l| l.starts_with("  left: ") || l.starts_with(" right: ")) {
                said.push_str(&format!("\n      {}", l.trim_start()));
            }
            failed.push(format!("  `{}`: {said}", name(c)));
        }
    }
    assert!(failed.is_empty(), "{table}: {} of {ran} cases failed:\n{}", failed.len(), failed.join("\n"));
    eprintln!("{table}: {ran} cases passed");
}
