//! What the end-to-end tests share: child processes killed when dropped, and starting the
//! `server` binary on an ephemeral port.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `server` binary on an ephemeral port with `args` (its storage and config),
/// logging at `level` to the end of the file `log`; waits until it says where it listens and
/// returns it with that address. Fails the test with the log if it has not said so in 30 s.
pub fn start_server<S: AsRef<OsStr>>(args: &[S], level: &str, log: &Path) -> (Proc, String) {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("server log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", level)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("the server starts");
    let stdout = child.stdout.take().expect("piped stdout");
    // Killed on drop from here on, whatever fails.
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            panic!(
                "the server did not say where it listens: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        };
        if let Some(addr) = line.strip_prefix("listening on ") {
            return (proc, addr.to_string());
        }
    }
}
