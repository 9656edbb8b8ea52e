//! The reference sync server and client over WebSocket: what the `server`, `client` and
//! `load` binaries (`src/bin/`) and the end-to-end tests (`tests/net.rs`) share.
//!
//! - [`journal`]: the append-only checksummed log both sides keep their durable state in.
//! - [`disk`]: a realm's files (snapshot, journal, the previous generation), opening,
//!   checkpoints, and the checks and repairs of `objsync-admin`.
//! - [`storage`]: where the server keeps realms: the embedded journal, or PostgreSQL shared by
//!   several server processes.
//! - [`workload`]: the load generator's transactions, which the tests count.
//! - [`server`]: realms in a storage, authentication and permissions, one task per connection.
//! - [`connector`]: `pg-connector`, the two-way PostgreSQL connector.
//! - [`consumer`]: the Adapter feed's consumer over WebSocket.
//! - [`client`]: the durable local realm, connections with reconnection and backoff, and the
//!   `sync` and `watch` loops.
//!
//! Transport: one protocol message per binary WebSocket message. The WebSocket's own
//! message limit is kept above the protocol's ([`ws_config`]) so that an oversized message
//! reaches the session, which answers it with a proper ERROR.

pub mod client;
pub mod connector;
pub mod consumer;
pub mod disk;
pub mod journal;
pub mod server;
pub mod storage;
pub mod workload;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use objsync::wire::Limits;
use std::fs::File;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The `main` of a command-line tool: logs to stderr (filtered by `RUST_LOG`, else
/// `default_filter`), runs `body`, and turns an error into a one-line reason on stderr and
/// exit status 1.
pub fn run_main(default_filter: &str, body: impl FnOnce() -> Result<(), String>) -> ExitCode {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let chosen =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // The WebSocket crates trace every frame with its payload, and a BIND's payload holds the
    // token: whatever the chosen level, nothing of theirs below debug is shown. This filter's
    // ceiling is also the chosen one: the `log` records of those crates are built before any
    // filter sees them unless the global ceiling stops them, which with a TRACE default here
    // cost a busy server 5% of its time.
    let ceiling = chosen.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let no_frames = Targets::new()
        .with_default(ceiling)
        .with_target("tungstenite", ceiling.min(LevelFilter::DEBUG))
        .with_target("tokio_tungstenite", ceiling.min(LevelFilter::DEBUG));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(chosen)
                .with_filter(no_frames),
        )
        .init();
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A random u64 from the operating system.
pub fn random_u64() -> u64 {
    getrandom::u64().expect("the operating system's random source is available")
}

/// A random identifier in 1..2^63: peer ids, salts and realm file identifiers (the protocol's
/// integers stay below 2^63, and 0 means "none").
pub fn random_id() -> u64 {
    loop {
        let v = random_u64() >> 1;
        if v != 0 {
            return v;
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch (the physical input of the client's hybrid
/// logical clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The WebSocket limits for a protocol endpoint with `limits`: twice the protocol's, so a
/// message slightly over the limit is refused by the session (with LimitsExceeded) rather
/// than by the transport, while a huge one is still cut off before it is buffered. The write
/// buffer is bounded too (a message and a little), and the read buffer, `read_buffer` bytes, kept
/// small: it is zeroed before every read attempt, and there is one per connection.
pub fn ws_config(limits: &Limits, read_buffer: usize) -> WebSocketConfig {
    let message = limits.max_message.saturating_mul(2);
    WebSocketConfig::default()
        .max_message_size(Some(message))
        .max_frame_size(Some(message))
        .read_buffer_size(read_buffer)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(message.saturating_add(WRITE_BUFFER))
}

/// Bytes a client's WebSocket reads from its socket at a time: downloads are large.
pub const CLIENT_READ_BUFFER: usize = 16 << 10;

/// Bytes a server's WebSocket reads from its socket at a time. Uploads are mostly small, and a
/// server session's loop tries its socket after every frame it sends, each time zeroing this
/// buffer: with 16 KiB, a realm of 1,000 busy clients spent 9% of the server's time in that
/// zeroing.
pub const SERVER_READ_BUFFER: usize = 4 << 10;

/// Bytes of frames a WebSocket gathers before writing them to its socket.
const WRITE_BUFFER: usize = 64 << 10;

/// How many outgoing frames may wait for the writer task: a little slack so that the
/// session keeps working while the socket drains, and few, since each may be a whole
/// message.
const OUT_QUEUE: usize = 4;

/// A WebSocket split in two: frames come in through `incoming`, and go out through
/// `outgoing` to a writer task. A connection thus keeps reading while it writes: two ends
/// that both only wrote, each waiting for the other to read, would deadlock once the TCP
/// buffers fill (a client uploading a long history while the server downloads one to it).
pub struct Link<S> {
    /// Messages from the other end.
    pub incoming: SplitStream<WebSocketStream<S>>,
    /// Frames for the writer task; reserve a permit before taking a frame from a session so
    /// that no frame is ever taken and then dropped.
    pub outgoing: mpsc::Sender<Vec<u8>>,
    writer: JoinHandle<()>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Link<S> {
    /// Splits `ws` and starts its writer.
    pub fn new(ws: WebSocketStream<S>) -> Link<S> {
        let (sink, incoming) = ws.split();
        let (outgoing, frames) = mpsc::channel(OUT_QUEUE);
        Link {
            incoming,
            outgoing,
            writer: tokio::spawn(write_frames(sink, frames)),
        }
    }

    /// Sends what is queued, then closes the WebSocket (waiting a bounded time for a peer
    /// that does not read).
    pub async fn close(self) {
        drop(self.outgoing);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.writer).await;
    }
}

/// The writer task: sends frames as they come, flushing whenever the queue runs dry, and
/// closes the WebSocket once the queue is dropped. It stops at the first error; the other
/// half notices when its next reservation fails.
async fn write_frames<S: AsyncRead + AsyncWrite + Unpin>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut frames: mpsc::Receiver<Vec<u8>>,
) {
    while let Some(frame) = frames.recv().await {
        if sink.feed(Message::binary(frame)).await.is_err() {
            return;
        }
        if frames.is_empty() && sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

/// Takes an exclusive advisory lock on `dir/lock`, held while the returned file is open:
/// a server's data directory or a client's local realm belongs to one process at a time.
pub fn lock_dir(dir: &Path) -> std::io::Result<File> {
    std::fs::create_dir_all(dir)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |e| {
            std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!("{} is in use by another process ({e})", dir.display()),
            )
        },
    )?;
    Ok(file)
}
