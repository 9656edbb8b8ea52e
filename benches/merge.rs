//! Merge benchmarks after realm-core's bench_transform.cpp: the time a receiving client takes
//! from having the downloaded changesets in hand to having them integrated (merged with its own
//! unsynced changesets and applied to its MemoryStore); and the cost of change notifications on
//! them (group Observe: a representative size of each, with the receiving client observing
//! nothing, an unrelated type, or every type); and the cost of permission checks on the
//! server (group Permissions: a user's upload of `n` transactions, each updating one of `n`
//! objects, integrated by a server whose realm has no permission data (not checked), the
//! default all-granted permissions (every instruction checked), or an ACL on every object).
//!
//!     cargo bench --bench merge

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion,
};
use objsync::permissions::{self, Identity, Level, Privileges};
use objsync::sync::{Client, Download, Server, Upload};
use objsync::{
    Error, ObjRef, ObjectType, Observe, PeerId, PropType, Property, Store, Transaction, Value,
};

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
    let d = server
        .download(b.peer(), b.cursor(), None)
        .expect("the history is whole");
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
    let d = server
        .download(b.peer(), b.cursor(), None)
        .expect("the history is whole");
    (b, d)
}

/// Times the receiving client's integration of the download `setup` prepares; building the
/// scenario and dropping the client stay outside the measurement.
fn measure(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    setup: impl Fn() -> (Client, Download),
) {
    g.bench_function(id, |bench| {
        bench.iter_batched(
            &setup,
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

/// MergeNxNInstructions: each peer creates `n` objects in one transaction, erasing one in four.
fn nxn_instructions(n: usize) -> (Client, Download) {
    let schema = vec![ObjectType::new("Obj", None, [prop("v", "int")]).expect("type")];
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
    scenario(schema, work)
}

fn merge_nxn_instructions(c: &mut Criterion) {
    let mut g = c.benchmark_group("MergeNxNInstructions");
    g.sample_size(10);
    for n in [1000usize, 2000, 4000, 8000, 16000] {
        measure(&mut g, BenchmarkId::from_parameter(n), || {
            nxn_instructions(n)
        });
    }
    g.finish();
}

/// MergeNxNTransactions: each peer creates `n` objects holding 500 bytes of text, one per
/// transaction, erasing one in four.
fn nxn_transactions(n: usize) -> (Client, Download) {
    let text: String = "x".repeat(500);
    let schema = vec![ObjectType::new("Obj", None, [prop("s", "string")]).expect("type")];
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
    scenario(schema, work)
}

fn merge_nxn_transactions(c: &mut Criterion) {
    let mut g = c.benchmark_group("MergeNxNTransactions");
    g.sample_size(10);
    for n in [100usize, 500, 1000, 2000, 4000, 8000, 16000] {
        measure(&mut g, BenchmarkId::from_parameter(n), || {
            nxn_transactions(n)
        });
    }
    g.finish();
}

/// ManyConnectedObjects: each peer creates `n` objects linking to one of them.
fn connected_objects(n: usize) -> (Client, Download) {
    let work = move |cl: &mut Client| {
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
            for i in 0..n {
                let k = i.to_string();
                tx.insert("Node", k.as_str())?;
                tx.set("Node", k.as_str(), "to", Value::Link("Hello".into()))?;
            }
            Ok(())
        })
        .expect("write");
    };
    scenario(Vec::new(), work)
}

fn many_connected_objects(c: &mut Criterion) {
    let mut g = c.benchmark_group("ManyConnectedObjects");
    g.sample_size(10);
    for n in [1000usize, 4000] {
        measure(&mut g, BenchmarkId::from_parameter(n), || {
            connected_objects(n)
        });
    }
    g.finish();
}

/// Not one of realm-core's: sqrt(N) clients each insert N / sqrt(N) values, one per
/// transaction, at random positions of one shared list. Every client but the receiving one has
/// uploaded; the receiving client, with its own inserts unsynced, integrates all the others'.
fn hot_list_setup(n: usize) -> (Client, Download) {
    let doc = ObjectType::new(
        "Doc",
        Some("id"),
        [prop("id", "int"), prop("items", "list<int>")],
    )
    .expect("type");
    let (mut server, mut first, receiver) = pair(vec![doc]);
    first.write(2, |tx| tx.insert("Doc", 1)).expect("the list");
    let ack = server
        .integrate(first.peer(), first.upload())
        .expect("upload");
    first.acknowledge(ack);
    let k = (n as f64).sqrt() as u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut below = |m: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % m as u64) as usize
    };
    let mut receiver = receiver;
    let d = server
        .download(receiver.peer(), receiver.cursor(), None)
        .expect("the history is whole");
    receiver.integrate(d).expect("the list");
    let mut writers: Vec<Client> = (3..k + 2).map(|p| Client::new(PeerId(p))).collect();
    for w in &mut writers {
        let d = server
            .download(w.peer(), w.cursor(), None)
            .expect("the history is whole");
        w.integrate(d).expect("the list");
    }
    writers.push(receiver);
    for w in &mut writers {
        for i in 0..n as u64 / k {
            let at = below(i as usize + 1);
            w.write(10 + i, |tx| tx.list_insert("Doc", 1, "items", at, i as i64))
                .expect("insert");
        }
    }
    let receiver = writers.pop().expect("the receiver");
    for w in &mut writers {
        server.integrate(w.peer(), w.upload()).expect("upload");
    }
    let d = server
        .download(receiver.peer(), receiver.cursor(), None)
        .expect("the history is whole");
    (receiver, d)
}

fn hot_list(c: &mut Criterion) {
    let mut g = c.benchmark_group("HotList");
    g.sample_size(10);
    for n in [2_500usize, 10_000, 40_000] {
        measure(&mut g, BenchmarkId::from_parameter(n), || hot_list_setup(n));
    }
    g.finish();
}

/// What the receiving client observes in the Observe group.
#[derive(Clone, Copy)]
enum Watching {
    /// Nothing: the merge benchmarks as they are.
    Nothing,
    /// A type the workload does not touch: every effect pays the check and nothing more.
    OtherType,
    /// Every type the workload touches: every effect is recorded and folded into changes.
    EveryType,
}

/// A representative size of each merge benchmark, with the receiving client observing
/// nothing, another type, or every type; the measurement includes taking the changes.
fn observe(c: &mut Criterion) {
    let mut g = c.benchmark_group("Observe");
    g.sample_size(10);
    type Setup = Box<dyn Fn() -> (Client, Download)>;
    let workloads: [(&str, &str, Setup); 4] = [
        (
            "MergeNxNInstructions/4000",
            "Obj",
            Box::new(|| nxn_instructions(4000)),
        ),
        (
            "MergeNxNTransactions/4000",
            "Obj",
            Box::new(|| nxn_transactions(4000)),
        ),
        (
            "ManyConnectedObjects/1000",
            "Node",
            Box::new(|| connected_objects(1000)),
        ),
        ("HotList/10000", "Doc", Box::new(|| hot_list_setup(10_000))),
    ];
    for (name, ty, setup) in &workloads {
        for (mode, watching) in [
            ("nothing", Watching::Nothing),
            ("other-type", Watching::OtherType),
            ("every-type", Watching::EveryType),
        ] {
            g.bench_function(BenchmarkId::new(*name, mode), |bench| {
                bench.iter_batched(
                    || {
                        let (mut client, d) = setup();
                        match watching {
                            Watching::Nothing => {}
                            Watching::OtherType => {
                                client.observe(Observe::ty("Unrelated"));
                            }
                            Watching::EveryType => {
                                client.observe(Observe::ty(ty));
                            }
                        }
                        (client, d)
                    },
                    |(mut client, d)| {
                        client.integrate(d).expect("integrates");
                        let changes = client.take_changes();
                        (client, changes)
                    },
                    BatchSize::LargeInput,
                )
            });
        }
    }
    g.finish();
}

/// The permission data of a [`permission_setup`]: none, the defaults made explicit, or an ACL
/// on every object.
#[derive(Clone, Copy, Debug)]
enum PermissionData {
    None,
    Defaults,
    Acl,
}

/// A server holding `n` objects written by the admin (with `data`), and a user's upload of `n`
/// transactions, each updating one of them.
fn permission_setup(n: usize, data: PermissionData) -> (Server, Upload) {
    let mut server = Server::new();
    server.set_identity(PeerId(1), Identity::Admin);
    server.set_identity(PeerId(2), Identity::User("u".into()));
    let mut admin = Client::new(PeerId(1));
    let mut user = Client::new(PeerId(2));
    let acl = matches!(data, PermissionData::Acl);
    admin
        .write(1, |tx| {
            let mut props = vec![prop("id", "int"), prop("v", "int")];
            if !matches!(data, PermissionData::None) {
                permissions::ensure_system_types(tx)?;
                let all = |_| Privileges::ALL;
                permissions::grant(tx, permissions::EVERYONE, &Level::Realm, all)?;
            }
            if acl {
                props.push(prop("acl", "list<link<__Permission>>"));
            }
            tx.add_type(ObjectType::new("Obj", Some("id"), props)?)?;
            for k in 0..n as i64 {
                tx.insert("Obj", k)?;
                if acl {
                    let object = Level::Object(ObjRef::new("Obj", k));
                    permissions::grant(tx, permissions::EVERYONE, &object, |_| Privileges::ALL)?;
                }
            }
            Ok(())
        })
        .expect("setup");
    let ack = server
        .integrate(admin.peer(), admin.upload())
        .expect("upload");
    admin.acknowledge(ack);
    let d = server
        .download(user.peer(), user.cursor(), None)
        .expect("whole");
    user.integrate(d).expect("download");
    for k in 0..n as i64 {
        user.write(10 + k as u64, |tx| tx.set("Obj", k, "v", k))
            .expect("write");
    }
    let upload = user.upload();
    (server, upload)
}

fn permission_checks(c: &mut Criterion) {
    let mut g = c.benchmark_group("Permissions");
    g.sample_size(10);
    for n in [1000usize, 4000] {
        for data in [
            PermissionData::None,
            PermissionData::Defaults,
            PermissionData::Acl,
        ] {
            let id = BenchmarkId::new(format!("{data:?}"), n);
            g.bench_function(id, |bench| {
                bench.iter_batched(
                    || permission_setup(n, data),
                    |(mut server, upload)| {
                        server.integrate(PeerId(2), upload).expect("integrates");
                        server
                    },
                    BatchSize::LargeInput,
                )
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    permission_checks,
    merge_nxn_instructions,
    merge_nxn_transactions,
    many_connected_objects,
    hot_list,
    observe
);
criterion_main!(benches);
