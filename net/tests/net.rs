//! End-to-end tests of the reference server and client (the `server` and `client` binaries):
//! the real programs as separate processes over loopback WebSockets, killed with SIGKILL where
//! the test needs it, plus a TCP proxy in the test process that cuts or slows connections. The
//! journals are read back in process (with the crate's own code) to compare with what the server
//! holds.

#![forbid(unsafe_code)]

mod common;

use common::Proc;
use std::ffi::OsStr;

use objsync::json::{canonical, state_json};
use objsync::permissions::{private_role, MEMBERS_PROP, ROLE, ROLE_PROP, USER};
use objsync::session::ClientConfig;
use objsync::wire::{Bind, ClientMessage, ErrorCode, Limits, ServerMessage, PROTOCOL_VERSION};
use objsync::{ObjKey, Store, Value};
use objsync_net::client::{Failure, Flow, Live, Local, RealmUrl};
use objsync_net::journal::{Damage, Journal, Put};
use objsync_net::server::{
    check_path, open_realm, realm_file, resolve_path, snapshot_file, Config, Level, User,
};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"{
    "admin_token": "admin-secret",
    "users": {"t-alice": "alice", "t-bob": "bob", "t-carol": "carol"},
    "permissions": {
        "/shared/board": {"*": ["write"]},
        "/shared/news": {"bob": ["read"], "alice": ["manage"]}
    },
    "comment": "unknown keys are ignored"
}"#;

/// How long any one client command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// The path of one of this crate's binaries (cargo builds them for its integration tests).
fn binary(name: &str) -> PathBuf {
    match name {
        "server" => PathBuf::from(env!("CARGO_BIN_EXE_server")),
        "client" => PathBuf::from(env!("CARGO_BIN_EXE_client")),
        "objsync-admin" => PathBuf::from(env!("CARGO_BIN_EXE_objsync-admin")),
        other => panic!("no binary {other}"),
    }
}

/// A running server.
struct ServerProc {
    proc: Proc,
    addr: String,
    data: PathBuf,
    log: PathBuf,
}

impl ServerProc {
    /// Starts the server on an ephemeral port over `data` and waits for `listening on`.
    fn start(data: &Path, config: &Path) -> ServerProc {
        ServerProc::start_with(data, config, &[])
    }

    /// The same, with more arguments.
    fn start_with(data: &Path, config: &Path, extra: &[&str]) -> ServerProc {
        ServerProc::start_logging(data, config, extra, "info")
    }

    /// The same, logging at `level` (`RUST_LOG`).
    fn start_logging(data: &Path, config: &Path, extra: &[&str], level: &str) -> ServerProc {
        let log = data.with_extension("stderr");
        let mut args = vec![OsStr::new("--data"), data.as_os_str()];
        args.extend([OsStr::new("--config"), config.as_os_str()]);
        args.extend(extra.iter().map(OsStr::new));
        let (proc, addr) = common::start_server(&args, level, &log);
        ServerProc {
            proc,
            addr,
            data: data.to_path_buf(),
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("realm://{}{path}", self.addr)
    }

    /// The server's resident memory in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.0.id()))
            .expect("the server's status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS");
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("a number");
        kb * 1024
    }

    /// SIGKILL, and wait until it is gone.
    fn kill(mut self) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
    }

    /// The canonical state of a realm as its journal holds it (the server must be stopped).
    fn realm_state(data: &Path, path: &str) -> String {
        let (realm, _, _) = open_realm(&realm_file(data, path)).expect("the realm's journal");
        canonical(&state_json(realm.server().replica().store()).expect("state"))
    }
}

/// Runs the client with `args` (after `--local DIR`), failing the test if it hangs.
fn client(local: &Path, args: &[&str]) -> Output {
    let child = Command::new(binary("client"))
        .arg("--local")
        .arg(local)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the client starts");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(COMMAND_TIMEOUT)
        .unwrap_or_else(|_| panic!("client {args:?} did not finish"))
        .expect("the client runs")
}

/// Runs the client and insists on success; returns its stdout.
fn client_ok(local: &Path, args: &[&str]) -> String {
    let out = client(local, args);
    assert!(
        out.status.success(),
        "client {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs the client and insists on failure; returns its stderr.
fn client_err(local: &Path, args: &[&str]) -> String {
    let out = client(local, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "client {args:?} should have failed");
    assert_eq!(stderr.lines().count(), 1, "one line of reason: {stderr}");
    stderr
}

fn sync(local: &Path, url: &str, token: &str) -> String {
    client_ok(local, &["--url", url, "--token", token, "sync"])
}

fn state(local: &Path) -> String {
    client_ok(local, &["state"]).trim_end().to_string()
}

/// Writes `ops` to a file in `dir` and applies it to the local realm.
fn apply(dir: &Path, local: &Path, ops: &serde_json::Value) {
    let file = dir.join(format!("ops-{}.json", objsync_net::random_u64()));
    std::fs::write(&file, ops.to_string()).expect("op file");
    let out = client_ok(local, &["apply", file.to_str().expect("UTF-8 path")]);
    assert!(out.starts_with("committed"), "{out}");
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.json");
    std::fs::write(&config, CONFIG).expect("config");
    (dir, config)
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy that cuts or slows connections
// ---------------------------------------------------------------------------------------------

/// Forwards connections to a server whose address may change (a restarted server).
struct Proxy {
    addr: SocketAddr,
    /// Connections cut so far.
    cuts: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

#[derive(Clone, Copy)]
enum Mischief {
    /// Cut three connections in four after 100 to 3100 bytes (either way, the WebSocket
    /// handshake included), mostly in the middle of a frame.
    Cut,
    /// Forward client-to-server bytes at this many bytes per second.
    Throttle(u64),
}

impl Proxy {
    fn start(upstream: &str, mischief: Mischief) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let upstream = Arc::new(Mutex::new(upstream.to_string()));
        let cuts = Arc::new(AtomicUsize::new(0));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("proxy listens");
        let addr = listener.local_addr().expect("address");
        let counter = cuts.clone();
        runtime.spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let target = upstream.lock().expect("upstream").clone();
                let cuts = counter.clone();
                tokio::spawn(async move {
                    let Ok(up) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = down.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    let budget = match mischief {
                        Mischief::Cut if objsync_net::random_u64() % 4 != 0 => {
                            100 + (objsync_net::random_u64() % 3000) as i64
                        }
                        _ => i64::MAX,
                    };
                    let rate = match mischief {
                        Mischief::Throttle(rate) => Some(rate),
                        Mischief::Cut => None,
                    };
                    let budget = Arc::new(AtomicI64::new(budget));
                    let (down_r, down_w) = down.into_split();
                    let (up_r, up_w) = up.into_split();
                    let cut = tokio::select! {
                        cut = pipe(down_r, up_w, budget.clone(), rate) => cut,
                        cut = pipe(up_r, down_w, budget, None) => cut,
                    };
                    if cut {
                        cuts.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        Proxy {
            addr,
            cuts,
            _runtime: runtime,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("realm://{}{path}", self.addr)
    }
}

/// Copies until EOF, an error, or the shared byte budget runs out (then returns true: the
/// connection is cut, both halves dropped, wherever the bytes stood).
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    budget: Arc<AtomicI64>,
    rate: Option<u64>,
) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0; 16 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let left = budget.fetch_sub(n as i64, Ordering::Relaxed);
        let send = n.min(left.max(0) as usize);
        if to.write_all(&buf[..send]).await.is_err() {
            return false;
        }
        if send < n {
            return true;
        }
        if let Some(rate) = rate {
            tokio::time::sleep(Duration::from_micros(n as u64 * 1_000_000 / rate)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// The schema every writer of the board realm declares (identical declarations merge).
fn board_schema() -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({"op": "add_type", "type": "Item", "primary_key": "id",
            "properties": {"id": "string", "who": "string?", "n": "int"}}),
        serde_json::json!({"op": "add_type", "type": "Board", "primary_key": "id",
            "properties": {"id": "int", "total": "int", "log": "list<string>"}}),
        serde_json::json!({"op": "insert", "type": "Board", "pk": 1}),
    ]
}

/// Three clients write concurrently, each syncing through a proxy that cuts most connections
/// part-way; afterwards everyone (and the server's journal) holds the same state, with every
/// write in it.
#[test]
fn three_clients_with_forced_disconnects_converge() {
    const ROUNDS: usize = 8;
    let (dir, config) = setup();
    let server = ServerProc::start(&dir.path().join("data"), &config);
    let proxy = Proxy::start(&server.addr, Mischief::Cut);
    let path = "/shared/board";
    let users = ["t-alice", "t-bob", "t-carol"];
    std::thread::scope(|scope| {
        for (k, token) in users.iter().enumerate() {
            let (dir, proxy) = (dir.path(), &proxy);
            scope.spawn(move || {
                let local = dir.join(format!("client{k}"));
                for round in 0..ROUNDS {
                    let id = format!("{k}-{round}");
                    let mut ops = board_schema();
                    ops.extend([
                        // Changesets of a kilobyte or more, so that cuts fall inside them.
                        serde_json::json!({"op": "insert", "type": "Item", "pk": id,
                            "values": {"who": format!("{token}{}", ".".repeat(1000)),
                                "n": round}}),
                        serde_json::json!({"op": "insert", "type": "Item", "pk": "shared",
                            "values": {"who": token}}),
                        serde_json::json!({"op": "add_int", "type": "Board", "pk": 1,
                            "property": "total", "value": 1}),
                        serde_json::json!({"op": "list_insert", "type": "Board", "pk": 1,
                            "property": "log", "index": 0, "value": id}),
                    ]);
                    apply(dir, &local, &serde_json::Value::Array(ops));
                    client_ok(
                        &local,
                        &[
                            "--url",
                            &proxy.url(path),
                            "--token",
                            token,
                            "--retries",
                            "30",
                            "sync",
                        ],
                    );
                }
            });
        }
    });
    assert!(
        proxy.cuts.load(Ordering::Relaxed) >= 3,
        "the proxy cut too little"
    );
    // Settle without the proxy: the first pass uploads everything, the second downloads it.
    let locals: Vec<PathBuf> = (0..3)
        .map(|k| dir.path().join(format!("client{k}")))
        .collect();
    for _ in 0..2 {
        for (local, token) in locals.iter().zip(users) {
            sync(local, &server.url(path), token);
        }
    }
    let states: Vec<String> = locals.iter().map(|l| state(l)).collect();
    assert_eq!(states[0], states[1]);
    assert_eq!(states[0], states[2]);
    let json: serde_json::Value = serde_json::from_str(&states[0]).expect("JSON state");
    assert_eq!(json["Board"]["1"]["total"], 3 * ROUNDS);
    assert_eq!(
        json["Board"]["1"]["log"].as_array().map(Vec::len),
        Some(3 * ROUNDS)
    );
    assert_eq!(
        json["Item"].as_object().map(|o| o.len()),
        Some(3 * ROUNDS + 1)
    );
    let data = server.data.clone();
    server.kill();
    assert_eq!(ServerProc::realm_state(&data, path), states[0]);
}

/// The server is killed (SIGKILL) in the middle of a long upload, with a torn record left at
/// the end of its journal. Every changeset the client had seen acknowledged is in the journal;
/// the restarted server cuts the torn record, the upload resumes, and everyone converges.
#[test]
fn server_killed_mid_upload_loses_nothing_acknowledged() {
    const BLOBS: usize = 20;
    const BLOB: usize = 150_000;
    let (dir, config) = setup();
    let data = dir.path().join("data");
    let path = "/shared/board";
    let server = ServerProc::start(&data, &config);
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    let mut ops = board_schema();
    ops.push(serde_json::json!({"op": "insert", "type": "Item", "pk": "bob", "values": {"n": 1}}));
    apply(dir.path(), &bob, &serde_json::Value::Array(ops));
    sync(&bob, &server.url(path), "t-bob");
    for i in 0..BLOBS {
        let mut ops = board_schema();
        let blob = char::from(b'a' + (i % 26) as u8).to_string().repeat(BLOB);
        ops.push(
            serde_json::json!({"op": "insert", "type": "Item", "pk": format!("blob{i}"),
            "values": {"who": blob, "n": i}}),
        );
        apply(dir.path(), &alice, &serde_json::Value::Array(ops));
    }
    // About 3 MB to upload at 2 MB/s: the kill comes part-way.
    let proxy = Proxy::start(&server.addr, Mischief::Throttle(2 << 20));
    let uploader = Proc(
        Command::new(binary("client"))
            .arg("--local")
            .arg(&alice)
            .args(["--url", &proxy.url(path), "--token", "t-alice", "sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the client starts"),
    );
    let journal = realm_file(&data, path);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&journal).map_or(0, |m| m.len()) < (BLOBS * BLOB / 3) as u64 {
        assert!(Instant::now() < deadline, "the upload did not progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    server.kill();
    // Let the client take in whatever the server sent before it died.
    std::thread::sleep(Duration::from_millis(300));
    drop(uploader);
    // A torn record: a frame header promising more bytes than follow.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .expect("journal");
    file.write_all(&[0xe8, 0x03, 0, 0, 1, 2, 3, 4, 5, 6, 7])
        .expect("torn record");
    drop(file);

    let config_of = |path: &str| ClientConfig {
        path: path.to_string(),
        token: String::new(),
        limits: Limits::default(),
        start_from_state: false,
    };
    let (acknowledged, peer) = {
        let local = Local::open(&alice, config_of(path)).expect("alice's local realm");
        let client = local.session.client();
        (client.acknowledged(), client.peer())
    };
    let (realm, _, dropped) = open_realm(&journal).expect("the realm's journal");
    assert!(dropped > 0, "the torn record was not noticed");
    let integrated = realm.server().last_integrated(peer);
    assert!(
        integrated >= acknowledged,
        "acknowledged {acknowledged} but the journal has {integrated}"
    );
    assert!(
        acknowledged.0 >= 1,
        "nothing was acknowledged before the kill"
    );
    assert!(
        (integrated.0 as usize) < BLOBS,
        "the upload was complete before the kill"
    );
    drop(realm);

    let server = ServerProc::start(&data, &config);
    sync(&alice, &server.url(path), "t-alice");
    sync(&bob, &server.url(path), "t-bob");
    let (a, b) = (state(&alice), state(&bob));
    assert_eq!(a, b);
    let json: serde_json::Value = serde_json::from_str(&a).expect("JSON state");
    assert_eq!(json["Item"].as_object().map(|o| o.len()), Some(BLOBS + 1));
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    server.kill();
    assert_eq!(ServerProc::realm_state(&data, path), a, "server log: {log}");
}

/// A malformed frame gets an ERROR and closes only its own session: a client watching the
/// same realm keeps receiving changes.
#[test]
fn malformed_frame_closes_only_that_session() {
    let (dir, config) = setup();
    let server = ServerProc::start(&dir.path().join("data"), &config);
    let path = "/shared/board";
    let url = server.url(path);
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    apply(
        dir.path(),
        &alice,
        &serde_json::Value::Array(board_schema()),
    );
    sync(&alice, &url, "t-alice");

    let mut watch = Command::new(binary("client"))
        .arg("--local")
        .arg(&bob)
        .args(["--url", &url, "--token", "t-bob", "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the watcher starts");
    let stdout = watch.stdout.take().expect("piped stdout");
    let _watch = Proc(watch);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the watcher prints the state once up to date");
    assert!(first.contains("\"Board\""), "{first}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let limits = Limits::default();
    // An unknown message tag before anything else.
    let reply = runtime.block_on(raw_session(&server.addr, vec![vec![0x42, 1, 2, 3]]));
    assert_eq!(error_code(&reply, &limits), ErrorCode::UnknownMessage);
    // A valid BIND, then an IDENT cut short.
    let bind = ClientMessage::Bind(Bind {
        protocol_version: PROTOCOL_VERSION,
        path: path.into(),
        token: "t-carol".into(),
        max_message: limits.max_message as u64,
    })
    .encode();
    let reply = runtime.block_on(raw_session(&server.addr, vec![bind, vec![0x02, 0x05]]));
    assert_eq!(error_code(&reply, &limits), ErrorCode::MalformedMessage);

    apply(
        dir.path(),
        &alice,
        &serde_json::json!([{"op": "insert", "type": "Item", "pk": "after", "values": {"n": 7}}]),
    );
    sync(&alice, &url, "t-alice");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("the watcher sees the change made after the malformed sessions");
        if line.contains("\"after\"") {
            break;
        }
    }
}

/// Sends `frames` on a fresh WebSocket and returns the server's reply, checking that the
/// server then closes the connection.
async fn raw_session(addr: &str, frames: Vec<Vec<u8>>) -> Vec<u8> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/realm-sync"))
        .await
        .expect("the server accepts WebSockets");
    for frame in frames {
        ws.send(Message::binary(frame)).await.expect("send");
    }
    let reply = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => break b.to_vec(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no reply: {other:?}"),
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(None | Some(Ok(Message::Close(_))) | Some(Err(_))) => reply,
        Ok(Some(Ok(m))) => panic!("the session goes on after its ERROR: {m:?}"),
        Err(_) => panic!("the server kept the connection open"),
    }
}

fn error_code(frame: &[u8], limits: &Limits) -> ErrorCode {
    match ServerMessage::decode(frame, limits) {
        Ok(ServerMessage::Error(e)) => e.code,
        other => panic!("expected an ERROR, got {other:?}"),
    }
}

/// Tokens and realm permissions: refused binds, a read-only user who can download but not
/// upload, `/~/` paths, and a server that is not there.
#[test]
fn permissions_are_enforced() {
    let (dir, config) = setup();
    let server = ServerProc::start(&dir.path().join("data"), &config);
    let d = dir.path();
    let news = server.url("/shared/news");

    // alice (manage) writes the news; bob (read) downloads it; carol has no grant.
    let mut ops = board_schema();
    ops.push(
        serde_json::json!({"op": "insert", "type": "Item", "pk": "headline",
        "values": {"who": "alice"}}),
    );
    apply(d, &d.join("alice"), &serde_json::Value::Array(ops));
    sync(&d.join("alice"), &news, "t-alice");
    sync(&d.join("bob"), &news, "t-bob");
    assert_eq!(state(&d.join("bob")), state(&d.join("alice")));

    let carol = d.join("carol");
    let why = client_err(&carol, &["--url", &news, "--token", "t-carol", "sync"]);
    assert!(why.contains("permission denied"), "{why}");
    assert_eq!(state(&carol), "{}", "carol read nothing");

    // bob's own write is refused on upload, and the realm does not change: without resets he
    // stops there; with them (the default) his write is reverted and he converges.
    apply(
        d,
        &d.join("bob"),
        &serde_json::json!([{"op": "set", "type": "Item", "pk": "headline",
            "values": {"who": "bob"}}]),
    );
    let why = client_err(
        &d.join("bob"),
        &[
            "--url",
            &news,
            "--token",
            "t-bob",
            "--reset-mode",
            "off",
            "sync",
        ],
    );
    assert!(why.contains("permission denied"), "{why}");
    assert!(state(&d.join("bob")).contains("\"who\":\"bob\""));
    sync(&d.join("bob"), &news, "t-bob");
    assert_eq!(state(&d.join("bob")), state(&d.join("alice")));
    let admin = d.join("admin");
    sync(&admin, &news, "admin-secret");
    assert!(state(&admin).contains("\"who\":\"alice\""));

    // Other users' own realms are closed; /~/ is one's own.
    let why = client_err(
        &d.join("bob2"),
        &[
            "--url",
            &server.url("/alice/notes"),
            "--token",
            "t-bob",
            "sync",
        ],
    );
    assert!(why.contains("permission denied"), "{why}");
    apply(
        d,
        &d.join("alice2"),
        &serde_json::Value::Array(board_schema()),
    );
    sync(&d.join("alice2"), &server.url("/~/notes"), "t-alice");
    sync(
        &d.join("admin2"),
        &server.url("/alice/notes"),
        "admin-secret",
    );
    assert_eq!(state(&d.join("admin2")), state(&d.join("alice2")));

    // Bad tokens, bad paths, no server.
    let why = client_err(&d.join("x1"), &["--url", &news, "--token", "nope", "sync"]);
    assert!(why.contains("bad authentication"), "{why}");
    let why = client_err(
        &d.join("x2"),
        &[
            "--url",
            &server.url("/a/.hidden"),
            "--token",
            "admin-secret",
            "sync",
        ],
    );
    assert!(why.contains("illegal realm path"), "{why}");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("address")
    };
    let why = client_err(
        &d.join("x3"),
        &[
            "--url",
            &format!("realm://{closed}/shared/news"),
            "--token",
            "t-bob",
            "--retries",
            "2",
            "sync",
        ],
    );
    assert!(why.contains("gave up after 3 attempts"), "{why}");
}

/// The journal keeps intact records and cuts a torn or corrupt tail.
#[test]
fn journal_cuts_torn_and_corrupt_tails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("j.log");
    let mut journal = Journal::create(&path, b"header").expect("create");
    let records: Vec<Vec<u8>> = (0..3u64).map(|i| Put::tag(1).u64(i).0).collect();
    journal.append(&records).expect("append");
    journal.sync().expect("sync");
    let good = journal.end();
    drop(journal);
    let read = |path: &Path| {
        let mut seen = Vec::new();
        let opened = Journal::open(path, |r| {
            seen.push(r.to_vec());
            Ok(())
        })
        .expect("open");
        (seen, opened.dropped, opened.journal.end())
    };
    assert_eq!(
        read(&path),
        (
            [vec![b"header".to_vec()], records.clone()].concat(),
            0,
            good
        )
    );

    // A torn record at the end.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    f.write_all(&[9, 0, 0, 0, 1, 2]).expect("write");
    drop(f);
    let (seen, dropped, len) = read(&path);
    assert_eq!((seen.len(), dropped, len), (4, 6, good));
    assert_eq!(std::fs::metadata(&path).expect("file").len(), good);

    // A flipped bit in the last record drops it.
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    let (seen, dropped, _) = read(&path);
    assert_eq!((seen.len(), dropped), (3, 17));

    assert!(
        Journal::create(&path, b"again").is_err(),
        "create never replaces a log"
    );
}

/// Server path rules, `/~/` resolution and permission levels.
#[test]
fn paths_and_permissions() {
    for ok in ["/a", "/alice/notes", "/a-b_c.d/x.y", "/A1"] {
        assert_eq!(check_path(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "a",
        "/",
        "//a",
        "/a/",
        "/.a",
        "/a/.b",
        "/a b",
        "/a/b.realm",
        "/x.realm.lock",
        "/é",
        "/a/__partial/b",
    ] {
        assert!(check_path(bad).is_err(), "{bad:?} should be illegal");
    }
    let alice = User::Named("alice".into());
    assert_eq!(
        resolve_path("/~/notes", &alice).as_deref(),
        Ok("/alice/notes")
    );
    assert_eq!(resolve_path("/~", &alice).as_deref(), Ok("/alice"));
    assert!(resolve_path("/~/.x", &alice).is_err());

    let config = Config::parse(CONFIG).expect("config");
    assert_eq!(config.user("t-bob"), Some(User::Named("bob".into())));
    assert_eq!(config.user("admin-secret"), Some(User::Admin));
    assert_eq!(config.user("nope"), None);
    let bob = User::Named("bob".into());
    let carol = User::Named("carol".into());
    assert_eq!(config.level(&bob, "/shared/news"), Some(Level::Read));
    assert_eq!(config.level(&alice, "/shared/news"), Some(Level::Manage));
    assert_eq!(config.level(&carol, "/shared/news"), None);
    assert_eq!(config.level(&carol, "/shared/board"), Some(Level::Write));
    assert_eq!(config.level(&bob, "/alice/notes"), None);
    assert_eq!(config.level(&alice, "/alice/notes"), Some(Level::Manage));
    assert_eq!(config.level(&User::Admin, "/anything"), Some(Level::Manage));
    assert!(Config::parse(r#"{"permissions": {"/x": {"bob": ["fly"]}}}"#).is_err());
    assert!(Config::parse(r#"{"permissions": {"x": {}}}"#).is_err());
    assert!(Config::parse(r#"{"admin_token": ""}"#).is_err());
}

/// A restarted server opens each realm from its snapshot and cuts the journal behind it; with
/// `--keep-history 0` it forgets the history: a device that was behind is told to reset, a new
/// one starts from the state.
#[test]
fn a_restarted_server_starts_from_its_snapshot_and_new_devices_from_the_state() {
    let (dir, config) = setup();
    let data = dir.path().join("data");
    let path = "/shared/board";
    let server = ServerProc::start(&data, &config);
    let (alice, bob, carol) = (
        dir.path().join("alice"),
        dir.path().join("bob"),
        dir.path().join("carol"),
    );
    let mut ops = board_schema();
    ops.push(serde_json::json!({"op": "insert", "type": "Item", "pk": "a", "values": {"n": 1}}));
    apply(dir.path(), &bob, &serde_json::Value::Array(ops));
    sync(&bob, &server.url(path), "t-bob");
    sync(&alice, &server.url(path), "t-alice");
    for i in 0..20 {
        let op = serde_json::json!([{"op": "set", "type": "Item", "pk": "a", "values": {"n": i}}]);
        apply(dir.path(), &bob, &op);
    }
    sync(&bob, &server.url(path), "t-bob");
    server.kill();
    let before = ServerProc::realm_state(&data, path);

    let server = ServerProc::start_with(&data, &config, &["--keep-history", "0"]);
    sync(&carol, &server.url(path), "t-carol");
    assert_eq!(state(&carol), state(&bob));
    let file = realm_file(&data, path);
    let snapshot = std::fs::metadata(file.with_extension("snap")).expect("a snapshot");
    assert!(snapshot.len() > 0);
    let journal = std::fs::metadata(&file).expect("the journal").len();
    assert!(
        journal < 200,
        "the journal was cut behind the snapshot: {journal} bytes"
    );
    // Alice was behind the trimmed history: told to reset, she stops if she may not, and
    // otherwise resets and syncs.
    let url = server.url(path);
    let off = [
        "--url",
        &url,
        "--token",
        "t-alice",
        "--reset-mode",
        "off",
        "sync",
    ];
    let reason = client_err(&alice, &off);
    assert!(reason.contains("client file expired"), "{reason}");
    sync(&alice, &server.url(path), "t-alice");
    assert_eq!(state(&alice), state(&bob));
    // The new device writes, the one that kept up downloads it.
    let op = serde_json::json!([{"op": "insert", "type": "Item", "pk": "c", "values": {"n": 7}}]);
    apply(dir.path(), &carol, &op);
    sync(&carol, &server.url(path), "t-carol");
    sync(&bob, &server.url(path), "t-bob");
    assert_eq!(state(&carol), state(&bob));
    server.kill();
    assert_eq!(ServerProc::realm_state(&data, path), state(&bob));
    assert_ne!(before, state(&bob));
}

/// A server restored from a copy of its data folder taken earlier: three devices that wrote
/// since (acknowledged by the lost server, and offline) reset, recover, and converge with every
/// write back; one more device writes to the restored server before the others come back, so
/// the versions they had seen exist again with other content.
#[test]
fn a_server_restored_from_an_older_copy_gets_every_write_back() {
    let (dir, config) = setup();
    let data = dir.path().join("data");
    let path = "/shared/board";
    let devices: Vec<(PathBuf, &str)> =
        [("alice", "t-alice"), ("bob", "t-bob"), ("carol", "t-carol")]
            .iter()
            .map(|(d, t)| (dir.path().join(d), *t))
            .collect();
    let item = |pk: &str, n: i64| {
        let mut ops = board_schema();
        ops.push(serde_json::json!({"op": "insert", "type": "Item", "pk": pk, "values": {"n": n}}));
        serde_json::Value::Array(ops)
    };
    let server = ServerProc::start(&data, &config);
    for (i, (local, token)) in devices.iter().enumerate() {
        apply(dir.path(), local, &item(&format!("before{i}"), 0));
        sync(local, &server.url(path), token);
    }
    server.kill();
    let copy = dir.path().join("copy");
    copy_dir(&data, &copy);

    let server = ServerProc::start(&data, &config);
    for (i, (local, token)) in devices.iter().enumerate() {
        apply(dir.path(), local, &item(&format!("acked{i}"), 1));
        sync(local, &server.url(path), token);
        apply(dir.path(), local, &item(&format!("offline{i}"), 2));
    }
    server.kill();
    std::fs::remove_dir_all(&data).expect("remove the data");
    copy_dir(&copy, &data);

    let server = ServerProc::start(&data, &config);
    let dave = dir.path().join("dave");
    apply(dir.path(), &dave, &item("dave", 3));
    sync(&dave, &server.url(path), "t-alice");
    for (local, token) in &devices {
        sync(local, &server.url(path), token);
    }
    for (local, token) in devices.iter().chain([&(dave.clone(), "t-alice")]) {
        sync(local, &server.url(path), token);
    }
    let everyone = state(&dave);
    for (local, _) in &devices {
        assert_eq!(state(local), everyone);
    }
    for i in 0..3 {
        for prefix in ["before", "acked", "offline"] {
            assert!(
                everyone.contains(&format!("\"{prefix}{i}\"")),
                "{prefix}{i} in {everyone}"
            );
        }
    }
    assert!(everyone.contains("\"dave\""));
    server.kill();
    assert_eq!(ServerProc::realm_state(&data, path), everyone);
}

/// A client folder copied after its first sync (a restored device backup, a cloned container)
/// writes beside the original under the same identity: the server finds the copy out by its
/// changesets' signatures, the copy takes a new identity with its writes, and both sides' writes
/// survive.
#[test]
fn a_copied_client_folder_takes_a_new_identity_and_loses_nothing() {
    let (dir, config) = setup();
    let data = dir.path().join("data");
    let path = "/shared/board";
    let server = ServerProc::start(&data, &config);
    let url = server.url(path);
    let (original, copy) = (dir.path().join("original"), dir.path().join("copy"));
    let item = |pk: &str| {
        let mut ops = board_schema();
        ops.push(serde_json::json!({"op": "insert", "type": "Item", "pk": pk, "values": {"n": 1}}));
        serde_json::Value::Array(ops)
    };
    apply(dir.path(), &original, &item("first"));
    sync(&original, &url, "t-alice");
    copy_dir(&original, &copy);
    apply(dir.path(), &original, &item("from the original"));
    apply(dir.path(), &copy, &item("from the copy"));
    sync(&original, &url, "t-alice");
    sync(&copy, &url, "t-alice");
    sync(&original, &url, "t-alice");
    let everyone = state(&original);
    assert_eq!(state(&copy), everyone);
    for pk in ["first", "from the original", "from the copy"] {
        assert!(
            everyone.contains(&format!("\"{pk}\"")),
            "{pk} in {everyone}"
        );
    }
    // The copy writes on under its new identity.
    apply(dir.path(), &copy, &item("later"));
    sync(&copy, &url, "t-alice");
    sync(&original, &url, "t-alice");
    assert_eq!(state(&copy), state(&original));
    server.kill();
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a directory");
    for entry in std::fs::read_dir(from).expect("read a directory") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reliability: damage, hostile peers, limits
// ---------------------------------------------------------------------------------------------

/// Writes a config with `limits` (a JSON object) besides the usual tokens.
fn config_with_limits(dir: &Path, limits: serde_json::Value) -> PathBuf {
    let mut config: serde_json::Value = serde_json::from_str(CONFIG).expect("config");
    config["limits"] = limits;
    let file = dir.join("limited.json");
    std::fs::write(&file, config.to_string()).expect("config");
    file
}

/// `n` separate writes by `local`, each its own changeset, synced.
fn write_items(dir: &Path, local: &Path, url: &str, token: &str, prefix: &str, n: usize) {
    for i in 0..n {
        let mut ops = board_schema();
        ops.push(
            serde_json::json!({"op": "insert", "type": "Item", "pk": format!("{prefix}{i}"),
            "values": {"n": i}}),
        );
        apply(dir, local, &serde_json::Value::Array(ops));
    }
    sync(local, url, token);
}

/// Flips one byte in the middle of `file`.
fn flip_middle_byte(file: &Path) {
    let mut bytes = std::fs::read(file).expect("the file");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(file, bytes).expect("write back");
}

/// Runs objsync-admin; returns its exit status and stdout.
fn admin(args: &[&str]) -> (bool, String) {
    let out = Command::new(binary("objsync-admin"))
        .args(args)
        .output()
        .expect("objsync-admin runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// One flipped byte in the middle of a realm's journal: the realm is refused (the other
/// realms keep working), nothing is cut, `objsync-admin verify` names the file and offset, and
/// `repair` rebuilds the realm from the records before the damage under a new file identifier,
/// so the client that knew the lost history is told to reset.
#[test]
fn a_corrupt_journal_is_refused_until_repaired() {
    let (dir, config) = setup();
    let data = dir.path().join("data");
    let d = dir.path();
    let server = ServerProc::start(&data, &config);
    let (board, news) = ("/shared/board", "/shared/news");
    write_items(d, &d.join("alice"), &server.url(board), "t-alice", "a", 40);
    write_items(
        d,
        &d.join("alice-news"),
        &server.url(news),
        "t-alice",
        "n",
        3,
    );
    server.kill();
    let journal = realm_file(&data, board);
    let length = std::fs::metadata(&journal).expect("journal").len();
    flip_middle_byte(&journal);

    let error = open_realm(&journal).expect_err("a corrupt journal does not open");
    let damage = Damage::of(&error).expect("a Damage error");
    assert!(damage.is_corruption());
    assert!(damage.offset > 0 && damage.offset <= length / 2, "{damage}");
    assert!(error.to_string().contains(&journal.display().to_string()));
    assert_eq!(
        std::fs::metadata(&journal).expect("journal").len(),
        length,
        "nothing was cut"
    );

    let server = ServerProc::start(&data, &config);
    let why = client_err(
        &d.join("bob"),
        &[
            "--url",
            &server.url(board),
            "--token",
            "t-bob",
            "--retries",
            "1",
            "sync",
        ],
    );
    assert!(why.contains("damaged"), "{why}");
    sync(&d.join("bob-news"), &server.url(news), "t-bob");
    assert_eq!(state(&d.join("bob-news")), state(&d.join("alice-news")));
    let log = std::fs::read_to_string(&server.log).expect("server log");
    assert!(log.contains(&format!("at byte {}", damage.offset)), "{log}");
    let data_arg = data.to_str().expect("UTF-8 path");
    let (ok, report) = admin(&["verify", "--data", data_arg]);
    assert!(!ok, "verify fails on a damaged realm: {report}");
    assert!(report.contains("/shared/board DAMAGED"), "{report}");
    assert!(report.contains("/shared/news ok"), "{report}");
    assert!(
        report.contains(&format!("at byte {}", damage.offset)),
        "{report}"
    );
    let (ok, _) = admin(&["repair", "--data", data_arg, board]);
    assert!(!ok, "repair refuses to run beside the server");
    server.kill();

    let (ok, report) = admin(&["repair", "--data", data_arg, board]);
    assert!(ok, "{report}");
    assert!(report.contains("new realm file identifier"), "{report}");
    let (ok, report) = admin(&["verify", "--data", data_arg]);
    assert!(ok, "{report}");
    let (realm, _, _) = open_realm(&journal).expect("the repaired realm opens");
    let kept = realm.server().version().0;
    assert!(kept > 0 && kept < 40, "kept {kept} of 40 changesets");

    let server = ServerProc::start(&data, &config);
    sync(&d.join("carol"), &server.url(board), "t-carol");
    let json: serde_json::Value = serde_json::from_str(&state(&d.join("carol"))).expect("JSON");
    assert_eq!(
        json["Item"].as_object().map(|o| o.len() as u64),
        Some(kept),
        "an item per changeset kept"
    );
    // Alice knew the realm before it was repaired under a new identifier: told so, she stops
    // if she may not reset; with a reset (the default) she brings back the 40 items the damage
    // lost, which she still holds.
    let url = server.url(board);
    let off = [
        "--url",
        &url,
        "--token",
        "t-alice",
        "--reset-mode",
        "off",
        "sync",
    ];
    let why = client_err(&d.join("alice"), &off);
    assert!(why.contains("bad server file identifier"), "{why}");
    sync(&d.join("alice"), &server.url(board), "t-alice");
    sync(&d.join("carol"), &server.url(board), "t-carol");
    let json: serde_json::Value = serde_json::from_str(&state(&d.join("carol"))).expect("JSON");
    assert_eq!(json["Item"].as_object().map(|o| o.len()), Some(40));
    assert_eq!(state(&d.join("carol")), state(&d.join("alice")));
    server.kill();
}

/// A flipped byte in a realm's snapshot: the realm is refused with the file named, and
/// `repair` rebuilds it without loss from the generation before it plus the journal.
#[test]
fn a_damaged_snapshot_is_refused_and_rebuilt_from_the_generation_before() {
    let (dir, config) = setup();
    let data = dir.path().join("data");
    let d = dir.path();
    let board = "/shared/board";
    let server = ServerProc::start(&data, &config);
    write_items(d, &d.join("alice"), &server.url(board), "t-alice", "a", 10);
    server.kill();
    // Reopening writes the snapshot; then more history goes into the journal after it.
    let server = ServerProc::start(&data, &config);
    write_items(d, &d.join("alice"), &server.url(board), "t-alice", "b", 10);
    server.kill();
    let before = ServerProc::realm_state(&data, board);
    let snapshot = snapshot_file(&realm_file(&data, board));
    flip_middle_byte(&snapshot);
    let error =
        open_realm(&realm_file(&data, board)).expect_err("a damaged snapshot does not open");
    assert!(
        error.to_string().contains(&snapshot.display().to_string()),
        "{error}"
    );
    assert!(error.to_string().contains("damaged"), "{error}");

    let server = ServerProc::start(&data, &config);
    let why = client_err(
        &d.join("bob"),
        &[
            "--url",
            &server.url(board),
            "--token",
            "t-bob",
            "--retries",
            "1",
            "sync",
        ],
    );
    assert!(why.contains("damaged"), "{why}");
    server.kill();
    let data_arg = data.to_str().expect("UTF-8 path");
    let (ok, report) = admin(&["verify", "--data", data_arg, board]);
    assert!(!ok && report.contains("without loss"), "{report}");
    let (ok, report) = admin(&["repair", "--data", data_arg, board]);
    assert!(
        ok && !report.contains("new realm file identifier"),
        "{report}"
    );
    assert_eq!(ServerProc::realm_state(&data, board), before);

    // Nothing was lost, so the client that knew the history goes on.
    let server = ServerProc::start(&data, &config);
    write_items(d, &d.join("alice"), &server.url(board), "t-alice", "c", 1);
    sync(&d.join("bob"), &server.url(board), "t-bob");
    assert_eq!(state(&d.join("bob")), state(&d.join("alice")));
    server.kill();
}

/// A peer that floods PINGs and never reads: the server stops reading from it once its replies
/// pile up, so its memory stays flat, and everyone else is served meanwhile.
#[test]
fn a_ping_flood_that_never_reads_leaves_the_server_memory_flat() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (dir, config) = setup();
    let server = ServerProc::start(&dir.path().join("data"), &config);
    write_items(
        dir.path(),
        &dir.path().join("alice"),
        &server.url("/shared/board"),
        "t-alice",
        "a",
        1,
    );
    let before = server.rss();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sent = runtime.block_on(async {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/realm-sync", server.addr))
            .await
            .expect("the server accepts WebSockets");
        // The reading half is kept but never polled: nothing is read.
        let (mut sink, _unread) = ws.split();
        let ping = ClientMessage::Ping { timestamp: 7 }.encode();
        let mut sent = 0u64;
        let flood = async {
            loop {
                for _ in 0..1000 {
                    if sink.feed(Message::binary(ping.clone())).await.is_err() {
                        return;
                    }
                    sent += 1;
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(4), flood).await;
        sent
    });
    let after = server.rss();
    assert!(sent > 20_000, "only {sent} PINGs went out");
    assert!(
        after < before + (40 << 20),
        "{sent} PINGs took the server from {before} to {after} bytes"
    );
    sync(
        &dir.path().join("bob"),
        &server.url("/shared/board"),
        "t-bob",
    );
    assert_eq!(
        state(&dir.path().join("bob")),
        state(&dir.path().join("alice"))
    );
}

/// 100 connections that never bind but keep PINGing are dropped at the bind deadline (no frame
/// extends it), a connection over the per-address cap is closed at once, and a real client syncs
/// once they are gone.
#[test]
fn unbound_pinging_connections_are_dropped_at_the_bind_deadline() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (dir, _) = setup();
    let config = config_with_limits(
        dir.path(),
        serde_json::json!({"bind_timeout_secs": 2, "max_connections_per_address": 100}),
    );
    let server = ServerProc::start(&dir.path().join("data"), &config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = server.addr.clone();
    let (dropped, refused) = runtime.block_on(async move {
        let url = format!("ws://{addr}/realm-sync");
        let mut pingers = Vec::new();
        for _ in 0..100 {
            let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .expect("the server accepts WebSockets");
            pingers.push(tokio::spawn(async move {
                let (mut sink, mut stream) = ws.split();
                let started = Instant::now();
                let ping = ClientMessage::Ping { timestamp: 1 }.encode();
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if sink.send(Message::binary(ping.clone())).await.is_err() {
                                return started.elapsed();
                            }
                        }
                        message = stream.next() => match message {
                            Some(Ok(_)) => {}
                            _ => return started.elapsed(),
                        },
                    }
                    if started.elapsed() > Duration::from_secs(20) {
                        return started.elapsed();
                    }
                }
            }));
        }
        // The 101st from the same address is closed before its handshake.
        let refused = tokio_tungstenite::connect_async(url.as_str())
            .await
            .is_err();
        let mut lived = Vec::new();
        for p in pingers {
            lived.push(p.await.expect("a pinger"));
        }
        (lived, refused)
    });
    assert!(refused, "the 101st connection was accepted");
    for lived in &dropped {
        assert!(
            *lived < Duration::from_secs(6),
            "an unbound connection lived {lived:?}"
        );
    }
    let d = dir.path();
    write_items(
        d,
        &d.join("alice"),
        &server.url("/shared/board"),
        "t-alice",
        "a",
        1,
    );
    let log = std::fs::read_to_string(&server.log).expect("server log");
    assert!(log.contains("not bound after 2s"), "{log}");
}

/// A changeset over the server's reassembly limit is refused at its first chunk (104, fatal);
/// one within it whose first frame (1 MiB) takes the server past its memory budget for
/// changesets in transit is refused as well, with retry; one that fits a frame still goes
/// through.
#[test]
fn oversized_reassembly_is_refused() {
    let (dir, _) = setup();
    let config = config_with_limits(
        dir.path(),
        serde_json::json!({"max_changeset": 2_000_000, "changeset_budget": 500_000}),
    );
    let server = ServerProc::start(&dir.path().join("data"), &config);
    let d = dir.path();
    let url = server.url("/shared/board");
    let big = |local: &Path, size: usize| {
        let mut ops = board_schema();
        ops.push(
            serde_json::json!({"op": "insert", "type": "Item", "pk": "big",
            "values": {"who": "x".repeat(size)}}),
        );
        apply(d, local, &serde_json::Value::Array(ops));
    };
    big(&d.join("alice"), 3_000_000);
    let why = client_err(
        &d.join("alice"),
        &["--url", &url, "--token", "t-alice", "sync"],
    );
    assert!(why.contains("limits exceeded (104, fatal)"), "{why}");
    big(&d.join("bob"), 1_800_000);
    let why = client_err(
        &d.join("bob"),
        &["--url", &url, "--token", "t-bob", "--retries", "1", "sync"],
    );
    assert!(why.contains("limits exceeded (104, retry)"), "{why}");
    write_items(d, &d.join("carol"), &url, "t-carol", "c", 1);
}

/// A changeset stamped far in the future (u64::MAX - 1) is refused with 232 and never
/// integrated; the server, and the clients, go on.
#[test]
fn a_far_future_timestamp_is_refused() {
    let (dir, config) = setup();
    let server = ServerProc::start(&dir.path().join("data"), &config);
    let path = "/shared/board";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let url = RealmUrl::parse(&server.url(path)).expect("URL");
    let failure = runtime.block_on(async {
        let config = ClientConfig {
            path: path.into(),
            token: "t-carol".into(),
            limits: Limits::default(),
            start_from_state: false,
        };
        let mut local = Local::in_memory(config);
        local
            .session
            .client_mut()
            .write(u64::MAX - 1, |tx| {
                tx.add_type(objsync::ObjectType::new(
                    "Forged",
                    Some("id"),
                    [objsync::Property::new(
                        "id",
                        objsync::PropType::parse("int")?,
                    )],
                )?)?;
                tx.insert("Forged", 1)
            })
            .expect("a local write");
        let mut live = Live::connect(&mut local, &url, &Limits::default())
            .await
            .expect("connects");
        live.pump(&mut local, |_, _| Ok(Flow::Continue))
            .await
            .expect_err("the server refuses")
    });
    match failure {
        Failure::Server(e) => assert_eq!(e.code, ErrorCode::TimestampAhead, "{e}"),
        other => panic!("expected an ERROR, got {other}"),
    }
    let d = dir.path();
    write_items(d, &d.join("alice"), &server.url(path), "t-alice", "a", 1);
    assert!(!state(&d.join("alice")).contains("Forged"));
}

/// Logs never carry a token (at any level, on either side) and never let a client's text
/// start a line of its own; a 2,000-segment path is refused as illegal (204), not retried.
#[test]
fn logs_keep_secrets_and_client_text_in_their_place() {
    let (dir, _) = setup();
    let config = dir.path().join("config.json");
    let data = dir.path().join("data");
    let server = ServerProc::start_logging(&data, &config, &[], "trace");
    let d = dir.path();
    let out = Command::new(binary("client"))
        .arg("--local")
        .arg(d.join("alice"))
        .args([
            "--url",
            &server.url("/shared/board"),
            "--token",
            "t-alice",
            "sync",
        ])
        .env("RUST_LOG", "trace")
        .output()
        .expect("the client runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client_log = String::from_utf8_lossy(&out.stderr);
    assert!(!client_log.is_empty(), "the client logged at trace level");
    assert!(
        !client_log.contains("t-alice"),
        "the client logged its token"
    );

    let limits = Limits::default();
    let bind = ClientMessage::Bind(Bind {
        protocol_version: PROTOCOL_VERSION,
        path: "/x\nERROR forged line".into(),
        token: "wrong-secret".into(),
        max_message: limits.max_message as u64,
    })
    .encode();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let reply = runtime.block_on(raw_session(&server.addr, vec![bind]));
    assert_eq!(error_code(&reply, &limits), ErrorCode::BadAuthentication);

    let long = "/a".repeat(2000);
    let why = client_err(
        &d.join("x"),
        &["--url", &server.url(&long), "--token", "t-alice", "sync"],
    );
    assert!(why.contains("illegal realm path (204, fatal)"), "{why}");
    std::thread::sleep(Duration::from_millis(200));
    let log = std::fs::read_to_string(&server.log).expect("server log");
    assert!(log.lines().count() > 10, "the server logged at trace level");
    for secret in ["t-alice", "wrong-secret"] {
        assert!(!log.contains(secret), "the server logged a token");
    }
    assert!(
        !log.lines().any(|l| l.starts_with("ERROR forged")),
        "a client's path forged a log line"
    );
    assert!(
        log.contains("ERROR forged line"),
        "the path is logged, escaped"
    );
}

/// Fine-grained permissions over the network (spec/permissions.md): the admin makes the realm
/// read-only for everyone; bob, who has path-level write access, writes offline, syncs, and his
/// upload is acknowledged but his writes are refused and reverted by the server's correction:
/// he converges with the admin, and the server's journal (replayed by a restart) agrees.
#[test]
fn a_read_only_user_is_corrected_and_converges() {
    let (dir, config) = setup();
    let data = dir.path().join("data");
    let server = ServerProc::start(&data, &config);
    let d = dir.path();
    let board = server.url("/shared/board");
    let admin = d.join("admin");
    let mut ops = board_schema();
    ops.push(
        serde_json::json!({"op": "insert", "type": "Item", "pk": "i1",
        "values": {"who": "admin", "n": 1}}),
    );
    apply(d, &admin, &serde_json::Value::Array(ops));
    sync(&admin, &board, "admin-secret");
    let bob = d.join("bob");
    sync(&bob, &board, "t-bob");
    apply(
        d,
        &admin,
        &serde_json::json!([{"op": "grant", "role": "everyone", "level": "realm",
            "privileges": {"canCreate": false, "canUpdate": false, "canDelete": false}}]),
    );
    sync(&admin, &board, "admin-secret");

    // Offline, bob has not seen the grant: he edits, creates and deletes.
    apply(
        d,
        &bob,
        &serde_json::json!([
            {"op": "set", "type": "Item", "pk": "i1", "values": {"who": "bob"}},
            {"op": "insert", "type": "Item", "pk": "i2", "values": {"who": "bob", "n": 2}},
            {"op": "list_insert", "type": "Board", "pk": 1, "property": "log", "index": 0,
                "value": "bob was here"}
        ]),
    );
    assert!(state(&bob).contains("\"who\":\"bob\""));
    sync(&bob, &board, "t-bob");
    sync(&admin, &board, "admin-secret");
    assert_eq!(state(&bob), state(&admin), "bob's writes were reverted");
    assert!(state(&admin).contains("\"who\":\"admin\""));
    assert!(
        !state(&admin).contains("bob"),
        "nothing of bob's reached the realm"
    );

    // The realm uses permissions now, so the config's users (all three may write the board)
    // have their `__User`s with their private roles, written by the server, journaled.
    server.kill();
    let (realm, _, _) = open_realm(&realm_file(&data, "/shared/board")).expect("realm opens");
    let store = realm.server().replica().store();
    for user in ["alice", "bob", "carol"] {
        let (key, role) = (ObjKey::String(user.into()), private_role(user));
        let role_key = ObjKey::String(role.as_str().into());
        assert_eq!(
            store.get(USER, &key, ROLE_PROP).expect("the user's role"),
            Value::Link(role_key.clone())
        );
        let members = store.list(ROLE, &role_key, MEMBERS_PROP).expect("members");
        assert_eq!(
            members,
            vec![Value::Link(key)],
            "{user} is in its private role"
        );
    }
    assert!(!store
        .exists(USER, &ObjKey::String("admin".into()))
        .expect("exists"));

    // The server rebuilt from its journal holds the same, and keeps checking bob.
    let server = ServerProc::start(&data, &config);
    let board = server.url("/shared/board");
    apply(
        d,
        &bob,
        &serde_json::json!([{"op": "set", "type": "Item", "pk": "i1", "values": {"n": 9}}]),
    );
    sync(&bob, &board, "t-bob");
    sync(&admin, &board, "admin-secret");
    assert_eq!(state(&bob), state(&admin));
    assert!(state(&admin).contains("\"n\":1"), "{}", state(&admin));
}

/// Read filtering over the network (spec/permissions.md section 2.5): nobody but the admin may
/// read `Secret`, so bob's client never receives it; when the admin revokes everyone's canRead
/// on `Item`, the items leave bob's client (a reset onto what he may read) but not the realm;
/// after a restart of the server, which knows no client's view then, bob still holds exactly
/// what he may read, and gets the items back when reading is granted again.
#[test]
fn a_user_receives_only_what_he_may_read() {
    let (dir, config) = setup();
    let data = dir.path().join("data");
    let server = ServerProc::start(&data, &config);
    let d = dir.path();
    let board = server.url("/shared/board");
    let admin = d.join("admin");
    let mut ops = board_schema();
    ops.extend([
        serde_json::json!({"op": "add_type", "type": "Secret", "primary_key": "id",
            "properties": {"id": "int", "text": "string"}}),
        serde_json::json!({"op": "insert", "type": "Secret", "pk": 1, "values": {"text": "hush"}}),
        serde_json::json!({"op": "insert", "type": "Item", "pk": "i1", "values": {"who": "admin"}}),
        serde_json::json!({"op": "grant", "role": "everyone", "level": "class", "type": "Secret",
            "privileges": {"canRead": false}}),
    ]);
    apply(d, &admin, &serde_json::Value::Array(ops));
    sync(&admin, &board, "admin-secret");
    let bob = d.join("bob");
    sync(&bob, &board, "t-bob");
    assert!(
        state(&bob).contains("i1") && !state(&bob).contains("hush"),
        "{}",
        state(&bob)
    );
    assert!(state(&admin).contains("hush"));

    let item_read = |read: bool| {
        serde_json::json!([{"op": "grant", "role": "everyone", "level": "class", "type": "Item",
            "privileges": {"canRead": read}}])
    };
    apply(d, &admin, &item_read(false));
    sync(&admin, &board, "admin-secret");
    sync(&bob, &board, "t-bob");
    assert!(!state(&bob).contains("i1"), "{}", state(&bob));
    assert!(state(&admin).contains("i1"), "the realm keeps the item");

    server.kill();
    let server = ServerProc::start(&data, &config);
    let board = server.url("/shared/board");
    sync(&bob, &board, "t-bob");
    assert!(!state(&bob).contains("i1") && !state(&bob).contains("hush"));
    apply(d, &admin, &item_read(true));
    sync(&admin, &board, "admin-secret");
    sync(&bob, &board, "t-bob");
    assert!(
        state(&bob).contains("i1") && !state(&bob).contains("hush"),
        "{}",
        state(&bob)
    );
}
