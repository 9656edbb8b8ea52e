//! The Adapter feed over the network (spec/protocol.md section 13): the reference server in
//! this process over loopback, devices that sync with it, and a consumer over WebSocket
//! ([`FeedLink`]). A regular expression picks the realms; a consumer that starts again from
//! the cursors it kept gets exactly what came after them; one behind a trimmed history starts
//! from a snapshot; tokens other than the admin's are refused with a typed error.

#![forbid(unsafe_code)]

use objsync::feed::{ConsumerConfig, FeedConsumer, FeedCursor, FeedInstruction, FeedItem};
use objsync::session::ClientConfig;
use objsync::wire::{ErrorCode, Limits};
use objsync::ServerVersion;
use objsync_net::client::{run, Failure, Flow, Local, RealmUrl};
use objsync_net::consumer::FeedLink;
use objsync_net::server::{Config, Server};
use objsync_net::storage::Retention;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const CONFIG: &str = r#"{"admin_token": "admin", "users": {"t-alice": "alice"}}"#;

/// A server over `data`, serving on a loopback port; returns its address.
async fn start(data: &Path, keep: Option<u64>) -> String {
    let config = Config::parse(CONFIG).unwrap();
    let server = Server::keeping(
        data.to_path_buf(),
        config,
        Retention {
            keep_history: keep,
            compact: false,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(server.serve(listener));
    addr
}

/// One device writes `ops` to the realm at `path` and syncs until the server has them.
async fn write(addr: &str, path: &str, ops: serde_json::Value) {
    let config = ClientConfig {
        path: path.into(),
        token: "admin".into(),
        limits: Limits::default(),
        start_from_state: false,
    };
    let mut local = Local::in_memory(config);
    local.apply(&ops.to_string()).unwrap();
    let url = RealmUrl::parse(&format!("realm://{addr}{path}")).unwrap();
    let done = |l: &mut Local, _: &_| {
        Ok(if l.all_acknowledged() {
            Flow::Done
        } else {
            Flow::Continue
        })
    };
    run(&mut local, &url, Some(5), done, |_, _| {})
        .await
        .unwrap();
}

fn note(id: i64, text: &str) -> serde_json::Value {
    json!([
        {"op": "add_type", "type": "Note", "primary_key": "id",
         "properties": {"id": "int", "text": "string"}},
        {"op": "insert", "type": "Note", "pk": id, "values": {"text": text}},
    ])
}

fn consumer(token: &str, paths: &str, cursors: &BTreeMap<String, FeedCursor>) -> FeedConsumer {
    let config = ConsumerConfig {
        paths: paths.into(),
        token: token.into(),
        limits: Limits::default(),
    };
    FeedConsumer::new(config, cursors.clone())
}

/// Every item that comes within a short wait, as (path, item).
async fn drain(link: &mut FeedLink) -> Vec<(String, FeedItem)> {
    let mut items = Vec::new();
    while let Some(d) = link.next(Duration::from_secs(3)).await.unwrap() {
        items.push((d.path, d.item));
    }
    items
}

/// The values INSERTed into Note objects, per realm.
fn inserted(items: &[(String, FeedItem)]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, item) in items {
        let instructions = match item {
            FeedItem::Transaction(t) => &t.instructions,
            FeedItem::Snapshot(s) => &s.instructions,
        };
        for i in instructions {
            if let FeedInstruction::Insert { values, .. } = i {
                let text = values["text"].as_str().unwrap().to_string();
                out.entry(path.clone()).or_default().push(text);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_follows_the_realms_that_match_and_resumes_from_kept_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(&dir.path().join("data"), None).await;
    write(&addr, "/shop/a", note(1, "a1")).await;
    write(&addr, "/shop/b", note(1, "b1")).await;
    write(&addr, "/other", note(1, "o1")).await;
    let mut link = FeedLink::connect(
        &addr,
        consumer("admin", "/shop/.*", &BTreeMap::new()),
        &Limits::default(),
    )
    .await
    .unwrap();
    let items = drain(&mut link).await;
    assert_eq!(
        inserted(&items),
        BTreeMap::from([
            ("/shop/a".to_string(), vec!["a1".to_string()]),
            ("/shop/b".to_string(), vec!["b1".to_string()]),
        ]),
        "/other does not match"
    );
    // A realm created while the feed runs is followed, and a new write arrives.
    write(&addr, "/shop/c", note(1, "c1")).await;
    write(&addr, "/shop/a", note(2, "a2")).await;
    let items = drain(&mut link).await;
    assert_eq!(
        inserted(&items),
        BTreeMap::from([
            ("/shop/a".to_string(), vec!["a2".to_string()]),
            ("/shop/c".to_string(), vec!["c1".to_string()]),
        ])
    );
    let kept: BTreeMap<String, FeedCursor> = ["/shop/a", "/shop/b", "/shop/c"]
        .iter()
        .map(|p| (p.to_string(), link.consumer.cursor(p)))
        .collect();
    assert_eq!(kept["/shop/a"].version, ServerVersion(2));
    link.close().await;
    // While no consumer runs, more is written; a consumer from the kept cursors gets that only.
    write(&addr, "/shop/b", note(2, "b2")).await;
    write(&addr, "/shop/a", note(3, "a3")).await;
    let mut link = FeedLink::connect(
        &addr,
        consumer("admin", "/shop/.*", &kept),
        &Limits::default(),
    )
    .await
    .unwrap();
    let items = drain(&mut link).await;
    assert_eq!(
        inserted(&items),
        BTreeMap::from([
            ("/shop/a".to_string(), vec!["a3".to_string()]),
            ("/shop/b".to_string(), vec!["b2".to_string()]),
        ])
    );
    assert!(items
        .iter()
        .all(|(_, i)| matches!(i, FeedItem::Transaction(_))));
    link.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_trimmed_horizon_the_feed_starts_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let addr = start(&data, None).await;
    for k in 1..=4 {
        write(&addr, "/t", note(k, &format!("n{k}"))).await;
    }
    // Another server over a copy of the data keeps one entry: the realm is trimmed when it
    // opens.
    let copy = dir.path().join("copy");
    copy_dir(&data, &copy);
    let addr = start(&copy, Some(1)).await;
    let mut link = FeedLink::connect(
        &addr,
        consumer("admin", "/t", &BTreeMap::new()),
        &Limits::default(),
    )
    .await
    .unwrap();
    let items = drain(&mut link).await;
    let FeedItem::Snapshot(s) = &items[0].1 else {
        panic!("a snapshot first: {:?}", items[0])
    };
    assert_eq!(s.version, ServerVersion(4));
    assert_eq!(inserted(&items)["/t"], vec!["n1", "n2", "n3", "n4"]);
    assert_eq!(items.len(), 1);
    link.close().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "lock" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_admin_token_may_follow_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(&dir.path().join("data"), None).await;
    let refused = |token: &str, paths: &str| {
        let (addr, c) = (addr.clone(), consumer(token, paths, &BTreeMap::new()));
        async move {
            let mut link = FeedLink::connect(&addr, c, &Limits::default())
                .await
                .unwrap();
            match link.next(Duration::from_secs(5)).await {
                Err(Failure::Server(e)) => e.code,
                other => panic!("refused, not {other:?}"),
            }
        }
    };
    assert_eq!(refused("t-alice", ".*").await, ErrorCode::PermissionDenied);
    assert_eq!(refused("nobody", ".*").await, ErrorCode::BadAuthentication);
    assert_eq!(
        refused("admin", "(unclosed").await,
        ErrorCode::IllegalRealmPath
    );
}
