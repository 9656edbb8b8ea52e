//! The history lifecycle: saving and loading snapshots, a new device starting from the state
//! against downloading the history, and compaction.
//!
//!     cargo bench --bench lifecycle
//!
//! Sizes (snapshot bytes, history bytes before and after compaction) are printed once on
//! stderr before the timings.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use objsync::sync::{Client, Server};
use objsync::{ObjectType, PeerId, PropType, Property, Replica};

fn doc_type() -> ObjectType {
    let p = |n: &str, t: &str| Property::new(n, PropType::parse(t).expect("type"));
    ObjectType::new(
        "Doc",
        Some("id"),
        [
            p("id", "int"),
            p("title", "string"),
            p("n", "int"),
            p("text", "list<string>"),
        ],
    )
    .expect("type")
}

/// A replica holding one document whose `text` list was typed one character at a time
/// (`chars` inserts, every tenth erased again), and `objects` further documents.
fn replica(chars: usize, objects: i64) -> Replica {
    let mut r = Replica::new(PeerId(1));
    let mut tx = r.transaction(1);
    tx.add_type(doc_type()).expect("schema");
    tx.insert("Doc", -1).expect("insert");
    let mut len = 0;
    for i in 0..chars {
        tx.list_insert(
            "Doc",
            -1,
            "text",
            len,
            ((b'a' + (i % 26) as u8) as char).to_string(),
        )
        .expect("insert");
        len += 1;
        if i % 10 == 9 {
            tx.list_erase("Doc", -1, "text", len / 2).expect("erase");
            len -= 1;
        }
    }
    for k in 0..objects {
        tx.insert("Doc", k).expect("insert");
        tx.set("Doc", k, "title", format!("document {k}"))
            .expect("set");
        tx.add_int("Doc", k, "n", k).expect("add");
    }
    tx.commit();
    r
}

fn snapshots(c: &mut Criterion) {
    let mut g = c.benchmark_group("Snapshot");
    g.sample_size(10);
    for (name, chars, objects) in [("text_100k", 100_000, 0), ("objects_100k", 0, 100_000)] {
        let r = replica(chars, objects);
        let bytes = r.save();
        eprintln!("snapshot {name}: {} bytes", bytes.len());
        g.bench_function(BenchmarkId::new("save", name), |b| b.iter(|| r.save()));
        g.bench_function(BenchmarkId::new("load", name), |b| {
            b.iter(|| Replica::load(&bytes).expect("loads"))
        });
    }
    g.finish();
}

/// A server whose history holds `n` changesets by 10 writers, each setting a field of one of
/// 1,000 documents and appending to a list: a realm whose history is far longer than its state.
fn server_with_history(n: usize) -> Server {
    let mut server = Server::new();
    let mut writers: Vec<Client> = (1..=10).map(|p| Client::new(PeerId(p))).collect();
    writers[0]
        .write(1, |tx| {
            tx.add_type(doc_type())?;
            (0..1000).try_for_each(|k| tx.insert("Doc", k).map(drop))
        })
        .expect("writes");
    let ack = server
        .integrate(PeerId(1), writers[0].upload())
        .expect("integrates");
    writers[0].acknowledge(ack);
    for w in &mut writers {
        let d = server.download(w.peer(), w.cursor(), None).expect("whole");
        w.integrate(d).expect("integrates");
    }
    for i in 0..n {
        let w = &mut writers[i % 10];
        let k = (i % 1000) as i64;
        w.write(i as u64 + 2, |tx| {
            tx.set("Doc", k, "title", format!("v{i}"))?;
            tx.add_int("Doc", k, "n", 1)
        })
        .expect("writes");
        let ack = server.integrate(w.peer(), w.upload()).expect("integrates");
        w.acknowledge(ack);
        let d = server.download(w.peer(), w.cursor(), None).expect("whole");
        w.integrate(d).expect("integrates");
    }
    server
}

fn bootstrap(c: &mut Criterion) {
    let mut g = c.benchmark_group("NewDevice");
    g.sample_size(10);
    for n in [10_000usize, 100_000] {
        let server = server_with_history(n);
        let state = server.state_snapshot();
        eprintln!(
            "history of {n} changesets: state snapshot {} bytes",
            state.len()
        );
        g.bench_with_input(BenchmarkId::new("download_history", n), &server, |b, s| {
            b.iter(|| {
                let mut c = Client::new(PeerId(99));
                let d = s.download(c.peer(), c.cursor(), None).expect("whole");
                c.integrate(d).expect("integrates");
                c
            })
        });
        g.bench_with_input(BenchmarkId::new("from_state", n), &state, |b, state| {
            b.iter(|| Client::bootstrap(PeerId(99), state).expect("loads"))
        });
    }
    g.finish();
}

fn compaction(c: &mut Criterion) {
    let server = server_with_history(100_000);
    let bytes = |s: &Server| {
        (s.history().iter())
            .map(|(v, _)| s.history().encoded(v).map_or(0, |b| b.len()))
            .sum::<usize>()
    };
    let mut compacted = Server::load(&server.save()).expect("loads");
    let removed = compacted.compact();
    eprintln!(
        "compaction of 100,000 changesets: {removed} instructions removed, history {} -> {} bytes",
        bytes(&server),
        bytes(&compacted)
    );
    let mut g = c.benchmark_group("Compaction");
    g.sample_size(10);
    g.bench_function("compact_100k_changesets", |b| {
        b.iter_batched(
            || Server::load(&server.save()).expect("loads"),
            |mut s| s.compact(),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, snapshots, bootstrap, compaction);
criterion_main!(benches);
