//! The Adapter feed's consumer over WebSocket: one connection driving a
//! [`objsync::feed::FeedConsumer`], for the PostgreSQL connector and the tests.

use super::client::Failure;
use super::{now_ms, ws_config, Link, CLIENT_READ_BUFFER};
use futures_util::StreamExt;
use objsync::feed::{ConsumerError, Delivery, FeedConsumer};
use objsync::wire::Limits;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

/// How often a connected consumer PINGs (the server drops connections silent for a minute).
const PING_EVERY: Duration = Duration::from_secs(10);

/// A server not heard from for this long is taken for gone.
const DEAD_AFTER: Duration = Duration::from_secs(35);

/// One feed connection.
pub struct FeedLink {
    link: Link<MaybeTlsStream<TcpStream>>,
    /// The consumer: its cursors move as items are handed out.
    pub consumer: FeedConsumer,
    last_heard: Instant,
    last_ping: Instant,
}

impl FeedLink {
    /// Connects to the server at `authority` (`host:port`) and sends the FEED request.
    pub async fn connect(
        authority: &str,
        mut consumer: FeedConsumer,
        limits: &Limits,
    ) -> Result<FeedLink, Failure> {
        let request = format!("ws://{authority}/realm-sync");
        let connect = tokio_tungstenite::connect_async_with_config(
            request,
            Some(ws_config(limits, CLIENT_READ_BUFFER)),
            true,
        );
        let ws = match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => return Err(Failure::Connection(format!("{authority}: {e}"))),
            Err(_) => return Err(Failure::Connection(format!("{authority}: timed out"))),
        };
        consumer.connect();
        let mut link = FeedLink {
            link: Link::new(ws),
            consumer,
            last_heard: Instant::now(),
            last_ping: Instant::now(),
        };
        link.flush().await?;
        Ok(link)
    }

    async fn flush(&mut self) -> Result<(), Failure> {
        while let Some(frame) = self.consumer.poll_transmit() {
            (self.link.outgoing.send(frame).await)
                .map_err(|_| Failure::Connection("the connection dropped".into()))?;
        }
        Ok(())
    }

    /// The next item, or `None` if none came within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>, Failure> {
        let deadline = Instant::now() + wait;
        loop {
            if self.last_ping.elapsed() >= PING_EVERY {
                if self.last_heard.elapsed() > DEAD_AFTER {
                    return Err(Failure::Connection("the server stopped answering".into()));
                }
                self.consumer.ping(now_ms());
                self.last_ping = Instant::now();
                self.flush().await?;
            }
            let until = deadline.min(self.last_ping + PING_EVERY);
            let message = tokio::select! {
                m = self.link.incoming.next() => m,
                () = tokio::time::sleep_until(until) => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    continue;
                }
            };
            let frame = match message {
                Some(Ok(Message::Binary(frame))) => frame,
                Some(Ok(Message::Close(_))) | None => {
                    return Err(Failure::Connection("closed by the server".into()))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(Failure::Connection(e.to_string())),
            };
            self.last_heard = Instant::now();
            match self.consumer.handle(&frame) {
                Ok(Some(delivery)) => return Ok(Some(delivery)),
                Ok(None) => {}
                Err(ConsumerError::Refused(e)) => return Err(Failure::Server(e)),
                Err(e) => return Err(Failure::Protocol(e.to_string())),
            }
        }
    }

    /// Closes the connection.
    pub async fn close(self) {
        self.link.close().await;
    }
}
