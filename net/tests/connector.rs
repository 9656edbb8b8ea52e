//! `pg-connector` with real processes: the `server` and `pg-connector` binaries and a real
//! PostgreSQL (`TempPostgres`: initdb + pg_ctl on a free port), with devices syncing in this
//! process. Devices write and the rows appear in PostgreSQL; rows changed with `psql` appear on
//! the devices, and are not echoed back; a connector killed with SIGKILL in the middle of a
//! backlog and started again mirrors every transaction exactly once (a list that every
//! transaction appends to would show a repeat or a gap); `--initialize-from-postgres` makes a
//! realm from existing tables.
//!
//! `connector_throughput` (ignored; run it with `--ignored --nocapture`) measures rows per
//! second into PostgreSQL for 100,000 objects.

#![forbid(unsafe_code)]

mod common;

use common::Proc;
use std::ffi::OsStr;

use objsync::session::{ClientConfig, ClientEvent};
use objsync::wire::Limits;
use objsync_net::client::{run, Flow, Local, RealmUrl};
use objsync_testkit::postgres::TempPostgres;
use serde_json::{json, Value as Json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"{"admin_token": "admin", "users": {"t-alice": "alice"}}"#;

/// Starts the server over `dir/data`; returns it and its address.
fn server(dir: &Path) -> (Proc, String) {
    let config = dir.join("config.json");
    std::fs::write(&config, CONFIG).unwrap();
    let data = dir.join("data");
    let args = [OsStr::new("--data"), data.as_os_str()];
    let args = [&args[..], &[OsStr::new("--config"), config.as_os_str()]].concat();
    common::start_server(&args, "warn", &dir.join("server.stderr"))
}

/// Starts the connector; its log lines come out of the channel.
fn connector(addr: &str, paths: &str, pg: &str, extra: &[&str]) -> (Proc, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pg-connector"))
        .args(["--server", &format!("realm://{addr}"), "--token", "admin"])
        .args(["--paths", paths, "--postgres", pg])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Proc(child), rx)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn config(path: &str) -> ClientConfig {
    ClientConfig {
        path: path.into(),
        token: "admin".into(),
        limits: Limits::default(),
        start_from_state: false,
    }
}

/// Syncs `local` until the server has everything it wrote and it has everything the server had.
async fn sync(local: &mut Local, addr: &str, path: &str) {
    let url = RealmUrl::parse(&format!("realm://{addr}{path}")).unwrap();
    let (mut mark, mut reached) = (0, false);
    let on_event = |local: &mut Local, event: &ClientEvent| {
        match event {
            ClientEvent::Identified(_) => {
                mark += 1;
                local.session.mark(mark);
            }
            ClientEvent::MarkReached(m) => reached |= *m == mark,
            _ => {}
        }
        Ok(if reached && local.all_acknowledged() {
            Flow::Done
        } else {
            Flow::Continue
        })
    };
    run(local, &url, Some(10), on_event, |_, _| {})
        .await
        .unwrap();
}

/// The realm's state as a new device gets it.
async fn state(addr: &str, path: &str) -> Json {
    let mut local = Local::in_memory(config(path));
    sync(&mut local, addr, path).await;
    serde_json::from_str(&local.state()).unwrap()
}

/// Waits until `f` holds, failing after `secs`.
fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn pg_start(db: &str) -> TempPostgres {
    let pg = TempPostgres::start().expect("PostgreSQL for the test");
    pg.create_database(db).unwrap();
    pg
}

#[test]
fn device_writes_reach_postgres_and_psql_changes_reach_devices_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let pg = pg_start("shop");
    let (_server, addr) = server(dir.path());
    let (_connector, _log) = connector(&addr, "/shop/.*", &pg.connstr_for("shop"), &[]);
    let rt = runtime();
    let ops = json!([
        {"op": "add_type", "type": "Person", "primary_key": "id",
         "properties": {"id": "string", "name": "string"}},
        {"op": "add_type", "type": "Item", "primary_key": "id",
         "properties": {"id": "int", "name": "string", "price": "double?", "seen": "date?",
                        "blob": "data?", "cost": "decimal?", "ok": "bool", "owner": "link<Person>",
                        "tags": "list<string>"}},
        {"op": "insert", "type": "Person", "pk": "ann", "values": {"name": "Ann"}},
        {"op": "insert", "type": "Item", "pk": 1, "values": {"name": "pen", "price": 1.5,
         "seen": 1_700_000_000_000_i64, "blob": "aGk=", "cost": "12.50", "ok": true, "owner": "ann",
         "tags": ["a", "b"]}},
        {"op": "insert", "type": "Item", "pk": 2, "values": {"name": "cup"}},
    ]);
    let mut device = Local::in_memory(config("/shop/a"));
    device.apply(&ops.to_string()).unwrap();
    rt.block_on(sync(&mut device, &addr, "/shop/a"));
    let items = "SELECT id, name, price, (extract(epoch from seen) * 1000)::bigint, \
                 encode(blob, 'base64'), cost, ok, owner FROM \"shop/a\".\"Item\" ORDER BY id";
    let psql = |sql: &str| pg.psql("shop", sql).unwrap();
    // The connector makes its tables when it starts: until then the query fails.
    wait_for(30, "the rows in PostgreSQL", || {
        pg.psql("shop", items)
            .is_ok_and(|rows| rows.lines().count() == 2)
    });
    assert_eq!(
        psql(items),
        "1|pen|1.5|1700000000000|aGk=|12.50|t|ann\n2|cup|||||f|\n"
    );
    assert_eq!(
        psql("SELECT owner, idx, value FROM \"shop/a\".\"Item_tags\" ORDER BY idx"),
        "1|0|a\n1|1|b\n"
    );
    assert_eq!(
        psql("SELECT path, schema FROM objsync_realms"),
        "/shop/a|shop/a\n"
    );
    // Another program changes rows.
    psql(
        "UPDATE \"shop/a\".\"Item\" SET name = 'pencil' WHERE id = 1; \
         DELETE FROM \"shop/a\".\"Item\" WHERE id = 2; \
         INSERT INTO \"shop/a\".\"Item\" (id, name, ok) VALUES (3, 'ink', true); \
         INSERT INTO \"shop/a\".\"Item_tags\" VALUES (1, 2, 'c');",
    );
    wait_for(30, "the device to see the psql changes", || {
        let s = rt.block_on(state(&addr, "/shop/a"));
        s["Item"]["1"]["name"] == "pencil"
            && s["Item"].get("2").is_none()
            && s["Item"]["3"]["name"] == "ink"
            && s["Item"]["1"]["tags"] == json!(["a", "b", "c"])
    });
    let s = rt.block_on(state(&addr, "/shop/a"));
    assert_eq!(
        s["Item"]["1"]["price"], 1.5,
        "untouched columns keep their values"
    );
    assert_eq!(s["Item"]["1"]["owner"], "ann");
    // No echo: once the connector's own write came back through the feed, nothing moves.
    wait_for(30, "the outbox to drain", || {
        psql("SELECT count(*) FROM objsync_outbox").trim() == "0"
    });
    std::thread::sleep(Duration::from_secs(3));
    let version = psql("SELECT version FROM objsync_feed");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        psql("SELECT version FROM objsync_feed"),
        version,
        "the realm stays still"
    );
    assert_eq!(psql("SELECT count(*) FROM objsync_outbox").trim(), "0");
    // A device's write after that still arrives.
    let mut device = Local::in_memory(config("/shop/a"));
    rt.block_on(sync(&mut device, &addr, "/shop/a"));
    let more = json!([
        {"op": "set", "type": "Item", "pk": 3, "values": {"price": 2.25}},
        {"op": "add_properties", "type": "Item", "properties": {"stock": "int"}},
        {"op": "set", "type": "Item", "pk": 1, "values": {"stock": 5}},
    ]);
    device.apply(&more.to_string()).unwrap();
    rt.block_on(sync(&mut device, &addr, "/shop/a"));
    // A schema addition is a column; existing rows hold the property's default.
    wait_for(30, "the device's later write", || {
        pg.psql(
            "shop",
            "SELECT id, price, stock FROM \"shop/a\".\"Item\" ORDER BY id",
        )
        .is_ok_and(|rows| rows == "1|1.5|5\n3|2.25|0\n")
    });
}

#[test]
fn rows_of_a_type_without_a_primary_key_go_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let pg = pg_start("notes");
    let (_server, addr) = server(dir.path());
    let (_connector, _log) = connector(&addr, "/notes/.*", &pg.connstr_for("notes"), &[]);
    let rt = runtime();
    let ops = json!([
        {"op": "add_type", "type": "Note", "properties": {"text": "string"}},
        {"op": "insert", "type": "Note", "values": {"text": "first"}},
        {"op": "insert", "type": "Note", "values": {"text": "second"}},
    ]);
    let mut device = Local::in_memory(config("/notes/n"));
    device.apply(&ops.to_string()).unwrap();
    rt.block_on(sync(&mut device, &addr, "/notes/n"));
    let notes = "SELECT _id, text FROM \"notes/n\".\"Note\" ORDER BY text";
    wait_for(30, "the notes in PostgreSQL", || {
        pg.psql("notes", notes)
            .is_ok_and(|rows| rows.lines().count() == 2)
    });
    // Rows are keyed by the objects' engine ids.
    let texts = |state: &Json| -> Vec<(String, String)> {
        let mut v: Vec<_> = (state["Note"].as_object().into_iter().flatten())
            .map(|(k, o)| (k.clone(), o["text"].as_str().unwrap_or("").to_string()))
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        v
    };
    let before = texts(&rt.block_on(state(&addr, "/notes/n")));
    let rows: String = before.iter().map(|(k, t)| format!("{k}|{t}\n")).collect();
    assert_eq!(pg.psql("notes", notes).unwrap(), rows);
    // Another program updates and deletes rows by engine id, and inserts one with a key of its
    // own: the realm mints the object's id, which replaces the program's key in the table.
    pg.psql(
        "notes",
        "UPDATE \"notes/n\".\"Note\" SET text = 'changed' WHERE text = 'first'; \
         DELETE FROM \"notes/n\".\"Note\" WHERE text = 'second'; \
         INSERT INTO \"notes/n\".\"Note\" (_id, text) VALUES ('mine', 'third');",
    )
    .unwrap();
    wait_for(30, "the device to see the psql changes", || {
        let now = texts(&rt.block_on(state(&addr, "/notes/n")));
        now.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>() == ["changed", "third"]
    });
    let after = texts(&rt.block_on(state(&addr, "/notes/n")));
    assert_eq!(after[0].0, before[0].0, "an update keeps the object");
    wait_for(30, "the program's row to take the minted id", || {
        let rows: String = after.iter().map(|(k, t)| format!("{k}|{t}\n")).collect();
        pg.psql("notes", notes).is_ok_and(|r| r == rows)
    });
    wait_for(30, "the outbox to drain", || {
        pg.psql("notes", "SELECT count(*) FROM objsync_outbox")
            .is_ok_and(|n| n.trim() == "0")
    });
}

/// A realm whose every transaction inserts an Entry and appends to one list.
fn write_log(
    rt: &tokio::runtime::Runtime,
    addr: &str,
    path: &str,
    transactions: usize,
    per: usize,
) {
    let mut device = Local::in_memory(config(path));
    let schema = json!([
        {"op": "add_type", "type": "Log", "primary_key": "id",
         "properties": {"id": "int", "entries": "list<string>"}},
        {"op": "add_type", "type": "Entry", "primary_key": "id",
         "properties": {"id": "int", "n": "int", "text": "string"}},
        {"op": "insert", "type": "Log", "pk": 1},
    ]);
    device.apply(&schema.to_string()).unwrap();
    for t in 0..transactions {
        let mut ops = Vec::new();
        for k in 0..per {
            let id = t * per + k;
            ops.push(json!({"op": "insert", "type": "Entry", "pk": id,
                "values": {"n": id, "text": format!("entry number {id}")}}));
        }
        ops.push(
            json!({"op": "list_insert", "type": "Log", "pk": 1, "property": "entries",
            "index": t, "value": format!("e{t}")}),
        );
        device.apply(&Json::Array(ops).to_string()).unwrap();
    }
    rt.block_on(sync(&mut device, addr, path));
}

#[test]
fn a_connector_killed_during_a_backlog_mirrors_every_transaction_exactly_once() {
    const TRANSACTIONS: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let pg = pg_start("log");
    let (_server, addr) = server(dir.path());
    let rt = runtime();
    write_log(&rt, &addr, "/log/x", TRANSACTIONS, 1);
    let conn = pg.connstr_for("log");
    let psql = |sql: &str| pg.psql("log", sql).unwrap();
    let (first, log) = connector(&addr, "/log/.*", &conn, &["--batch", "20"]);
    // Killed right after its first batch is committed.
    loop {
        let line = log
            .recv_timeout(Duration::from_secs(60))
            .expect("the connector logs");
        if line.contains("mirrored") {
            break;
        }
    }
    drop(first);
    let at_kill: u64 = psql("SELECT version FROM objsync_feed")
        .trim()
        .parse()
        .unwrap();
    let latest = TRANSACTIONS as u64 + 1;
    assert!(
        at_kill < latest,
        "killed during the backlog ({at_kill} of {latest})"
    );
    let (_second, _log) = connector(&addr, "/log/.*", &conn, &["--batch", "20"]);
    wait_for(120, "the backlog", || {
        psql("SELECT version FROM objsync_feed").trim() == latest.to_string()
    });
    let n = TRANSACTIONS;
    assert_eq!(
        psql("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM \"log/x\".\"Entry\""),
        format!("{n}|{n}|0|{}\n", n - 1)
    );
    // Every append exactly once, in order: a repeated transaction would add an element, a
    // lost one leave a gap.
    assert_eq!(
        psql("SELECT count(*), min(idx), max(idx) FROM \"log/x\".\"Log_entries\""),
        format!("{n}|0|{}\n", n - 1)
    );
    assert_eq!(
        psql("SELECT count(*) FROM \"log/x\".\"Log_entries\" WHERE value <> 'e' || idx"),
        "0\n"
    );
}

#[test]
fn existing_tables_become_a_realm_and_stay_mirrored() {
    let dir = tempfile::tempdir().unwrap();
    let pg = pg_start("legacy");
    let psql = |sql: &str| pg.psql("legacy", sql).unwrap();
    psql(
        "CREATE SCHEMA legacy; \
         CREATE TABLE legacy.person (id bigint PRIMARY KEY, name text NOT NULL, born date); \
         CREATE TABLE legacy.pet (id text PRIMARY KEY, owner bigint REFERENCES legacy.person (id), \
                                  weight double precision); \
         INSERT INTO legacy.person VALUES (1, 'Ann', '1990-01-02'), (2, 'Bob', NULL); \
         INSERT INTO legacy.pet VALUES ('rex', 1, 3.5), ('tom', NULL, NULL);",
    );
    let (_server, addr) = server(dir.path());
    let (_connector, _log) = connector(
        &addr,
        "/legacy/.*",
        &pg.connstr_for("legacy"),
        &["--initialize-from-postgres", "legacy:/legacy/db"],
    );
    let rt = runtime();
    wait_for(30, "the realm made from the tables", || {
        let s = rt.block_on(state(&addr, "/legacy/db"));
        s["pet"]["rex"]["owner"] == 1 && s["person"]["2"]["name"] == "Bob"
    });
    let s = rt.block_on(state(&addr, "/legacy/db"));
    assert_eq!(s["person"]["1"]["born"], 631_238_400_000_i64);
    assert_eq!(s["pet"]["rex"]["weight"], 3.5);
    assert_eq!(s["pet"]["tom"]["owner"], Json::Null);
    assert_eq!(
        psql("SELECT schema FROM objsync_realms WHERE path = '/legacy/db'"),
        "legacy\n"
    );
    // Both ways from then on.
    psql("UPDATE legacy.pet SET weight = 4 WHERE id = 'rex'");
    wait_for(30, "the device to see the update", || {
        rt.block_on(state(&addr, "/legacy/db"))["pet"]["rex"]["weight"] == 4.0
    });
    let mut device = Local::in_memory(config("/legacy/db"));
    rt.block_on(sync(&mut device, &addr, "/legacy/db"));
    let ops = json!([{"op": "insert", "type": "person", "pk": 3, "values": {"name": "Cy"}}]);
    device.apply(&ops.to_string()).unwrap();
    rt.block_on(sync(&mut device, &addr, "/legacy/db"));
    wait_for(30, "the device's row in the table", || {
        psql("SELECT name FROM legacy.person WHERE id = 3") == "Cy\n"
    });
}

#[test]
fn the_connector_rides_out_a_postgres_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pg = pg_start("restart");
    let (_server, addr) = server(dir.path());
    let (_connector, _log) = connector(&addr, "/r", &pg.connstr_for("restart"), &[]);
    let rt = runtime();
    let count = |n: &str| {
        pg.psql("restart", "SELECT count(*) FROM \"r\".\"Entry\"")
            .is_ok_and(|c| c.trim() == n)
    };
    write_log(&rt, &addr, "/r", 10, 1);
    wait_for(30, "the first rows", || count("10"));
    pg.restart().unwrap();
    let mut device = Local::in_memory(config("/r"));
    rt.block_on(sync(&mut device, &addr, "/r"));
    let more =
        json!([{"op": "insert", "type": "Entry", "pk": 100, "values": {"n": 1, "text": "after"}}]);
    device.apply(&more.to_string()).unwrap();
    rt.block_on(sync(&mut device, &addr, "/r"));
    wait_for(60, "the row written after the restart", || count("11"));
    pg.psql(
        "restart",
        "UPDATE \"r\".\"Entry\" SET text = 'psql' WHERE id = 100",
    )
    .unwrap();
    wait_for(60, "the psql change on a device", || {
        rt.block_on(state(&addr, "/r"))["Entry"]["100"]["text"] == "psql"
    });
}

/// Rows per second into PostgreSQL: 100,000 objects written by one device in 1,000
/// transactions of 100, already on the server when the connector starts; timed from the
/// connector's start to the last cursor committed.
#[test]
#[ignore = "a measurement: cargo test --release -p objsync-net --test connector -- --ignored --nocapture"]
fn connector_throughput() {
    const TRANSACTIONS: usize = 1_000;
    const PER: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let pg = pg_start("bench");
    let (_server, addr) = server(dir.path());
    let rt = runtime();
    write_log(&rt, &addr, "/bench/x", TRANSACTIONS, PER);
    let started = Instant::now();
    let (_connector, _log) = connector(&addr, "/bench/.*", &pg.connstr_for("bench"), &[]);
    let latest = (TRANSACTIONS + 1).to_string();
    wait_for(600, "the backlog", || {
        (pg.psql("bench", "SELECT version FROM objsync_feed")).is_ok_and(|v| v.trim() == latest)
    });
    let took = started.elapsed().as_secs_f64();
    // An Entry row per object, and a list element per transaction.
    let rows = TRANSACTIONS * PER + TRANSACTIONS;
    println!(
        "connector: {rows} rows ({} objects in {TRANSACTIONS} transactions) in {took:.2} s: {:.0} rows/s",
        TRANSACTIONS * PER,
        rows as f64 / took
    );
}
