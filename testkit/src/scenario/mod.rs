//! The conformance scenario format (spec/scenario-format.md): parsing a scenario file, running
//! it against replicas, and checking the result.
//!
//! A scenario names a number of clients, a list of steps (local transactions, uploads,
//! downloads, syncs) and optionally the state the server must end in. The runner executes the
//! steps, performs a closing full sync, checks that every client equals the server, and compares
//! the server's state with "expect". [`run`] returns an [`Outcome`] that the example binary maps
//! to exit codes 0 (pass), 1 (divergence or mismatch) and 2 (malformed scenario);
//! [`run_with_feed`] also returns the server's Adapter feed, which the binary prints with
//! `--feed`.

mod expect;
mod follow;
mod parse;
mod view;
mod world;

pub use parse::{parse, Scenario, Step, Who, EXPECTABLE_ERRORS};
pub use view::{readable_state, without_empty_types};

use objsync::feed::{FeedError, FeedTransaction};
use objsync::json::{canonical, state_json};
use objsync::permissions;
use objsync::sync::ResetCause;
use objsync::Store;
use serde_json::Value as Json;
use std::fmt;
use world::World;

/// The result of running one scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every check passed; the final server state.
    Pass(Json),
    /// A divergence or an "expect" mismatch: the final server state and a readable report.
    Fail {
        /// The server's final state.
        state: Json,
        /// What differed, one finding per line.
        report: String,
    },
    /// The scenario itself is invalid; the reason in one line.
    Malformed(String),
}

impl Outcome {
    /// The runner's exit status for this outcome: 0, 1 or 2.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Pass(_) => 0,
            Outcome::Fail { .. } => 1,
            Outcome::Malformed(_) => 2,
        }
    }
}

/// A malformed scenario: the one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn malformed<T>(msg: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed(msg.into()))
}

/// Runs a parsed scenario once. With `order` (a permutation of 1..=clients) the clients inside
/// every sync step, and in the closing sync, are visited in that order; without it, in the order
/// the step lists them (and 1..=n for the closing sync).
/// The transactions a run's feed handed out, or the error that stopped it.
type Fed = Result<Vec<FeedTransaction>, FeedError>;

fn run_once(
    scenario: &Scenario,
    order: Option<&[usize]>,
    follow: bool,
) -> Result<(Outcome, Option<Fed>), Malformed> {
    let natural: Vec<usize> = (1..=scenario.clients).collect();
    let rank = |k: &usize| order.and_then(|o| o.iter().position(|x| x == k));
    let mut world = World::new(scenario, follow);
    for step in &scenario.steps {
        world.follow();
        match step {
            Step::Tx { client, time, ops } => world.tx(scenario, *client, *time, ops)?,
            Step::Upload(k) => {
                world.upload(*k);
            }
            Step::Download { client, count } => {
                world.download(*client, *count);
            }
            Step::Sync(list) => {
                let mut list = list.clone();
                if order.is_some() {
                    list.sort_by_key(rank);
                }
                for k in &list {
                    world.upload(*k);
                }
                for k in &list {
                    world.download(*k, None);
                }
            }
            Step::Restart(who) => world.restart(*who),
            Step::Compact => {
                world.server.compact();
            }
            Step::Bootstrap(k) => world.bootstrap(*k)?,
            Step::Trim => {
                let latest = world.server.version();
                world.server.trim(latest);
            }
            Step::Reset { client, mode } => {
                world.reset(*client, *mode, ResetCause::Requested);
            }
            Step::Backup => world.backup(),
            Step::Restore => world.restore()?,
        }
    }
    // The closing full sync: bounded, since every round that moves something integrates at
    // least one changeset and there are finitely many.
    let order = order.unwrap_or(&natural);
    for _ in 0..=(2 * scenario.steps.len() + 2) {
        let mut moved = false;
        for k in order {
            moved |= world.upload(*k);
        }
        for k in order {
            moved |= world.download(*k, None);
        }
        if !moved {
            break;
        }
    }
    world.follow();
    let server_state =
        state_json(world.server.replica().store()).map_err(|e| Malformed(e.to_string()))?;
    let mut findings = Vec::new();
    for (i, c) in world.clients.iter().enumerate() {
        if world.stopped(i + 1) {
            continue;
        }
        let s = state_json(c.replica().store()).map_err(|e| Malformed(e.to_string()))?;
        let (s, server) = match world
            .server
            .replica()
            .store()
            .schema()
            .contains(permissions::PERMISSION)
        {
            false => (s, server_state.clone()),
            true => (
                view::without_empty_types(s),
                view::readable_state(&world.server, &world.identities[i])?,
            ),
        };
        if s != server {
            findings.push(format!(
                "client {} diverged from the server's state as its user may read it:\n  client {}\n  server {}",
                i + 1,
                canonical(&s),
                canonical(&server)
            ));
        }
    }
    for (k, expect) in &scenario.expect_client {
        let store = world.clients[k - 1].replica().store();
        let state = state_json(store).map_err(|e| Malformed(e.to_string()))?;
        let expect = view::present_types(expect, store.schema());
        let found = expect::compare(&state, &expect, store.schema());
        findings.extend(found.into_iter().map(|f| format!("client {k}: {f}")));
    }
    if let Some(expect) = &scenario.expect {
        findings.extend(expect::compare(
            &server_state,
            expect,
            world.server.replica().store().schema(),
        ));
    }
    match &scenario.expect_error {
        Some(err) => {
            if !world.errors.iter().any(|e| &e.1 == err) {
                findings.push(format!("expected error \"{err}\" did not occur"));
            }
        }
        None => {
            for (client, _, msg) in &world.errors {
                findings.push(format!("client {client}: unexpected error: {msg}"));
            }
        }
    }
    let outcome = if findings.is_empty() {
        Outcome::Pass(server_state)
    } else {
        Outcome::Fail {
            state: server_state,
            report: findings.join("\n"),
        }
    };
    Ok((outcome, world.follower.map(follow::Follower::finish)))
}

/// Every permutation of 1..=n, in lexicographic order.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut p: Vec<usize> = (1..=n).collect();
    loop {
        out.push(p.clone());
        // Next lexicographic permutation.
        let Some(i) = (1..n).rev().find(|&i| p[i - 1] < p[i]) else {
            return out;
        };
        let j = (i..n).rev().find(|&j| p[j] > p[i - 1]).unwrap_or(i);
        p.swap(i - 1, j);
        p[i..].reverse();
    }
}

/// Most clients whose orders `permute` enumerates (8! = 40,320 runs).
pub const MAX_PERMUTED_CLIENTS: usize = 8;

/// Runs a parsed scenario: once, or once per permutation of the client order.
pub fn run_scenario(scenario: &Scenario) -> Outcome {
    run_following(scenario, false).0
}

/// [`run_scenario`], with the feed of the first run if `follow` (when the scenario is not
/// malformed).
fn run_following(scenario: &Scenario, follow: bool) -> (Outcome, Option<Fed>) {
    let orders: Vec<Option<Vec<usize>>> = if scenario.permute {
        if scenario.clients > MAX_PERMUTED_CLIENTS {
            let m = format!("permute is limited to {MAX_PERMUTED_CLIENTS} clients");
            return (Outcome::Malformed(m), None);
        }
        permutations(scenario.clients)
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None]
    };
    let mut first: Option<(Option<Vec<usize>>, Json)> = None;
    let mut fed = None;
    for order in orders {
        // Only the first run's feed is kept.
        let follow = follow && fed.is_none();
        let outcome = match run_once(scenario, order.as_deref(), follow) {
            Ok((o, f)) => {
                fed = fed.or(f);
                o
            }
            Err(Malformed(m)) => return (Outcome::Malformed(m), None),
        };
        let state = match &outcome {
            Outcome::Pass(s) => s.clone(),
            Outcome::Fail { state, report } => {
                let report = format!("with client order {order:?}:\n{report}");
                let state = state.clone();
                return (Outcome::Fail { state, report }, fed);
            }
            Outcome::Malformed(_) => return (outcome, None),
        };
        match &first {
            None => first = Some((order, state)),
            Some((o, s)) if *s != state => {
                let report = format!(
                    "the final state depends on the client order:\n  order {o:?}: {}\n  order {order:?}: {}",
                    canonical(s),
                    canonical(&state)
                );
                return (Outcome::Fail { state, report }, fed);
            }
            Some(_) => {}
        }
    }
    match first {
        Some((_, s)) => (Outcome::Pass(s), fed),
        None => (Outcome::Malformed("no run".to_string()), None),
    }
}

/// Runs a scenario given as JSON text.
pub fn run(text: &str) -> Outcome {
    match parse(text) {
        Ok(scenario) => run_scenario(&scenario),
        Err(Malformed(m)) => Outcome::Malformed(m),
    }
}

/// Runs a scenario given as JSON text, and returns with its outcome the server's Adapter feed
/// (of the first run when the scenario permutes): one transaction per integrated changeset,
/// oldest first (empty for a malformed scenario). A feed that cannot be read makes the run
/// fail.
pub fn run_with_feed(text: &str) -> (Outcome, Vec<FeedTransaction>) {
    let scenario = match parse(text) {
        Ok(s) => s,
        Err(Malformed(m)) => return (Outcome::Malformed(m), Vec::new()),
    };
    let (outcome, fed) = run_following(&scenario, true);
    let Some(fed) = fed else {
        return (outcome, Vec::new());
    };
    match fed {
        Ok(feed) => (outcome, feed),
        Err(e) => {
            let (state, report) = match outcome {
                Outcome::Pass(state) => (state, String::new()),
                Outcome::Fail { state, report } => (state, report + "\n"),
                Outcome::Malformed(_) => return (outcome, Vec::new()),
            };
            let report = format!("{report}the server's feed: {e}");
            (Outcome::Fail { state, report }, Vec::new())
        }
    }
}
