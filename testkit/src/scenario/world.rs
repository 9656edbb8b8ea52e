//! The replicas of one run: the clients and the server, exchanging changesets in process, and
//! the errors they hit.

use super::follow::Follower;
use super::{malformed, Malformed, Scenario, Who};
use objsync::json::WriteOp;
use objsync::permissions::Identity;
use objsync::sync::{Client, ResetCause, ResetMode, Server, SyncError};
use objsync::{Error, PeerId};

/// The replicas of one run: the clients and the server, exchanging changesets in process.
pub(super) struct World {
    pub(super) clients: Vec<Client>,
    pub(super) server: Server,
    /// Errors hit so far, by name ("schema_mismatch", ...), with the client that hit them.
    pub(super) errors: Vec<(usize, String, String)>,
    /// Per client: whether its first download starts from the server's state.
    bootstrapping: Vec<bool>,
    /// The latest copy of the server (`backup` step).
    backup: Option<Vec<u8>>,
    /// How clients are reset when an upload or a download says they must be.
    reset_mode: ResetMode,
    /// The server's feed, when the run prints it.
    pub(super) follower: Option<Follower>,
    /// Who each client writes as, by client number - 1.
    pub(super) identities: Vec<Identity>,
}

fn error_name(e: &SyncError) -> &'static str {
    match e.data_error() {
        Some(Error::SchemaMismatch { .. }) => "schema_mismatch",
        _ => "sync_error",
    }
}

impl World {
    pub(super) fn new(scenario: &Scenario, follow: bool) -> World {
        let clients = scenario.clients;
        let identities = (1..=clients)
            .map(|k| match scenario.admins.contains(&k) {
                true => Identity::Admin,
                false => Identity::User(scenario.users[k - 1].clone()),
            })
            .collect();
        let mut world = World {
            clients: (1..=clients)
                .map(|k| Client::new(PeerId(k as u64)))
                .collect(),
            server: Server::new(),
            errors: Vec::new(),
            bootstrapping: vec![false; clients],
            backup: None,
            reset_mode: scenario.reset_mode,
            follower: follow.then(Follower::new),
            identities,
        };
        world.identify();
        world
    }

    /// Tells the server who each client writes as (a loaded server knows nobody).
    fn identify(&mut self) {
        for (k, identity) in self.identities.iter().enumerate() {
            (self.server).set_identity(PeerId(k as u64 + 1), identity.clone());
        }
    }

    /// Lets the feed, if one follows the server, take what the server integrated.
    pub(super) fn follow(&mut self) {
        if let Some(f) = &mut self.follower {
            f.follow(&self.server);
        }
    }

    /// Saves a copy of the server.
    pub(super) fn backup(&mut self) {
        self.backup = Some(self.server.save());
    }

    /// Replaces the server with the latest backup; malformed without one.
    pub(super) fn restore(&mut self) -> Result<(), Malformed> {
        let Some(bytes) = &self.backup else {
            return malformed("restore: no backup was made before it");
        };
        match Server::load(bytes) {
            Ok(server) => {
                self.server = server;
                self.identify();
            }
            Err(e) => (self.errors).push((0, "snapshot_error".to_string(), e.to_string())),
        }
        if let Some(f) = &mut self.follower {
            f.went_back(&self.server);
        }
        Ok(())
    }

    /// Resets client k from the server's current state; reports the reset on stderr. Returns
    /// whether it was reset.
    pub(super) fn reset(&mut self, k: usize, mode: Option<ResetMode>, cause: ResetCause) -> bool {
        let mode = mode.unwrap_or(self.reset_mode);
        let client = &mut self.clients[k - 1];
        let recovery = self
            .server
            .recovery(client.peer(), &client.recovery_request(cause));
        match client.reset(&recovery, cause, mode) {
            Ok(reset) => {
                eprintln!("client {k}: {}", reset.report);
                self.bootstrapping[k - 1] = false;
                true
            }
            Err(e) => {
                (self.errors).push((k, "reset_failed".to_string(), e.to_string()));
                false
            }
        }
    }

    /// Runs `act` for client k; when the server says the client must be reset (for any cause
    /// but a refused changeset, which stops the client as `expect_error` describes), resets it
    /// with the scenario's mode and runs `act` once more. Returns whether anything moved.
    fn with_reset(
        &mut self,
        k: usize,
        act: impl Fn(&mut World, usize) -> Result<bool, SyncError>,
    ) -> bool {
        let mut result = act(self, k);
        // Each reset may uncover another cause (a server restored twice, from two copies);
        // a client refuses to reset twice in a row for one cause, so this ends.
        while let Err(e) = &result {
            let cause = e.reset_cause();
            let Some(cause) = cause.filter(|c| !matches!(c, ResetCause::Refused { .. })) else {
                break;
            };
            if !self.reset(k, None, cause) {
                return true;
            }
            result = act(self, k);
        }
        result.unwrap_or_else(|e| {
            (self.errors).push((k, error_name(&e).to_string(), e.to_string()));
            true
        })
    }

    pub(super) fn stopped(&self, client: usize) -> bool {
        self.clients[client - 1].failure().is_some() || self.errors.iter().any(|e| e.0 == client)
    }

    pub(super) fn tx(
        &mut self,
        scenario: &Scenario,
        client: usize,
        time: u64,
        ops: &[WriteOp],
    ) -> Result<(), Malformed> {
        let lenient = scenario.lenient;
        let mut failure = None;
        let result = self.clients[client - 1].write(time, |tx| {
            for (i, op) in ops.iter().enumerate() {
                if let Err(e) = op.apply(tx) {
                    if !lenient {
                        failure =
                            Some(format!("client {client} at time {time}, op {}: {e}", i + 1));
                        return Err(e);
                    }
                }
            }
            Ok(())
        });
        match (result, failure) {
            (Ok(_), _) => Ok(()),
            (Err(_), Some(f)) => malformed(f),
            (Err(e), None) => malformed(format!("client {client} at time {time}: {e}")),
        }
    }

    /// Saves a replica, drops it and loads it from the saved bytes. A snapshot that does not
    /// load is an error of the run (it fails), and the replica stays as it was.
    pub(super) fn restart(&mut self, who: Who) {
        let result = match who {
            Who::Server => Server::load(&self.server.save()).map(|s| {
                self.server = s;
                self.identify();
            }),
            Who::Client(k) => {
                Client::load(&self.clients[k - 1].save()).map(|c| self.clients[k - 1] = c)
            }
        };
        if let Err(e) = result {
            let k = match who {
                Who::Server => 0,
                Who::Client(k) => k,
            };
            self.errors
                .push((k, "snapshot_error".to_string(), e.to_string()));
        }
    }

    /// Client k will start from the server's state instead of downloading the history;
    /// malformed if it has written or downloaded anything.
    pub(super) fn bootstrap(&mut self, k: usize) -> Result<(), Malformed> {
        let c = &self.clients[k - 1];
        if c.last_version().0 > 0 || c.cursor().server.0 > 0 {
            return malformed(format!(
                "bootstrap {k}: client {k} has already written or downloaded"
            ));
        }
        self.bootstrapping[k - 1] = true;
        Ok(())
    }

    /// The download of a bootstrapping client (spec/scenario-format.md): the server's state
    /// when that is what downloading would give, that is when the client has still written
    /// nothing and would download the whole history (`None` otherwise, and it downloads as any
    /// other client). Returns whether anything was received.
    fn start_from_state(&mut self, client: usize, count: Option<usize>) -> Option<bool> {
        let c = &self.clients[client - 1];
        if !std::mem::take(&mut self.bootstrapping[client - 1]) || c.last_version().0 > 0 {
            return None;
        }
        let whole = (self.server.download(c.peer(), c.cursor(), None).ok())?;
        if count.is_some_and(|m| m < whole.entries.len()) {
            return None;
        }
        match Client::bootstrap(c.peer(), &self.server.state_snapshot_for(c.peer())) {
            Ok(c) => self.clients[client - 1] = c,
            Err(e) => self
                .errors
                .push((client, "snapshot_error".to_string(), e.to_string())),
        }
        Some(!whole.entries.is_empty())
    }

    /// Uploads; returns whether anything was sent.
    pub(super) fn upload(&mut self, client: usize) -> bool {
        if self.stopped(client) || self.clients[client - 1].upload().changesets.is_empty() {
            return false;
        }
        self.with_reset(client, |w, k| {
            let c = &mut w.clients[k - 1];
            let ack = w.server.integrate(c.peer(), c.upload())?;
            c.acknowledge(ack);
            Ok(true)
        })
    }

    /// Downloads; returns whether anything was received.
    pub(super) fn download(&mut self, client: usize, count: Option<usize>) -> bool {
        if self.stopped(client) {
            return false;
        }
        if let Some(moved) = self.start_from_state(client, count) {
            return moved;
        }
        self.with_reset(client, |w, k| {
            let c = &mut w.clients[k - 1];
            let d = w.server.download(c.peer(), c.cursor(), count)?;
            let moved = !d.entries.is_empty();
            c.integrate(d).map(|()| moved)
        })
    }
}
