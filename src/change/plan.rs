//! The run's change log: every change, in plan order, with what became of it.
//!
//! Plan order is the order in which the workflow asked for the changes, read as if it ran
//! sequentially: the changes of `parallel`'s item 0 come before those of item 1, whichever
//! worker thread finished first. Each change gets a [`Position`]: the positions of the
//! `parallel` groups and items it is inside, then a run-wide sequence number. Sorting by
//! position gives plan order; under `--dry-run` a change outside any `parallel` is printed at
//! once, the changes of a top-level group when the group ends.

use std::cell::RefCell;
use std::fmt::Display;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Change;

/// Where a change stands in the plan; compared element by element.
pub type Position = Vec<u64>;

thread_local! {
    /// The group and item the current thread works on (empty outside `parallel`).
    static CURRENT: RefCell<Position> = const { RefCell::new(Vec::new()) };
}

/// What became of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded under `--dry-run`, not made.
    Planned,
    /// Made.
    Made,
    /// Attempted and failed, with the error.
    Failed(String),
}

/// The answer of [`ChangeLog::apply`]: the change was only planned, or made with a result.
#[derive(Debug)]
pub enum Applied<T> {
    Planned,
    Made(T),
}

/// One change of the plan.
#[derive(Debug, Clone)]
pub struct Entry {
    pub position: Position,
    /// The VM or host the change concerns, as the workflow names it.
    pub item: Option<String>,
    pub change: Change,
    pub outcome: Outcome,
    printed: bool,
}

impl Entry {
    /// The dry-run line: `pve1/101 web: would POST /nodes/pve1/qemu/101/status/start`.
    pub fn line(&self) -> String {
        let verb = match &self.outcome {
            Outcome::Planned => "would",
            Outcome::Made => "did",
            Outcome::Failed(_) => "failed to",
        };
        match &self.item {
            Some(item) => format!("{item}: {verb} {}", self.change),
            None => format!("{verb} {}", self.change),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut v = self.change.to_json();
        let (outcome, error) = match &self.outcome {
            Outcome::Planned => ("planned", None),
            Outcome::Made => ("made", None),
            Outcome::Failed(e) => ("failed", Some(e.as_str())),
        };
        if let Some(map) = v.as_object_mut() {
            map.insert("item".into(), self.item.clone().into());
            map.insert("outcome".into(), outcome.into());
            if let Some(e) = error {
                map.insert("error".into(), e.into());
            }
        }
        v
    }
}

/// How many changes a run planned, made and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub planned: usize,
    pub made: usize,
    pub failed: usize,
}

type Printer = Box<dyn Fn(&Entry) + Send + Sync>;

/// The run's changes. Shared by every thread of the run.
pub struct ChangeLog {
    dry_run: bool,
    seq: AtomicU64,
    entries: Mutex<Vec<Entry>>,
    /// Shows a planned change (dry run) when its turn in plan order has come.
    printer: Printer,
}

impl ChangeLog {
    pub fn new(dry_run: bool, printer: impl Fn(&Entry) + Send + Sync + 'static) -> ChangeLog {
        ChangeLog { dry_run, seq: AtomicU64::new(0), entries: Mutex::new(Vec::new()), printer: Box::new(printer) }
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The one door: under `--dry-run` records `change` as planned and returns
    /// [`Applied::Planned`] without calling `perform`; otherwise records it, calls `perform`
    /// and records whether it succeeded.
    ///
    /// # Errors
    /// What `perform` returned (recorded as the change's failure).
    pub fn apply<T, E: Display>(
        &self,
        item: Option<&str>,
        change: Change,
        perform: impl FnOnce(&Change) -> Result<T, E>,
    ) -> Result<Applied<T>, E> {
        let position = self.next_position();
        let top_level = position.len() == 1;
        if self.dry_run {
            self.push(Entry {
                position,
                item: item.map(String::from),
                change,
                outcome: Outcome::Planned,
                printed: false,
            });
            if top_level {
                self.flush();
            }
            return Ok(Applied::Planned);
        }
        tracing::debug!(item = item.unwrap_or(""), "change: {change}");
        let result = perform(&change);
        let outcome = match &result {
            Ok(_) => Outcome::Made,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        self.push(Entry { position, item: item.map(String::from), change, outcome, printed: true });
        result.map(Applied::Made)
    }

    /// Starts a group of parallel items; returns the group's position, which each item's
    /// worker passes to [`ChangeLog::in_item`].
    pub fn begin_group(&self) -> Position {
        self.next_position()
    }

    /// Runs `f` as item `index` of `group` on the current (worker) thread.
    pub fn in_item<R>(group: &Position, index: usize, f: impl FnOnce() -> R) -> R {
        let mut position = group.clone();
        position.push(index as u64);
        let before = CURRENT.with(|c| c.replace(position));
        let result = f();
        CURRENT.with(|c| *c.borrow_mut() = before);
        result
    }

    /// Ends a group: a top-level group's planned changes are printed now, in plan order.
    pub fn end_group(&self, group: &Position) {
        if group.len() == 1 {
            self.flush();
        }
    }

    /// Prints every planned change not printed yet, in plan order.
    pub fn flush(&self) {
        let mut entries = self.entries.lock().expect("not poisoned");
        let mut waiting: Vec<usize> = (0..entries.len()).filter(|i| !entries[*i].printed).collect();
        waiting.sort_by(|a, b| entries[*a].position.cmp(&entries[*b].position));
        for i in waiting {
            (self.printer)(&entries[i]);
            entries[i].printed = true;
        }
    }

    /// Every change so far, in plan order.
    pub fn entries(&self) -> Vec<Entry> {
        let mut entries = self.entries.lock().expect("not poisoned").clone();
        entries.sort_by(|a, b| a.position.cmp(&b.position));
        entries
    }

    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for e in self.entries.lock().expect("not poisoned").iter() {
            match e.outcome {
                Outcome::Planned => counts.planned += 1,
                Outcome::Made => counts.made += 1,
                Outcome::Failed(_) => counts.failed += 1,
            }
        }
        counts
    }

    fn next_position(&self) -> Position {
        let mut position = CURRENT.with(|c| c.borrow().clone());
        position.push(self.seq.fetch_add(1, Ordering::Relaxed));
        position
    }

    fn push(&self, entry: Entry) {
        self.entries.lock().expect("not poisoned").push(entry);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::change::{LocalFile, RemoteCommand};

    fn cmd(host: &str) -> Change {
        Change::Command(RemoteCommand { host: host.into(), command: "true".into(), sudo: false, stdin_len: None })
    }

    fn recorder(dry_run: bool) -> (Arc<ChangeLog>, Arc<Mutex<Vec<String>>>) {
        let printed = Arc::new(Mutex::new(Vec::new()));
        let p = printed.clone();
        (Arc::new(ChangeLog::new(dry_run, move |e| p.lock().unwrap().push(e.line()))), printed)
    }

    #[test]
    fn a_dry_run_records_without_performing_and_prints_in_plan_order_whatever_finishes_first() {
        let (log, printed) = recorder(true);
        log.apply(None, cmd("first"), |_| -> Result<(), String> { panic!("not performed") }).unwrap();
        let group = log.begin_group();
        std::thread::scope(|s| {
            for i in (0..4).rev() {
                let (log, group) = (log.clone(), group.clone());
                s.spawn(move || {
                    // Later items finish first.
                    std::thread::sleep(std::time::Duration::from_millis(10 * (4 - i as u64)));
                    ChangeLog::in_item(&group, i, || {
                        log.apply(Some(&format!("item{i}")), cmd(&format!("h{i}a")), |_| Ok::<_, String>(())).unwrap();
                        log.apply(Some(&format!("item{i}")), cmd(&format!("h{i}b")), |_| Ok::<_, String>(())).unwrap();
                    });
                });
            }
        });
        assert_eq!(printed.lock().unwrap().len(), 1, "a group's changes wait for its end");
        log.end_group(&group);
        log.apply(None, cmd("last"), |_| Ok::<_, String>(())).unwrap();
        let hosts: Vec<String> =
            printed.lock().unwrap().iter().map(|l| l.split_whitespace().last().unwrap().to_string()).collect();
        let lines = printed.lock().unwrap().clone();
        assert_eq!(lines.len(), 10, "{lines:?}");
        assert!(lines[1].starts_with("item0: would run on h0a"), "{lines:?}");
        assert!(lines[2].starts_with("item0: would run on h0b"), "{lines:?}");
        assert!(lines[7].starts_with("item3: would run on h3a"), "{lines:?}");
        assert!(lines[9].starts_with("would run on last"), "{lines:?}");
        assert_eq!(hosts.len(), 10);
        assert_eq!(log.counts(), Counts { planned: 10, made: 0, failed: 0 });
        assert_eq!(log.entries().len(), 10);
    }

    #[test]
    fn a_real_run_performs_and_records_success_and_failure() {
        let (log, printed) = recorder(false);
        let made = log.apply(Some("vm"), cmd("a"), |_| Ok::<_, String>(7)).unwrap();
        assert!(matches!(made, Applied::Made(7)));
        let err = log
            .apply(
                Some("vm"),
                Change::LocalFile(LocalFile { path: "/x".into(), mode: 0o600, size: 1, what: None }),
                |_| Err::<(), _>("disk full".to_string()),
            )
            .unwrap_err();
        assert_eq!(err, "disk full");
        log.flush();
        assert!(printed.lock().unwrap().is_empty(), "a real run prints no plan");
        assert_eq!(log.counts(), Counts { planned: 0, made: 1, failed: 1 });
        assert_eq!(log.entries()[1].to_json()["error"], "disk full");
    }
}
