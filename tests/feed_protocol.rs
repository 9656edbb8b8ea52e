//! The Adapter feed over the network, sans-IO: the FEED and FEED_ITEM messages (their binary
//! form, as spec/protocol.md section 13 writes it, and hostile input), and the consumer's end
//! ([`FeedConsumer`]): items cut into frames come back whole, realms' cursors move, a server
//! that skips or interleaves is caught, a refusal is a typed error.

use objsync::feed::{item_frames, ConsumerConfig, ConsumerError, Feed, FeedConsumer, FeedCursor};
use objsync::feed::{FeedItem, FeedSnapshot};
use objsync::sync::{Client, Server};
use objsync::wire::{
    Chunk, ErrorCode, ErrorMessage, FeedClientMessage, FeedPiece, FeedRequest, FeedServerMessage,
    Limits, ServerMessage, MIN_MESSAGE, PROTOCOL_VERSION,
};
use objsync::{ObjectType, PeerId, PropType, Property, ServerVersion};

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn request() -> FeedRequest {
    FeedRequest {
        protocol_version: PROTOCOL_VERSION,
        paths: "/shop/.*".into(),
        token: "t".into(),
        max_message: 1 << 20,
        cursors: vec![("/shop/a".into(), ServerVersion(3))],
    }
}

fn piece() -> FeedPiece {
    FeedPiece {
        path: "/a".into(),
        latest: ServerVersion(5),
        piece: Chunk {
            head: ServerVersion(4),
            total: 300,
            offset: 0,
            data: b"{}".to_vec(),
        },
    }
}

#[test]
fn the_feed_examples_of_the_spec_encode_as_written() {
    let spec = std::fs::read_to_string("spec/protocol.md").expect("the protocol spec");
    let limits = Limits::default();
    let client = FeedClientMessage::Feed(request());
    let bytes = client.encode();
    assert!(
        spec.contains(&format!("`{}`", hex(&bytes))),
        "{}",
        hex(&bytes)
    );
    assert_eq!(FeedClientMessage::decode(&bytes, &limits).unwrap(), client);
    let server = FeedServerMessage::Item(piece());
    let bytes = server.encode();
    assert!(
        spec.contains(&format!("`{}`", hex(&bytes))),
        "{}",
        hex(&bytes)
    );
    assert_eq!(FeedServerMessage::decode(&bytes, &limits).unwrap(), server);
    // PING, PONG and ERROR are the sync protocol's own frames.
    let ping = FeedClientMessage::Ping { timestamp: 300 }.encode();
    assert_eq!(hex(&ping), "05 ac 02");
    let error = ErrorMessage::new(ErrorCode::PermissionDenied, "admin only");
    let frame = FeedServerMessage::Error(error.clone()).encode();
    assert_eq!(frame, ServerMessage::Error(error.clone()).encode());
    assert_eq!(
        FeedServerMessage::decode(&frame, &limits).unwrap(),
        FeedServerMessage::Error(error)
    );
    assert!(
        !format!("{:?}", request()).contains("\"t\""),
        "the token stays out of Debug"
    );
}

#[test]
fn every_truncation_of_a_feed_message_is_refused_without_panicking() {
    let limits = Limits::default();
    let client = FeedClientMessage::Feed(request()).encode();
    let server = FeedServerMessage::Item(piece()).encode();
    for cut in 0..client.len() {
        assert!(FeedClientMessage::decode(&client[..cut], &limits).is_err());
    }
    for cut in 0..server.len() {
        assert!(FeedServerMessage::decode(&server[..cut], &limits).is_err());
    }
    let mut trailing = client.clone();
    trailing.push(0);
    assert!(FeedClientMessage::decode(&trailing, &limits).is_err());
    // A piece past its item's total, and an item beyond the receiver's limit.
    let mut past = piece();
    past.piece.offset = 299;
    let err = FeedServerMessage::decode(&FeedServerMessage::Item(past).encode(), &limits);
    assert_eq!(err.unwrap_err().code(), ErrorCode::MalformedMessage);
    let small = Limits {
        max_changeset: 100,
        ..limits
    };
    let err = FeedServerMessage::decode(&server, &small).unwrap_err();
    assert_eq!(err.code(), ErrorCode::LimitsExceeded);
    // A sync message is not a feed message, either way.
    let mark = objsync::wire::ClientMessage::Mark { request: 1 }.encode();
    assert!(FeedClientMessage::decode(&mark, &limits).is_err());
    let state = ServerMessage::Mark { request: 1 }.encode();
    assert!(FeedServerMessage::decode(&state, &limits).is_err());
}

/// A realm with a history of three transactions: a schema and a dog, a long name (an item
/// larger than a frame), a deletion.
fn server() -> Server {
    let mut server = Server::new();
    let mut device = Client::new(PeerId(3));
    let long = "x".repeat(2_000);
    device
        .write(10, |tx| {
            let props = [
                Property::new("name", PropType::parse("string")?),
                Property::new("note", PropType::parse("string")?),
            ];
            tx.add_type(ObjectType::new("Dog", Some("name"), props)?)?;
            tx.insert("Dog", "rex")
        })
        .unwrap();
    device
        .write(20, |tx| tx.set("Dog", "rex", "note", long.as_str()))
        .unwrap();
    device.write(30, |tx| tx.delete("Dog", "rex")).unwrap();
    server.integrate(device.peer(), device.upload()).unwrap();
    server
}

fn consumer(cursors: Vec<(String, FeedCursor)>) -> FeedConsumer {
    let config = ConsumerConfig {
        paths: ".*".into(),
        token: "admin".into(),
        limits: Limits::default(),
    };
    FeedConsumer::new(config, cursors)
}

#[test]
fn items_cut_into_frames_come_back_whole_and_move_the_cursor() {
    let server = server();
    let mut feed = Feed::new();
    let mut consumer = consumer(vec![]);
    consumer.connect();
    let request = consumer.poll_transmit().expect("the FEED request");
    let Ok(FeedClientMessage::Feed(sent)) = FeedClientMessage::decode(&request, &Limits::default())
    else {
        panic!("a FEED request")
    };
    assert!(sent.cursors.is_empty());
    let mut frames_per_item = Vec::new();
    while let Some(item) = feed.current(server.history()).unwrap() {
        let item = item.clone();
        let frames = item_frames("/a", ServerVersion(3), &item, MIN_MESSAGE);
        assert!(frames.iter().all(|f| f.len() <= MIN_MESSAGE));
        frames_per_item.push(frames.len());
        let (last, pieces) = frames.split_last().unwrap();
        for f in pieces {
            assert_eq!(consumer.handle(f).unwrap(), None);
        }
        let delivery = consumer.handle(last).unwrap().expect("the whole item");
        assert_eq!(delivery.item, item);
        assert_eq!(
            (delivery.path.as_str(), delivery.latest),
            ("/a", ServerVersion(3))
        );
        assert_eq!(consumer.cursor("/a"), delivery.cursor());
        feed.advance();
    }
    assert_eq!(frames_per_item.len(), 3);
    assert!(
        frames_per_item[1] > 8,
        "a 2,000-byte value takes many 256-byte frames"
    );
    assert_eq!(consumer.cursor("/a").version, ServerVersion(3));
    assert_eq!(consumer.cursor("/b").version, ServerVersion(0));
    // A new connection asks from where the consumer stands.
    consumer.connect();
    let request = consumer.poll_transmit().unwrap();
    let Ok(FeedClientMessage::Feed(sent)) = FeedClientMessage::decode(&request, &Limits::default())
    else {
        panic!("a FEED request")
    };
    assert_eq!(sent.cursors, vec![("/a".to_string(), ServerVersion(3))]);
}

#[test]
fn a_skipped_or_repeated_transaction_and_interleaved_pieces_are_caught() {
    let server = server();
    let mut feed = Feed::new();
    let first = feed.current(server.history()).unwrap().unwrap().clone();
    feed.advance();
    let second = feed.current(server.history()).unwrap().unwrap().clone();
    // The consumer stands at 0: version 2 skips one.
    let mut c = consumer(vec![]);
    let frames = item_frames("/a", ServerVersion(3), &second, 1 << 20);
    let err = c.handle(&frames[0]).unwrap_err();
    assert_eq!(
        err,
        ConsumerError::OutOfOrder {
            path: "/a".into(),
            cursor: ServerVersion(0),
            got: ServerVersion(2)
        }
    );
    // At 1, version 1 again is a repetition.
    let mut c = consumer(vec![(
        "/a".into(),
        FeedCursor {
            version: ServerVersion(1),
        },
    )]);
    let frames = item_frames("/a", ServerVersion(3), &first, 1 << 20);
    assert!(matches!(
        c.handle(&frames[0]),
        Err(ConsumerError::OutOfOrder { .. })
    ));
    // Another realm's piece inside an item.
    let mut c = consumer(vec![]);
    let long = item_frames("/a", ServerVersion(3), &second, MIN_MESSAGE);
    let other = item_frames("/b", ServerVersion(1), &first, MIN_MESSAGE);
    assert_eq!(c.handle(&long[0]).unwrap(), None);
    assert!(matches!(
        c.handle(&other[0]),
        Err(ConsumerError::Interleaved { .. })
    ));
    // A snapshot may come at any version: it replaces what the consumer held.
    let mut c = consumer(vec![(
        "/a".into(),
        FeedCursor {
            version: ServerVersion(9),
        },
    )]);
    let snapshot = FeedItem::Snapshot(FeedSnapshot {
        version: ServerVersion(2),
        timestamp: 20,
        instructions: vec![],
    });
    let frames = item_frames("/a", ServerVersion(2), &snapshot, 1 << 20);
    let delivery = c.handle(&frames[0]).unwrap().unwrap();
    assert_eq!(delivery.cursor().version, ServerVersion(2));
}

#[test]
fn a_refusal_is_a_typed_error_that_says_whether_to_retry() {
    let mut c = consumer(vec![]);
    let denied = ErrorMessage::new(ErrorCode::PermissionDenied, "the feed is for the admin");
    let err = c
        .handle(&FeedServerMessage::Error(denied.clone()).encode())
        .unwrap_err();
    assert_eq!(err, ConsumerError::Refused(denied));
    assert_eq!(err.action(), objsync::wire::Action::Fatal);
    let going = ErrorMessage::new(ErrorCode::ConnectionClosed, "shutting down");
    let err = c
        .handle(&FeedServerMessage::Error(going).encode())
        .unwrap_err();
    assert_eq!(err.action(), objsync::wire::Action::Retry);
    let pong = FeedServerMessage::Pong { timestamp: 1 }.encode();
    assert_eq!(c.handle(&pong).unwrap(), None);
}
