//! End-to-end tests of the reference server on PostgreSQL: a throwaway cluster
//! (`objsync_testkit::postgres`), several `server` processes over it, clients (in this test
//! process) spread over them, and the faults the storage must survive: a server killed with
//! SIGKILL mid-upload, PostgreSQL restarted mid-run. Every transaction adds 1 to a shared
//! counter, so a changeset integrated twice shows as a total too high, and one lost as one too
//! low or a missing item.

#![forbid(unsafe_code)]

mod common;

use common::Proc;

use objsync::json::{canonical, state_json};
use objsync::session::{ClientConfig, ClientEvent};
use objsync::wire::{Action, ErrorCode, Limits};
use objsync_net::client::{Failure, Flow, Live, Local, RealmUrl};
use objsync_net::storage::postgres::PgStorage;
use objsync_net::storage::Retention;
use objsync_net::storage::Storage;
use objsync_net::workload::counted_transaction;
use objsync_testkit::postgres::TempPostgres;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Barrier;

const CONFIG: &str = r#"{"admin_token": "admin-secret"}"#;
const TOKEN: &str = "admin-secret";
const REALM: &str = "/shared/board";

/// A server process over the database, killed (SIGKILL) when dropped.
struct ServerProc {
    proc: Proc,
    addr: String,
    log: PathBuf,
}

impl ServerProc {
    fn start(connstr: &str, dir: &Path, name: &str) -> ServerProc {
        let config = dir.join("config.json");
        std::fs::write(&config, CONFIG).expect("config");
        let log = dir.join(format!("{name}.stderr"));
        let args = [
            "--postgres",
            connstr,
            "--poll-ms",
            "200",
            "--status-secs",
            "1",
        ];
        let args = [
            &args[..],
            &["--config", config.to_str().expect("UTF-8 path")],
        ]
        .concat();
        let (proc, addr) = common::start_server(&args, "info", &log);
        ServerProc { proc, addr, log }
    }

    fn kill(&mut self) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
    }

    /// Sends SIGTERM.
    fn signal_term(&self) {
        let pid = self.proc.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    }

    /// Returns whether the server exited successfully within `patience`.
    fn exited(&mut self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.proc.0.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The servers' addresses, changed as servers are replaced; clients pick by index.
type Addrs = Arc<Mutex<Vec<String>>>;

/// What the writers had acknowledged, and how long each waits between transactions.
#[derive(Default)]
struct Progress {
    acknowledged: AtomicUsize,
    pace: Duration,
}

fn client_config() -> ClientConfig {
    ClientConfig {
        path: REALM.to_string(),
        token: TOKEN.to_string(),
        limits: Limits::default(),
        start_from_state: false,
    }
}

/// Writer `who` commits `count` transactions one after another (each once the last is
/// acknowledged), starting on server `who % 2` and moving to the other whenever its connection
/// fails; once every writer is done (`all_done`), waits until it holds everything (a MARK
/// answered). Returns its state.
async fn writer(
    who: usize,
    count: usize,
    addrs: Addrs,
    progress: Arc<Progress>,
    all_done: Arc<Barrier>,
) -> String {
    let mut local = Local::in_memory(client_config());
    let mut server = who % 2;
    let mut applied = 0;
    let mut mark = 0;
    let mut waited = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "writer {who} made no progress");
        let url = RealmUrl {
            authority: addrs.lock().expect("addresses")[server].clone(),
            path: REALM.to_string(),
        };
        let mut live = match Live::connect(&mut local, &url, &Limits::default()).await {
            Ok(live) => live,
            Err(_) => {
                server = 1 - server;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut written = drive(who, count, &mut local, &mut live, &mut applied, &progress).await;
        if written.is_ok() {
            if !waited {
                all_done.wait().await;
                waited = true;
            }
            written = sync_all(&mut local, &mut live, &mut mark).await;
        }
        match written {
            Ok(()) => {
                live.close(&mut local).await;
                return local.state();
            }
            Err(action) => {
                assert_eq!(action, Action::Retry, "writer {who} was told to {action:?}");
                local.session.disconnected();
                server = 1 - server;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One connection's worth of [`writer`]'s writing: returns the failure's action if it drops.
async fn drive(
    who: usize,
    count: usize,
    local: &mut Local,
    live: &mut Live,
    applied: &mut usize,
    progress: &Progress,
) -> Result<(), Action> {
    loop {
        if local.all_acknowledged() {
            if *applied == count {
                break;
            }
            local
                .apply(&counted_transaction(who, *applied))
                .expect("the transaction applies");
            *applied += 1;
        }
        live.pump(local, |local, _| {
            Ok(if local.all_acknowledged() {
                Flow::Done
            } else {
                Flow::Continue
            })
        })
        .await
        .map_err(|e| e.action())?;
        progress.acknowledged.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(progress.pace).await;
    }
    Ok(())
}

/// Asks for everything the realm holds now (a MARK) and waits for it.
async fn sync_all(local: &mut Local, live: &mut Live, mark: &mut u64) -> Result<(), Action> {
    *mark += 1;
    let wanted = *mark;
    local.session.mark(wanted);
    live.pump(local, |_, event| {
        Ok(match event {
            ClientEvent::MarkReached(m) if *m == wanted => Flow::Done,
            _ => Flow::Continue,
        })
    })
    .await
    .map_err(|e| e.action())
}

/// The realm as the database holds it, read by this test process through the same storage.
async fn stored_state(connstr: &str) -> String {
    let storage = PgStorage::connect(connstr, Retention::default(), Duration::from_secs(60))
        .await
        .expect("the database");
    let opened = storage.open(REALM).await.expect("the realm");
    canonical(&state_json(opened.realm.server().replica().store()).expect("state"))
}

/// Checks a converged state: every writer's every transaction is there once.
fn check_state(state: &str, writers: usize, count: usize) {
    let json: serde_json::Value = serde_json::from_str(state).expect("JSON state");
    let items = json["Item"].as_object().expect("items");
    for who in 0..writers {
        for t in 0..count {
            assert!(
                items.contains_key(&format!("{who}-{t}")),
                "{who}-{t} is missing"
            );
        }
    }
    assert_eq!(items.len(), writers * count + 1, "items: {state}");
    let total = items["counter"]["total"].as_i64();
    assert_eq!(
        total,
        Some((writers * count) as i64),
        "the counter shows a changeset lost or integrated twice"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Two server processes on one database, writers spread over both: every write reaches every
/// writer, each exactly once; the status line reports; SIGTERM ends a server cleanly.
#[test]
fn two_processes_on_one_database_converge() {
    const WRITERS: usize = 6;
    const COUNT: usize = 15;
    let pg = TempPostgres::start().expect("PostgreSQL");
    let dir = tempfile::tempdir().expect("temp dir");
    let connstr = pg.connstr();
    let mut servers = [
        ServerProc::start(&connstr, dir.path(), "a"),
        ServerProc::start(&connstr, dir.path(), "b"),
    ];
    let addrs: Addrs = Arc::new(Mutex::new(servers.iter().map(|s| s.addr.clone()).collect()));
    let rt = runtime();
    let progress = Arc::new(Progress::default());
    let all_done = Arc::new(Barrier::new(WRITERS));
    let states: Vec<String> = rt.block_on(async {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|who| {
                let (addrs, progress, all_done) =
                    (addrs.clone(), progress.clone(), all_done.clone());
                tokio::spawn(writer(who, COUNT, addrs, progress, all_done))
            })
            .collect();
        let mut states = Vec::new();
        for task in tasks {
            states.push(task.await.expect("writer"));
        }
        states
    });
    for state in &states {
        assert_eq!(state, &states[0], "the writers did not converge");
    }
    check_state(&states[0], WRITERS, COUNT);
    assert_eq!(rt.block_on(stored_state(&connstr)), states[0]);
    std::thread::sleep(Duration::from_millis(1200));
    // A session open at SIGTERM is closed with a retryable error.
    let closed = rt.block_on(async {
        let mut local = Local::in_memory(client_config());
        let url = RealmUrl {
            authority: servers[1].addr.clone(),
            path: REALM.to_string(),
        };
        let mut live = Live::connect(&mut local, &url, &Limits::default())
            .await
            .expect("connected");
        let identified = live
            .pump(&mut local, |_, event| {
                Ok(match event {
                    ClientEvent::Identified(_) => Flow::Done,
                    _ => Flow::Continue,
                })
            })
            .await;
        assert!(identified.is_ok(), "not identified");
        servers[1].signal_term();
        live.pump(&mut local, |_, _| Ok(Flow::Continue)).await
    });
    match closed {
        Err(Failure::Server(error)) => {
            assert_eq!(error.code, ErrorCode::ConnectionClosed, "{error:?}");
            assert_eq!(error.action, Action::Retry, "{error:?}");
        }
        other => panic!("the session was not closed with an ERROR: {other:?}"),
    }
    servers[0].signal_term();
    for server in &mut servers {
        assert!(server.exited(Duration::from_secs(15)), "{}", server.log());
        let log = server.log();
        assert!(
            log.contains("status") && log.contains("integrations_per_s"),
            "{log}"
        );
        assert!(log.contains("stopped"), "{log}");
    }
}

/// Writers spread over two servers while one is killed (SIGKILL) mid-run and replaced, then
/// every server's database connection is cut (`pg_terminate_backend`), then PostgreSQL itself
/// crashes and restarts: no acknowledged write is lost, none is integrated twice, and
/// everyone converges.
#[test]
fn a_killed_server_and_a_restarted_database_lose_nothing_acknowledged() {
    const WRITERS: usize = 4;
    const COUNT: usize = 100;
    let pg = TempPostgres::start().expect("PostgreSQL");
    let dir = tempfile::tempdir().expect("temp dir");
    let connstr = pg.connstr();
    let mut a = ServerProc::start(&connstr, dir.path(), "a");
    let b = ServerProc::start(&connstr, dir.path(), "b");
    let addrs: Addrs = Arc::new(Mutex::new(vec![a.addr.clone(), b.addr.clone()]));
    let rt = runtime();
    // Paced, so that the writers are still at work when each fault comes.
    let progress = Arc::new(Progress {
        acknowledged: AtomicUsize::new(0),
        pace: Duration::from_millis(20),
    });
    let all_done = Arc::new(Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|who| {
            let (addrs, progress, all_done) = (addrs.clone(), progress.clone(), all_done.clone());
            rt.spawn(writer(who, COUNT, addrs, progress, all_done))
        })
        .collect();
    let wait_for = |acks: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while progress.acknowledged.load(Ordering::Relaxed) < acks {
            assert!(
                Instant::now() < deadline,
                "the writers stalled before {acks} acks"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for(WRITERS * COUNT / 5);
    a.kill();
    let a = ServerProc::start(&connstr, dir.path(), "a2");
    addrs.lock().expect("addresses")[0] = a.addr.clone();
    wait_for(WRITERS * COUNT * 2 / 5);
    let cut = pg
        .psql(
            "postgres",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )
        .expect("connections cut");
    assert_ne!(cut.trim(), "0", "no server connection was cut");
    wait_for(WRITERS * COUNT / 2);
    pg.restart().expect("PostgreSQL restarts");
    assert!(
        progress.acknowledged.load(Ordering::Relaxed) < WRITERS * COUNT,
        "the writers were done before PostgreSQL restarted"
    );
    let states: Vec<String> = rt.block_on(async {
        let mut states = Vec::new();
        for task in tasks {
            states.push(task.await.expect("writer"));
        }
        states
    });
    for state in &states {
        assert_eq!(state, &states[0], "the writers did not converge");
    }
    check_state(&states[0], WRITERS, COUNT);
    assert_eq!(rt.block_on(stored_state(&connstr)), states[0]);
}

/// Each process that opens a realm snapshots it at the log's end and deletes the records
/// before the previous snapshot, so the log holds what two generations need; the realm
/// rebuilt from snapshot and log is the one the writers see, and `--keep-history` trims it.
/// A database whose schema is newer than the server's is refused.
#[test]
fn snapshots_on_postgres_bound_the_log() {
    const COUNT: usize = 10;
    let pg = TempPostgres::start().expect("PostgreSQL");
    let dir = tempfile::tempdir().expect("temp dir");
    let connstr = pg.connstr();
    let rt = runtime();
    let query = |sql: &str| -> i64 {
        let out = pg.psql("postgres", sql).expect("psql");
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{sql}: {out}"))
    };
    let mut snapshots = Vec::new();
    let mut state = String::new();
    for (who, name) in ["a", "b", "c"].into_iter().enumerate() {
        // A new process each time: the realm is opened (and snapshotted) at its first BIND.
        let server = ServerProc::start(&connstr, dir.path(), name);
        let addrs: Addrs = Arc::new(Mutex::new(vec![server.addr.clone(); 2]));
        let (progress, alone) = (Arc::new(Progress::default()), Arc::new(Barrier::new(1)));
        state = rt.block_on(writer(who, COUNT, addrs, progress, alone));
        snapshots.push(query("SELECT snapshot_at FROM objsync_server_realms"));
    }
    check_state(&state, 3, COUNT);
    let log_len = query("SELECT log_len FROM objsync_server_realms");
    assert!(snapshots[0] == 0 && snapshots[1] > 0 && snapshots[2] > snapshots[1]);
    assert_eq!(
        query("SELECT min(seq) FROM objsync_server_log"),
        snapshots[1]
    );
    assert_eq!(
        query("SELECT count(*) FROM objsync_server_log"),
        log_len - snapshots[1]
    );
    assert_eq!(rt.block_on(stored_state(&connstr)), state);
    let trimmed = rt.block_on(async {
        let storage = PgStorage::connect(
            &connstr,
            Retention {
                keep_history: Some(5),
                compact: true,
            },
            Duration::from_secs(60),
        )
        .await
        .expect("the database");
        storage.open(REALM).await.expect("the realm").realm
    });
    let server = trimmed.server();
    assert_eq!(server.history().horizon().0, server.version().0 - 5);
    // Trimmed and compacted, the realm in the database holds the same state.
    assert_eq!(rt.block_on(stored_state(&connstr)), state);
    // A schema newer than this server knows is refused, not used.
    pg.psql(
        "postgres",
        "UPDATE objsync_server_schema SET version = version + 1",
    )
    .expect("psql");
    let refused = rt.block_on(PgStorage::connect(
        &connstr,
        Retention::default(),
        Duration::from_secs(60),
    ));
    let why = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(why.contains("newer than this server's"), "{why}");
}
