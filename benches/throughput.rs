//! Throughput benchmarks besides realm-core's merge workloads: applying changesets to a
//! MemoryStore, encoding and decoding the binary changeset format, and a server integrating
//! uploads from a thousand clients into one realm.
//!
//!     cargo bench --bench throughput

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use objsync::sync::{Client, Server, Upload};
use objsync::wire::{decode, encode};
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

criterion_group!(benches, apply, codec, server_integration);
criterion_main!(benches);
