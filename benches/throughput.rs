//! Throughput benchmarks besides realm-core's merge workloads: applying changesets to a
//! MemoryStore, encoding and decoding the binary changeset format, and a server integrating
//! uploads from a thousand clients into one realm, and a client taking in what a thousand
//! writers of one realm sent it.
//!
//!     cargo bench --bench throughput

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use objsync::session::{Access, ClientConfig, ClientSession, ServerRealm, ServerSession};
use objsync::sync::{Client, Server, Upload};
use objsync::wire::{decode, encode, Limits};
use objsync::{Changeset, ObjectType, PeerId, PropType, Property, Replica};

fn doc_type() -> ObjectType {
    let p = |n: &str, t: &str| Property::new(n, PropType::parse(t).expect("type"));
    ObjectType::new(
        "Doc",
        Some("id"),
        [
            p("id", "int"),
            p("title", "string"),
            p("n", "int"),
            p("score", "double"),
            p("tags", "list<string>"),
        ],
    )
    .expect("type")
}

/// One transaction of `objects` documents, each created, given a title, a counter, a score
/// and two list elements: six instructions per document, a realistic mix of inserts, sets of
/// every common kind and list inserts.
fn mixed_changeset(objects: i64) -> Changeset {
    let mut r = Replica::new(PeerId(1));
    let mut tx = r.transaction(1);
    tx.add_type(doc_type()).expect("schema");
    for i in 0..objects {
        tx.insert("Doc", i).expect("insert");
        tx.set("Doc", i, "title", format!("document number {i}"))
            .expect("set");
        tx.add_int("Doc", i, "n", i).expect("add");
        tx.set("Doc", i, "score", i as f64 / 3.0).expect("set");
        tx.list_insert("Doc", i, "tags", 0, "red").expect("list");
        tx.list_insert("Doc", i, "tags", 1, format!("t{}", i % 97))
            .expect("list");
    }
    tx.commit()
}

fn apply(c: &mut Criterion) {
    let cs = mixed_changeset(100_000 / 6);
    let mut g = c.benchmark_group("Apply");
    g.sample_size(10);
    g.throughput(Throughput::Elements(cs.ops.len() as u64));
    g.bench_function("mixed_100k_instructions", |b| {
        b.iter_batched(
            || Replica::new(PeerId(2)),
            |mut r| {
                r.apply_changeset(&cs).expect("applies");
                r
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    // About 1 MB encoded.
    let cs = mixed_changeset(30_000);
    let bytes = encode(&cs);
    let mut g = c.benchmark_group("Encoding");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode", |b| b.iter(|| encode(&cs)));
    g.bench_function("decode", |b| b.iter(|| decode(&bytes).expect("decodes")));
    g.finish();
}

/// A server whose realm has the schema, and `n` clients that have it too, each holding an
/// upload written concurrently from that base: three transactions on its own documents and
/// one on one of ten shared documents.
fn thousand_clients(n: u64) -> (Server, Vec<(PeerId, Upload)>) {
    let mut server = Server::new();
    let mut first = Client::new(PeerId(1));
    first
        .write(1, |tx| {
            tx.add_type(doc_type())?;
            for k in 0..10 {
                tx.insert("Doc", -1 - k)?;
            }
            Ok(())
        })
        .expect("schema");
    let ack = server
        .integrate(first.peer(), first.upload())
        .expect("upload");
    first.acknowledge(ack);
    let uploads = (2..n + 2)
        .map(|p| {
            let mut c = Client::new(PeerId(p));
            let d = server
                .download(c.peer(), c.cursor(), None)
                .expect("the history is whole");
            c.integrate(d).expect("base");
            for t in 0..3 {
                c.write(10 + t, |tx| {
                    let k = (p * 10 + t) as i64;
                    tx.insert("Doc", k)?;
                    tx.set("Doc", k, "title", format!("client {p}"))?;
                    tx.list_insert("Doc", k, "tags", 0, "mine")
                })
                .expect("own");
            }
            c.write(20, |tx| {
                let k = -1 - (p % 10) as i64;
                tx.set("Doc", k, "title", format!("last writer {p}"))?;
                tx.add_int("Doc", k, "n", 1)?;
                tx.list_insert("Doc", k, "tags", 0, format!("{p}"))
            })
            .expect("shared");
            (c.peer(), c.upload())
        })
        .collect();
    (server, uploads)
}

fn server_integration(c: &mut Criterion) {
    let mut g = c.benchmark_group("ServerIntegrate");
    g.sample_size(10);
    let clients = 1000;
    g.throughput(Throughput::Elements(clients * 4));
    g.bench_function("1000_clients_one_realm", |b| {
        b.iter_batched(
            || thousand_clients(clients),
            |(mut server, uploads)| {
                for (peer, upload) in uploads {
                    server.integrate(peer, upload).expect("integrates");
                }
                server
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// A client and its server session over a realm.
struct Connected {
    client: ClientSession,
    server: ServerSession,
}

impl Connected {
    fn new(peer: u64) -> Connected {
        let config = ClientConfig {
            path: "/load".into(),
            token: "t".into(),
            limits: Limits::default(),
            start_from_state: false,
        };
        let mut client = ClientSession::new(Client::new(PeerId(peer)), config, None);
        client.connect();
        let server = ServerSession::new(Limits::default()).with_frame_size(64 << 10);
        Connected { client, server }
    }

    /// Moves the client's frames to the server.
    fn upstream(&mut self, realm: &mut ServerRealm, salt: u64) {
        while let Some(frame) = self.client.poll_transmit() {
            if let Ok(Some(_bind)) = self.server.receive(&frame) {
                let access = Access {
                    read: true,
                    write: true,
                };
                self.server.accept(access, salt);
            }
            self.server.process(realm);
        }
    }

    /// The server's frames for the client, handed to it; returns them.
    fn downstream(&mut self, realm: &ServerRealm) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        while let Some(frame) = self.server.poll_transmit(realm) {
            self.client.handle(&frame).expect("the client takes it");
            frames.push(frame);
        }
        frames
    }
}

/// What the load generator's writers commit (`objsync_net::workload`): an item of their own
/// and +1 on a shared counter, the first transaction also defining the type.
fn counted(c: &mut Client, who: u64, t: u64) {
    c.write(1_000 + t, |tx| {
        if t == 0 {
            let p = |n: &str, ty: &str| Property::new(n, PropType::parse(ty).expect("type"));
            let item = [p("id", "string"), p("n", "int"), p("total", "int")];
            tx.add_type(ObjectType::new("Item", Some("id"), item)?)?;
        }
        tx.insert("Item", format!("{who}-{t}"))?;
        tx.set("Item", format!("{who}-{t}"), "n", t as i64)?;
        tx.insert("Item", "counter")?;
        tx.add_int("Item", "counter", "total", 1)
    })
    .expect("writes");
}

/// The frames a reader of one realm receives while `writers` writers commit one transaction
/// each (the type defined once), downloads of `per_message` changesets: the server's side of
/// the load generator's shared realm, recorded to be replayed into a fresh reader.
fn fan_in(writers: u64, per_message: u64) -> Vec<Vec<u8>> {
    let mut realm = ServerRealm::new(77);
    let mut reader = Connected::new(1);
    reader.upstream(&mut realm, 1);
    let mut frames = reader.downstream(&realm);
    for w in 0..writers {
        let mut writer = Connected::new(w + 2);
        // The identity and what is there (the type) first, then the upload: the first
        // writer defines the type, the others write as the load generator's do after theirs.
        writer.upstream(&mut realm, w + 2);
        writer.downstream(&realm);
        counted(writer.client.client_mut(), w, u64::from(w > 0));
        writer.upstream(&mut realm, w + 2);
        if (w + 1) % per_message == 0 {
            frames.extend(reader.downstream(&realm));
        }
    }
    frames.extend(reader.downstream(&realm));
    let integrated = reader.client.client().cursor().server;
    assert_eq!(
        integrated,
        realm.server().version(),
        "the reader has it all"
    );
    assert_eq!(integrated.0, writers, "every writer's changeset");
    frames
}

fn client_download(c: &mut Criterion) {
    let mut g = c.benchmark_group("ClientDownload");
    g.sample_size(20);
    let writers = 1000;
    g.throughput(Throughput::Elements(writers));
    // A reader with a commit of its own not yet acknowledged (the load generator's clients,
    // nearly always) merges each download with it: here it defined the type too, so the first
    // writer's changeset meets it and the others do not.
    for (per_message, own_commit) in [(10, false), (100, false), (10, true)] {
        let frames = fan_in(writers, per_message);
        let mut name = format!("1000_writers_{per_message}_a_message");
        if own_commit {
            name.push_str("_with_a_commit_of_its_own");
        }
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut reader = Connected::new(1);
                    if own_commit {
                        counted(reader.client.client_mut(), writers, 0);
                    }
                    while reader.client.poll_transmit().is_some() {}
                    reader.client
                },
                |mut reader| {
                    for frame in &frames {
                        reader.handle(frame).expect("the client takes it");
                    }
                    reader
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, apply, codec, server_integration, client_download);
criterion_main!(benches);
