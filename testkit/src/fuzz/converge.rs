//! Random multi-client histories must converge (the fuzzing counterpart of
//! tests/convergence.rs).
//!
//! The bytes are read as: the number of clients (2 to 5), an initial schema written by client 1,
//! which clients download it before anything else, then steps (transactions of random writes on
//! any client, uploads, whole or partial downloads, and sync rounds over any clients in any
//! order). Every changeset crosses the "wire" in its binary form. After a final full sync every
//! client must have nothing unacknowledged and equal the server, and the server must equal its
//! history replayed into a fresh replica.
//!
//! Every write goes through the transaction API and schema changes never conflict (see
//! [`super::ops`]), so every upload and download must integrate: a refusal is a bug too.

use super::input::Input;
use super::{ops, state};
use objsync::sync::{Client, Server};
use objsync::wire::{decode, encode};
use objsync::{Changeset, PeerId, Replica};

/// Steps per history: enough for long offline stretches, few enough for fast executions.
const MAX_STEPS: usize = 64;

/// Runs the history in `data` and checks that it converged.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let n = 2 + input.below(4);
    let schema = ops::schema(&mut input);
    let early = input.byte();
    let mut server = Server::new();
    let mut clients: Vec<Client> = (1..=n).map(|k| Client::new(PeerId(k as u64))).collect();
    clients[0]
        .write(0, |tx| {
            for t in &schema {
                tx.add_type(t.clone())?;
            }
            Ok(())
        })
        .expect("the initial schema is valid");
    upload(&mut server, &mut clients[0]);
    for (k, c) in clients.iter_mut().enumerate() {
        // Clients left out start writing without the schema (they can add the late type).
        if k == 0 || early & (1 << k) != 0 {
            download(&server, c, None);
        }
    }
    for _ in 0..MAX_STEPS {
        if input.is_empty() {
            break;
        }
        match input.below(8) {
            0..=3 => {
                let k = input.below(n);
                let t = u64::from(input.byte() % 64);
                clients[k]
                    .write(t, |tx| {
                        ops::transaction(&mut input, tx, 8);
                        Ok(())
                    })
                    .expect("skipped writes never fail the transaction");
            }
            4 => {
                let k = input.below(n);
                upload(&mut server, &mut clients[k]);
            }
            5 => {
                let k = input.below(n);
                let limit = input.below(4);
                download(&server, &mut clients[k], (limit > 0).then_some(limit));
            }
            _ => {
                let mut order: Vec<usize> =
                    (0..1 + input.below(n)).map(|_| input.below(n)).collect();
                order.dedup();
                for &k in &order {
                    upload(&mut server, &mut clients[k]);
                }
                for &k in &order {
                    download(&server, &mut clients[k], None);
                }
            }
        }
    }
    // Final full sync: one round brings every change to the server, the next to every client.
    for _ in 0..2 {
        for c in clients.iter_mut() {
            upload(&mut server, c);
        }
        for c in clients.iter_mut() {
            download(&server, c, None);
        }
    }
    check(&server, &clients);
}

/// A changeset as the other side receives it: encoded, then decoded.
fn wire(cs: &Changeset) -> Changeset {
    let decoded = decode(&encode(cs)).expect("an encoded changeset decodes");
    assert_eq!(&decoded, cs, "the binary form changes the changeset");
    decoded
}

fn upload(server: &mut Server, c: &mut Client) {
    let mut up = c.upload();
    for cs in &mut up.changesets {
        *cs = wire(cs);
    }
    let ack = server
        .integrate(c.peer(), up)
        .unwrap_or_else(|e| panic!("the server refused peer {}: {e}", c.peer()));
    c.acknowledge(ack);
}

fn download(server: &Server, c: &mut Client, limit: Option<usize>) {
    let mut d = (server.download(c.peer(), c.cursor(), limit))
        .unwrap_or_else(|e| panic!("the server refused peer {}'s download: {e}", c.peer()));
    for e in &mut d.entries {
        e.changeset = wire(&e.changeset);
    }
    c.integrate(d)
        .unwrap_or_else(|e| panic!("peer {} cannot integrate a download: {e}", c.peer()));
}

fn check(server: &Server, clients: &[Client]) {
    let s = state(server.replica());
    for c in clients {
        assert!(
            c.unacknowledged().is_empty(),
            "peer {} still has unacknowledged changesets after the final sync",
            c.peer()
        );
        assert_eq!(state(c.replica()), s, "peer {} diverged", c.peer());
    }
    let mut replay = Replica::new(PeerId(0));
    for (_, e) in server.history().iter() {
        replay
            .apply_changeset(&e.changeset)
            .expect("the history replays");
    }
    assert_eq!(
        state(&replay),
        s,
        "the history replayed differs from the server"
    );
}
