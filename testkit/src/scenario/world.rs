//! The replicas of one run: the clients and the server, exchanging changesets in process, and
//! the errors they hit.

use super::{malformed, Malformed, Scenario};
use objsync::json::WriteOp;
use objsync::sync::{Client, Server, SyncError};
use objsync::{Error, PeerId};

/// The replicas of one run: the clients and the server, exchanging changesets in process.
pub(super) struct World {
    pub(super) clients: Vec<Client>,
    pub(super) server: Server,
    /// Errors hit so far, by name ("schema_mismatch", ...), with the client that hit them.
    pub(super) errors: Vec<(usize, String, String)>,
}

fn error_name(e: &SyncError) -> &'static str {
    match e.data_error() {
        Some(Error::SchemaMismatch { .. }) => "schema_mismatch",
        _ => "sync_error",
    }
}

impl World {
    pub(super) fn new(clients: usize) -> World {
        World {
            clients: (1..=clients)
                .map(|k| Client::new(PeerId(k as u64)))
                .collect(),
            server: Server::new(),
            errors: Vec::new(),
        }
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

    /// Uploads; returns whether anything was sent.
    pub(super) fn upload(&mut self, client: usize) -> bool {
        if self.stopped(client) {
            return false;
        }
        let c = &mut self.clients[client - 1];
        let up = c.upload();
        if up.changesets.is_empty() {
            return false;
        }
        match self.server.integrate(c.peer(), up) {
            Ok(ack) => c.acknowledge(ack),
            Err(e) => self
                .errors
                .push((client, error_name(&e).to_string(), e.to_string())),
        }
        true
    }

    /// Downloads; returns whether anything was received.
    pub(super) fn download(&mut self, client: usize, count: Option<usize>) -> bool {
        if self.stopped(client) {
            return false;
        }
        let c = &mut self.clients[client - 1];
        let result = (self.server.download(c.peer(), c.cursor(), count)).and_then(|d| {
            let moved = !d.entries.is_empty();
            c.integrate(d).map(|()| moved)
        });
        let moved = *result.as_ref().unwrap_or(&false);
        if let Err(e) = result {
            self.errors
                .push((client, error_name(&e).to_string(), e.to_string()));
        }
        moved
    }
}
