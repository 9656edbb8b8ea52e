//! Random multi-client histories for property tests: random transactions of every instruction
//! kind over a small key space (so conflicts are frequent), with random upload, download and
//! sync schedules, run against in-process clients and a server. The convergence, lifecycle and
//! reset property tests all draw from here.

use objsync::json::{canonical, state_json};
use objsync::sync::{Client, ResetCause, ResetMode, Server, SyncError};
use objsync::{ObjKey, ObjectType, PeerId, PropType, Property, Replica, Transaction, Value};
use proptest::prelude::*;

/// A replica's state, rendered canonically.
pub fn state(r: &Replica) -> String {
    canonical(&state_json(r.store()).unwrap())
}

/// One random write, resolved against the writer's state when it runs.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum Intent {
    Insert(u8, u8),
    Set(u8, u8, u8, bool),
    AddInt(u8, i8),
    Delete(u8),
    Clear,
    Link(u8, u8),
    ListInsert(u8, u8, u8, u8),
    ListSet(u8, u8, u8, u8),
    ListErase(u8, u8, u8),
    ListMove(u8, u8, u8, u8),
    ListClear(u8, u8),
    AddProperty(u8),
}

pub fn intent() -> impl Strategy<Value = Intent> {
    let b = any::<u8>;
    prop_oneof![
        3 => (b(), b()).prop_map(|(k, v)| Intent::Insert(k, v)),
        3 => (b(), b(), b(), any::<bool>()).prop_map(|(k, p, v, d)| Intent::Set(k, p, v, d)),
        2 => (b(), any::<i8>()).prop_map(|(k, d)| Intent::AddInt(k, d)),
        1 => b().prop_map(Intent::Delete),
        1 => Just(Intent::Clear),
        2 => (b(), b()).prop_map(|(k, t)| Intent::Link(k, t)),
        4 => (b(), b(), b(), b()).prop_map(|(k, p, i, v)| Intent::ListInsert(k, p, i, v)),
        2 => (b(), b(), b(), b()).prop_map(|(k, p, i, v)| Intent::ListSet(k, p, i, v)),
        2 => (b(), b(), b()).prop_map(|(k, p, i)| Intent::ListErase(k, p, i)),
        2 => (b(), b(), b(), b()).prop_map(|(k, p, i, j)| Intent::ListMove(k, p, i, j)),
        1 => (b(), b()).prop_map(|(k, p)| Intent::ListClear(k, p)),
        1 => b().prop_map(Intent::AddProperty),
    ]
}

/// One step of a random history (clients are 0-based here).
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum Step {
    Tx(usize, u64, Vec<Intent>),
    Upload(usize),
    Download(usize, Option<usize>),
    Sync(Vec<usize>),
}

pub fn step(clients: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0..clients, 0u64..40, prop::collection::vec(intent(), 1..8)).prop_map(|(c, t, i)| Step::Tx(c, t, i)),
        2 => (0..clients).prop_map(Step::Upload),
        2 => (0..clients, prop::option::of(1usize..3)).prop_map(|(c, n)| Step::Download(c, n)),
        2 => prop::collection::vec(0..clients, 1..=clients).prop_map(Step::Sync),
    ]
}

pub fn history(max_clients: usize) -> impl Strategy<Value = (usize, Vec<Step>)> {
    (2..=max_clients).prop_flat_map(|n| (Just(n), prop::collection::vec(step(n), 1..24)))
}

pub fn schema() -> [ObjectType; 2] {
    let p = |n: &str, t: &str| Property::new(n, PropType::parse(t).unwrap());
    [
        ObjectType::new(
            "A",
            Some("id"),
            [
                p("id", "int"),
                p("v", "int"),
                p("s", "string?"),
                p("l", "link<A>"),
                p("xs", "list<int>"),
                p("ls", "list<link<A>>"),
            ],
        )
        .unwrap(),
        ObjectType::new(
            "B",
            Some("id"),
            [p("id", "string"), p("v", "int?"), p("a", "link<A>")],
        )
        .unwrap(),
    ]
}

const LISTS: [&str; 2] = ["xs", "ls"];

fn key(k: u8) -> ObjKey {
    ObjKey::Int((k % 4) as i64)
}

fn list_len(tx: &Transaction<'_, objsync::MemoryStore>, k: &ObjKey, p: &str) -> usize {
    use objsync::Store;
    tx.store().list_len("A", k, p).unwrap_or(0)
}

fn link_value(tx: &Transaction<'_, objsync::MemoryStore>, v: u8) -> Value {
    use objsync::Store;
    let keys = tx.store().objects("A").unwrap_or_default();
    if keys.is_empty() {
        Value::Null
    } else {
        let mut keys = keys;
        keys.sort();
        Value::Link(keys[v as usize % keys.len()].clone())
    }
}

pub fn run_intent(tx: &mut Transaction<'_, objsync::MemoryStore>, i: &Intent) {
    let _ = tx.atomically(|tx| match i {
        Intent::Insert(k, v) => {
            if k % 5 == 0 {
                tx.insert("B", format!("b{}", k % 3).as_str())?;
                tx.set("B", format!("b{}", k % 3).as_str(), "v", *v as i64)
            } else {
                tx.insert("A", key(*k))?;
                tx.set("A", key(*k), "v", *v as i64)
            }
        }
        Intent::Set(k, p, v, d) => {
            let (prop, val): (&str, Value) = match p % 2 {
                0 => ("v", Value::Int(*v as i64)),
                _ => (
                    "s",
                    if v % 4 == 0 {
                        Value::Null
                    } else {
                        Value::from(format!("s{v}"))
                    },
                ),
            };
            if *d {
                tx.set_default("A", key(*k), prop, val)
            } else {
                tx.set("A", key(*k), prop, val)
            }
        }
        Intent::AddInt(k, d) => tx.add_int("A", key(*k), "v", *d as i64),
        Intent::Delete(k) => tx.delete("A", key(*k)),
        Intent::Clear => tx.clear(if rand_b(tx) { "A" } else { "B" }),
        Intent::Link(k, t) => {
            let v = link_value(tx, *t);
            if k % 3 == 0 {
                tx.set("B", format!("b{}", k % 3).as_str(), "a", v)
            } else {
                tx.set("A", key(*k), "l", v)
            }
        }
        Intent::ListInsert(k, p, i, v) => {
            let prop = LISTS[*p as usize % 2];
            let n = list_len(tx, &key(*k), prop);
            let val = if prop == "xs" {
                Value::Int(*v as i64)
            } else {
                link_value(tx, *v)
            };
            tx.list_insert("A", key(*k), prop, *i as usize % (n + 1), val)
        }
        Intent::ListSet(k, p, i, v) => {
            let prop = LISTS[*p as usize % 2];
            let n = list_len(tx, &key(*k), prop).max(1);
            let val = if prop == "xs" {
                Value::Int(*v as i64)
            } else {
                link_value(tx, *v)
            };
            tx.list_set("A", key(*k), prop, *i as usize % n, val)
        }
        Intent::ListErase(k, p, i) => {
            let prop = LISTS[*p as usize % 2];
            let n = list_len(tx, &key(*k), prop).max(1);
            tx.list_erase("A", key(*k), prop, *i as usize % n)
        }
        Intent::ListMove(k, p, i, j) => {
            let prop = LISTS[*p as usize % 2];
            let n = list_len(tx, &key(*k), prop).max(1);
            tx.list_move("A", key(*k), prop, *i as usize % n, *j as usize % n)
        }
        Intent::ListClear(k, p) => tx.list_clear("A", key(*k), LISTS[*p as usize % 2]),
        Intent::AddProperty(i) => {
            let t = ["int", "string?", "list<int>"][*i as usize % 3];
            tx.add_properties(
                "A",
                vec![Property::new(
                    &format!("e{}", i % 3),
                    PropType::parse(t).unwrap(),
                )],
            )
        }
    });
}

fn rand_b(tx: &Transaction<'_, objsync::MemoryStore>) -> bool {
    tx.ops().len() % 2 == 0
}

/// The replicas of one run of a history.
pub struct Run {
    /// The server.
    pub server: Server,
    /// The clients, peer ids 1..=n.
    pub clients: Vec<Client>,
    /// How a client is reset when the server says it must be; `None`: it never must.
    pub reset_mode: Option<ResetMode>,
    /// Every reset so far: during which upload or download (counted from 0), the client, and
    /// why.
    pub resets: Vec<(usize, usize, ResetCause)>,
    /// Uploads and downloads so far.
    pub actions: usize,
    /// (action, client): before that upload or download, the client downloads everything
    /// (what a reset does in another run of the same history).
    pub catch_up: Vec<(usize, usize)>,
}

impl Run {
    /// `n` clients that all start from the same schema, written by client 1 and synced.
    pub fn new(n: usize) -> Run {
        let mut run = Run::empty(n);
        run.share_schema();
        run
    }

    /// `n` new clients and a new server (peer ids 1..=n).
    pub fn empty(n: usize) -> Run {
        Run {
            server: Server::new(),
            clients: (1..=n).map(|k| Client::new(PeerId(k as u64))).collect(),
            reset_mode: None,
            resets: Vec::new(),
            actions: 0,
            catch_up: Vec::new(),
        }
    }

    /// Client 1 writes the [`schema`], and every client syncs it.
    pub fn share_schema(&mut self) {
        self.clients[0]
            .write(0, |tx| {
                for t in schema() {
                    tx.add_type(t)?;
                }
                Ok(())
            })
            .unwrap();
        self.upload(0);
        for c in 0..self.clients.len() {
            self.download(c, None);
        }
    }

    /// Client `c` uploads; the server must integrate it (after a reset if it says so).
    pub fn upload(&mut self, c: usize) {
        self.or_reset(c, |run, c| {
            let client = &mut run.clients[c];
            let ack = run.server.integrate(client.peer(), client.upload())?;
            client.acknowledge(ack);
            Ok(())
        });
    }

    /// Client `c` downloads (at most `count` entries); it must integrate them (after a reset
    /// if the server says so). Every other download is integrated by reference
    /// ([`Client::integrate_ref`], what a session does), so every history checks both ways.
    pub fn download(&mut self, c: usize, count: Option<usize>) {
        let by_reference = self.actions % 2 == 0;
        self.or_reset(c, |run, c| {
            let client = &mut run.clients[c];
            let d = run.server.download(client.peer(), client.cursor(), count)?;
            match by_reference {
                true => client.integrate_ref(&d),
                false => client.integrate(d),
            }
        });
    }

    /// Runs `act` for client `c`; if the server says the client must be reset and the run
    /// resets clients, resets it and runs `act` again, which must then succeed.
    fn or_reset(&mut self, c: usize, act: impl Fn(&mut Run, usize) -> Result<(), SyncError>) {
        let action = self.actions;
        self.actions += 1;
        let before = self.catch_up.iter().filter(|(a, _)| *a == action);
        for k in before.map(|(_, k)| *k).collect::<Vec<_>>() {
            let client = &mut self.clients[k];
            let d = self.server.download(client.peer(), client.cursor(), None);
            client.integrate(d.expect("whole")).expect("integrates");
        }
        // Each reset may uncover another cause (a server restored twice, from two copies);
        // the client refuses to reset twice in a row for one cause, so this ends.
        loop {
            let Err(e) = act(self, c) else {
                return;
            };
            match (self.reset_mode, e.reset_cause()) {
                (Some(mode), Some(cause)) => {
                    self.reset(c, cause, mode);
                    self.resets.last_mut().expect("just reset").0 = action;
                }
                _ => panic!("client {c}: {e}"),
            }
        }
    }

    /// Resets client `c` from the server's current state.
    pub fn reset(&mut self, c: usize, cause: ResetCause, mode: ResetMode) -> objsync::sync::Reset {
        let client = &mut self.clients[c];
        let recovery = self
            .server
            .recovery(client.peer(), &client.recovery_request(cause));
        let reset = client
            .reset(&recovery, cause, mode)
            .expect("the client resets");
        self.resets.push((self.actions, c, cause));
        reset
    }

    /// Runs one step, visiting the clients of a sync step in `order`.
    pub fn step(&mut self, s: &Step, order: &[usize]) {
        match s {
            Step::Tx(c, t, intents) => {
                self.clients[*c]
                    .write(*t, |tx| {
                        for i in intents {
                            run_intent(tx, i);
                        }
                        Ok(())
                    })
                    .unwrap();
            }
            Step::Upload(c) => self.upload(*c),
            Step::Download(c, count) => self.download(*c, *count),
            Step::Sync(list) => {
                let mut list = list.clone();
                list.sort_by_key(|k| order.iter().position(|o| o == k));
                list.dedup();
                for k in &list {
                    self.upload(*k);
                }
                for k in &list {
                    self.download(*k, None);
                }
            }
        }
    }

    /// Full syncs in `order` until nothing is left to move.
    pub fn settle(&mut self, order: &[usize]) {
        for _ in 0..3 {
            for k in order {
                self.upload(*k);
            }
            for k in order {
                self.download(*k, None);
            }
        }
    }
}

/// Runs a history with the clients inside sync steps visited in `order`, then a full sync.
pub fn run(n: usize, steps: &[Step], order: &[usize]) -> Run {
    run_with(n, steps, order, |_, _| {})
}

/// [`run`], calling `after(run, i)` after step `i` (to save and load, compact, ...).
pub fn run_with(
    n: usize,
    steps: &[Step],
    order: &[usize],
    mut after: impl FnMut(&mut Run, usize),
) -> Run {
    let mut run = Run::new(n);
    for (i, s) in steps.iter().enumerate() {
        run.step(s, order);
        after(&mut run, i);
    }
    run.settle(order);
    run
}
