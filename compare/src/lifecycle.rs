//! objsync's history lifecycle on the comparison's data (objsync only: the peers keep no
//! history apart from their documents).
//!
//! - New device: a realm whose history holds H changesets (ten writers taking turns, each
//!   setting a field and adding to a counter of one of a thousand documents, each syncing after
//!   every write) gets a new device. Either it downloads the history (every entry as the server
//!   keeps it encoded, decoded and integrated), or it starts from the server's state
//!   (`Server::state_snapshot`, `Client::bootstrap`). Both must end in the server's state. The
//!   size is the bytes the device receives.
//! - Compaction: the hub of the many-writers workload compacts its history (`Server::compact`);
//!   the size is the encoded history after it, and the label gives it before.

use crate::alloc::{measure, Measured};
use crate::util::{fail, Res};
use objsync::json::{canonical, state_json};
use objsync::sync::{Client, Cursor, Download, DownloadEntry, Server};
use objsync::{
    wire, ClientVersion, ObjectType, PeerId, PropType, Property, Replica, ServerVersion,
};

const WRITERS: u64 = 10;
const DOCUMENTS: i64 = 1000;

fn state(r: &Replica) -> Res<String> {
    Ok(canonical(
        &state_json(r.store()).map_err(fail("objsync: state"))?,
    ))
}

/// A server whose history holds `n` changesets after the one that creates the documents.
pub fn server_with_history(n: usize) -> Res<Server> {
    let mut server = Server::new();
    let mut writers: Vec<Client> = (1..=WRITERS).map(|p| Client::new(PeerId(p))).collect();
    let ty = |t: &str| PropType::parse(t).map_err(fail("objsync: property type"));
    let doc = ObjectType::new(
        "Doc",
        Some("id"),
        [
            Property::new("id", ty("int")?),
            Property::new("title", ty("string?")?),
            Property::new("n", ty("int")?),
        ],
    )
    .map_err(fail("objsync: type"))?;
    let sync = |server: &mut Server, w: &mut Client| -> Res<()> {
        let ack = (server.integrate(w.peer(), w.upload())).map_err(fail("objsync: integrate"))?;
        w.acknowledge(ack);
        let d = (server.download(w.peer(), w.cursor(), None)).map_err(fail("objsync: download"))?;
        w.integrate(d)
            .map_err(fail("objsync: integrate a download"))
    };
    writers[0]
        .write(1, |tx| {
            tx.add_type(doc)?;
            (0..DOCUMENTS).try_for_each(|k| tx.insert("Doc", k).map(drop))
        })
        .map_err(fail("objsync: write"))?;
    for w in &mut writers {
        sync(&mut server, w)?;
    }
    for i in 0..n {
        let w = &mut writers[i % WRITERS as usize];
        let k = i as i64 % DOCUMENTS;
        w.write(i as u64 + 2, |tx| {
            tx.set("Doc", k, "title", format!("v{i}"))?;
            tx.add_int("Doc", k, "n", 1)
        })
        .map_err(fail("objsync: write"))?;
        sync(&mut server, w)?;
    }
    Ok(server)
}

/// A new device joining `server`: by downloading its history, and from its state. Each: the
/// time and peak heap, and the bytes received.
pub fn new_device(server: &Server) -> Res<[(Measured, usize); 2]> {
    let expected = state(server.replica())?;
    let history = server.history();
    let (downloaded, by_history) = measure(|meter| {
        meter.time(|| -> Res<(Client, usize)> {
            let mut device = Client::new(PeerId(99));
            let mut bytes = 0;
            let mut entries = Vec::with_capacity(history.len());
            for (v, _) in history.iter() {
                let encoded = history.encoded(v).ok_or("objsync: no encoded entry")?;
                bytes += encoded.len();
                entries.push(DownloadEntry {
                    server_version: v,
                    last_own: ClientVersion(0),
                    fingerprint: history.fingerprint(v).unwrap_or_default(),
                    changeset: wire::decode(encoded).map_err(fail("objsync: decode"))?,
                });
            }
            let latest = server.version();
            let download = Download {
                entries,
                cursor: Cursor {
                    server: latest,
                    own: ClientVersion(0),
                    fingerprint: history.latest_fingerprint(),
                },
                own_signature: None,
                latest,
                integrated: ClientVersion(0),
            };
            device
                .integrate(download)
                .map_err(fail("objsync: integrate"))?;
            Ok((device, bytes))
        })
    });
    let (device, history_bytes) = downloaded?;
    if state(device.replica())? != expected || device.cursor().server != server.version() {
        return Err("objsync: the device that downloaded the history differs".into());
    }
    drop(device);
    let snapshot = server.state_snapshot();
    let (started, from_state) = measure(|meter| {
        meter.time(|| Client::bootstrap(PeerId(99), &snapshot).map_err(fail("objsync: bootstrap")))
    });
    let device = started?;
    if state(device.replica())? != expected || device.cursor().server != server.version() {
        return Err("objsync: the device that started from the state differs".into());
    }
    Ok([(by_history, history_bytes), (from_state, snapshot.len())])
}

/// Compacts `server`'s history: the time and peak heap, and the encoded history's bytes before
/// and after. The server's state must not change.
pub fn compaction(server: &mut Server) -> Res<(Measured, usize, usize)> {
    let bytes = |s: &Server| -> usize {
        let h = s.history();
        (h.iter())
            .filter_map(|(v, _)| h.encoded(v))
            .map(|e| e.len())
            .sum()
    };
    let before = bytes(server);
    let state_before = state(server.replica())?;
    let (_, m) = measure(|meter| meter.time(|| server.compact()));
    if state(server.replica())? != state_before || server.version() == ServerVersion(0) {
        return Err("objsync: compaction changed the state".into());
    }
    Ok((m, before, bytes(server)))
}
