//! Merge benchmarks after realm-core's bench_transform.cpp: the time a receiving client takes
//! from having the downloaded changesets in hand to having them integrated (merged with its own
//! unsynced changesets and applied to its MemoryStore).
//!
//!     cargo bench --bench merge

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion,
};
use objsync::sync::{Client, Download, Server};
use objsync::{Error, ObjectType, PeerId, PropType, Property, Store, Transaction, Value};

fn prop(n: &str, t: &str) -> Property {
    Property::new(n, PropType::parse(t).expect("type"))
}

/// A server and two clients that share `schema`, with nothing else synced.
fn pair(schema: Vec<ObjectType>) -> (Server, Client, Client) {
    let mut server = Server::new();
    let mut a = Client::new(PeerId(1));
    let mut b = Client::new(PeerId(2));
    a.write(1, |tx| {
        for t in schema {
            tx.add_type(t)?;
        }
        Ok(())
    })
    .expect("schema");
    let ack = server.integrate(a.peer(), a.upload()).expect("upload");
    a.acknowledge(ack);
    let d = server.download(b.peer(), b.cursor(), None);
    b.integrate(d).expect("download");
    (server, a, b)
}

/// Both peers write with `work`; returns the receiving client and the download it must
/// integrate (the other peer's changesets).
fn scenario(schema: Vec<ObjectType>, work: impl Fn(&mut Client)) -> (Client, Download) {
    let (mut server, mut a, mut b) = pair(schema);
    work(&mut a);
    work(&mut b);
    let ack = server.integrate(a.peer(), a.upload()).expect("upload");
    a.acknowledge(ack);
    let d = server.download(b.peer(), b.cursor(), None);
    (b, d)
}

/// Times the receiving client's integration; building the scenario and dropping the client stay
/// outside the measurement.
fn measure(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    schema: impl Fn() -> Vec<ObjectType>,
    work: impl Fn(&mut Client),
) {
    g.bench_function(id, |bench| {
        bench.iter_batched(
            || scenario(schema(), &work),
            |(mut client, d)| {
                client.integrate(d).expect("integrates");
                client
            },
            BatchSize::LargeInput,
        )
    });
}

fn erase_first(tx: &mut Transaction<'_, objsync::MemoryStore>, ty: &str) -> Result<(), Error> {
    let first = tx.store().objects(ty)?.into_iter().next();
    match first {
        Some(k) => tx.delete(ty, k),
        None => Ok(()),
    }
}

fn merge_nxn_instructions(c: &mut Criterion) {
    let mut g = c.benchmark_group("MergeNxNInstructions");
    g.sample_size(10);
    for n in [1000usize, 2000, 4000, 8000, 16000] {
        let schema = || vec![ObjectType::new("Obj", None, [prop("v", "int")]).expect("type")];
        let work = |cl: &mut Client| {
            cl.write(10 + cl.peer().0, |tx| {
                for i in 0..n {
                    let k = tx.create("Obj")?;
                    tx.set("Obj", k, "v", 123)?;
                    if i % 4 == 3 {
                        erase_first(tx, "Obj")?;
                    }
                }
                Ok(())
            })
            .expect("write");
        };
        measure(&mut g, BenchmarkId::from_parameter(n), schema, work);
    }
    g.finish();
}

fn merge_nxn_transactions(c: &mut Criterion) {
    let mut g = c.benchmark_group("MergeNxNTransactions");
    g.sample_size(10);
    let text: String = "x".repeat(500);
    for n in [100usize, 500, 1000, 2000, 4000, 8000, 16000] {
        let schema = || vec![ObjectType::new("Obj", None, [prop("s", "string")]).expect("type")];
        let work = |cl: &mut Client| {
            for i in 0..n {
                cl.write(10 + i as u64 * 2 + cl.peer().0, |tx| {
                    let k = tx.create("Obj")?;
                    tx.set("Obj", k, "s", text.as_str())?;
                    if i % 4 == 3 {
                        erase_first(tx, "Obj")?;
                    }
                    Ok(())
                })
                .expect("write");
            }
        };
        measure(&mut g, BenchmarkId::from_parameter(n), schema, work);
    }
    g.finish();
}

fn many_connected_objects(c: &mut Criterion) {
    let mut g = c.benchmark_group("ManyConnectedObjects");
    g.sample_size(10);
    let work = |cl: &mut Client| {
        cl.write(10 + cl.peer().0, |tx| {
            tx.add_type(
                ObjectType::new(
                    "Node",
                    Some("id"),
                    [prop("id", "string"), prop("to", "link<Node>")],
                )
                .expect("type"),
            )?;
            tx.insert("Node", "Hello")?;
            for i in 0..1000 {
                let k = i.to_string();
                tx.insert("Node", k.as_str())?;
                tx.set("Node", k.as_str(), "to", Value::Link("Hello".into()))?;
            }
            Ok(())
        })
        .expect("write");
    };
    measure(&mut g, BenchmarkId::from_parameter(1000), Vec::new, work);
    g.finish();
}

criterion_group!(
    benches,
    merge_nxn_instructions,
    merge_nxn_transactions,
    many_connected_objects
);
criterion_main!(benches);
