//! The protocol's messages: exact round trips through the binary and JSON forms, and typed
//! errors (never panics) for every truncation, corruption and oversized field.

use objsync_testkit::cases;

use objsync::sync::{Checkpoint, Cursor, RecoveryRequest};
use objsync::wire::{
    Action, Bind, Chunk, ClientMessage, DownloadHead, DownloadMessage, ErrorCode, ErrorMessage,
    FileIdent, Ident, IdentReply, Limits, MessageError, Outgoing, Reassembly, ServerMessage, Start,
    StatePosition, UploadMessage, UploadProgress, PROTOCOL_VERSION,
};
use objsync::{ClientVersion, Fingerprint, PeerId, ServerVersion};
use proptest::prelude::*;

fn version() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![0..4u64, any::<u64>()]
}

fn start() -> impl Strategy<Value = Start> {
    let held = (version(), version()).prop_map(|(v, offset)| StatePosition {
        version: ServerVersion(v),
        offset,
    });
    let checkpoint = (version(), any::<u64>()).prop_map(|(v, f)| Checkpoint {
        version: ServerVersion(v),
        fingerprint: Fingerprint(f),
    });
    let request = (
        prop::collection::vec(checkpoint, 0..4),
        prop::option::of((1..u64::MAX).prop_map(ClientVersion)),
    )
        .prop_map(|(checkpoints, diverged_from)| RecoveryRequest {
            checkpoints,
            diverged_from,
        });
    prop_oneof![
        Just(Start::History),
        held.clone().prop_map(Start::State),
        (held, request).prop_map(|(h, r)| Start::Recovery(h, r)),
    ]
}

fn cursor() -> impl Strategy<Value = Cursor> {
    (version(), version(), any::<u64>()).prop_map(|(s, o, f)| Cursor {
        server: ServerVersion(s),
        own: ClientVersion(o),
        fingerprint: Fingerprint(f),
    })
}

fn chunks<H: std::fmt::Debug + Clone + 'static>(
    head: impl Strategy<Value = H> + Clone + 'static,
) -> impl Strategy<Value = Vec<Chunk<H>>> {
    prop::collection::vec(
        (
            head,
            prop::collection::vec(any::<u8>(), 0..40),
            0..50u64,
            0..50u64,
        )
            .prop_map(|(head, data, offset, extra)| Chunk {
                head,
                total: offset + data.len() as u64 + extra,
                offset,
                data,
            }),
        0..4,
    )
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (any::<u32>(), ".{0,20}", ".{0,20}", version()).prop_map(
            |(protocol_version, path, token, max_message)| {
                ClientMessage::Bind(Bind {
                    protocol_version,
                    path,
                    token,
                    max_message,
                })
            }
        ),
        (
            version(),
            version(),
            version(),
            cursor(),
            version(),
            version(),
            (version(), any::<u64>()),
            start(),
        )
            .prop_map(
                |(peer, salt, server_file, download, latest, last, acked, start)| {
                    ClientMessage::Ident(Ident {
                        file: FileIdent {
                            peer: PeerId(peer),
                            salt,
                        },
                        server_file,
                        download,
                        latest: ServerVersion(latest),
                        last_version: ClientVersion(last),
                        acknowledged: ClientVersion(acked.0),
                        acknowledged_signature: acked.1,
                        start,
                    })
                },
            ),
        (
            version(),
            version(),
            chunks(version().prop_map(ClientVersion))
        )
            .prop_map(|(c, s, chunks)| ClientMessage::Upload(UploadMessage {
                progress: UploadProgress {
                    client: ClientVersion(c),
                    server: ServerVersion(s),
                },
                chunks,
            })),
        version().prop_map(|request| ClientMessage::Mark { request }),
        version().prop_map(|timestamp| ClientMessage::Ping { timestamp }),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    let head = (version(), version(), any::<u64>()).prop_map(|(s, o, f)| DownloadHead {
        server_version: ServerVersion(s),
        last_own: ClientVersion(o),
        fingerprint: Fingerprint(f),
    });
    let code = prop_oneof![
        prop::sample::select(ErrorCode::ALL.to_vec()),
        (300..100_000u32).prop_map(ErrorCode::from_number),
    ];
    let action = prop::sample::select(vec![Action::Fatal, Action::Retry, Action::Reset]);
    prop_oneof![
        (version(), version(), version(), version()).prop_map(|(peer, salt, server_file, l)| {
            ServerMessage::Ident(IdentReply {
                file: FileIdent {
                    peer: PeerId(peer),
                    salt,
                },
                server_file,
                latest: ServerVersion(l),
            })
        }),
        (
            cursor(),
            version(),
            version(),
            any::<u64>(),
            version(),
            chunks(head)
        )
            .prop_map(
                |(cursor, latest, ack, own_signature, downloadable, chunks)| {
                    ServerMessage::Download(DownloadMessage {
                        cursor,
                        latest: ServerVersion(latest),
                        upload_ack: ClientVersion(ack),
                        own_signature,
                        downloadable,
                        chunks,
                    })
                }
            ),
        chunks(version().prop_map(ServerVersion))
            .prop_filter_map("one piece", |mut c| c.pop().map(ServerMessage::State)),
        version().prop_map(|request| ServerMessage::Mark { request }),
        version().prop_map(|timestamp| ServerMessage::Pong { timestamp }),
        (code, action, ".{0,30}", version(), version()).prop_map(
            |(code, action, message, cv, sv)| {
                ServerMessage::Error(ErrorMessage {
                    code,
                    action,
                    message,
                    client_version: ClientVersion(cv),
                    server_version: ServerVersion(sv),
                })
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(5000)))]

    #[test]
    fn client_messages_round_trip(m in client_message()) {
        let limits = Limits::default();
        let bytes = m.encode();
        prop_assert_eq!(ClientMessage::decode(&bytes, &limits), Ok(m.clone()));
        let json = serde_json::to_string(&m).unwrap();
        prop_assert_eq!(serde_json::from_str::<ClientMessage>(&json).unwrap(), m);
        // Every proper prefix is an error, never a panic or a different message.
        for n in 0..bytes.len() {
            prop_assert!(ClientMessage::decode(&bytes[..n], &limits).is_err());
        }
    }

    #[test]
    fn server_messages_round_trip(m in server_message()) {
        let limits = Limits::default();
        let bytes = m.encode();
        prop_assert_eq!(ServerMessage::decode(&bytes, &limits), Ok(m.clone()));
        let json = serde_json::to_string(&m).unwrap();
        prop_assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), m);
        for n in 0..bytes.len() {
            prop_assert!(ServerMessage::decode(&bytes[..n], &limits).is_err());
        }
    }

    #[test]
    fn corrupted_messages_decode_canonically_or_fail(
        c in client_message(),
        s in server_message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4),
    ) {
        let limits = Limits::default();
        let mut cb = c.encode();
        let mut sb = s.encode();
        for (i, x) in &flips {
            let n = i.index(cb.len());
            cb[n] ^= x;
            let n = i.index(sb.len());
            sb[n] ^= x;
        }
        // Whatever still decodes is a message whose encoding is exactly these bytes: the
        // form is canonical, so a corruption can never be read two ways.
        if let Ok(m) = ClientMessage::decode(&cb, &limits) {
            prop_assert_eq!(m.encode(), cb);
        }
        if let Ok(m) = ServerMessage::decode(&sb, &limits) {
            prop_assert_eq!(m.encode(), sb);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let limits = Limits::default();
        let _ = ClientMessage::decode(&bytes, &limits);
        let _ = ServerMessage::decode(&bytes, &limits);
    }

    #[test]
    fn outgoing_chunks_reassemble(
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
        budget in 1..400usize,
    ) {
        let mut out = Outgoing::new(ClientVersion(3), bytes.clone().into());
        let mut re = Reassembly::default();
        let mut done = None;
        let mut steps = 0;
        while done.is_none() {
            let mut b = budget;
            let chunk = out.next_chunk(&mut b);
            prop_assert!(chunk.data.len() <= budget.max(objsync::wire::CHUNK_OVERHEAD + 1));
            done = re.push(chunk).unwrap();
            steps += 1;
            prop_assert!(steps <= bytes.len() + 1);
        }
        prop_assert!(out.is_done());
        prop_assert_eq!(done, Some((ClientVersion(3), bytes)));
        prop_assert_eq!(re.buffered(), 0);
    }
}

#[test]
fn limits_are_enforced_before_allocating() {
    let limits = Limits {
        max_message: 64,
        max_changeset: 1000,
        max_text: 8,
    };
    // An oversized frame.
    let e = ClientMessage::decode(&[0x05; 65], &limits).unwrap_err();
    assert_eq!(e.code(), ErrorCode::LimitsExceeded);
    // A text above the limit.
    let bind = ClientMessage::Bind(Bind {
        protocol_version: 1,
        path: "/123456789".into(),
        token: String::new(),
        max_message: 1 << 20,
    });
    assert!(matches!(
        ClientMessage::decode(&bind.encode(), &limits),
        Err(MessageError::TooLarge {
            what: "realm path",
            ..
        })
    ));
    // A chunk claiming a changeset above the limit.
    let up = ClientMessage::Upload(UploadMessage {
        progress: UploadProgress::default(),
        chunks: vec![Chunk {
            head: ClientVersion(1),
            total: 1001,
            offset: 0,
            data: vec![1],
        }],
    });
    assert!(matches!(
        ClientMessage::decode(&up.encode(), &limits),
        Err(MessageError::TooLarge {
            what: "changeset",
            ..
        })
    ));
    // A chunk count or length far beyond the frame is a typed error, not an allocation.
    let e = ClientMessage::decode(
        &[
            0x03, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ],
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::MalformedMessage);
    let e = ClientMessage::decode(
        &[0x03, 0, 0, 1, 1, 10, 0, 0xff, 0xff, 0x03],
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::MalformedMessage, "{e}");
    // A chunk running past its changeset's end.
    let e =
        ClientMessage::decode(&[0x03, 0, 0, 1, 1, 3, 2, 2, 9, 9], &Limits::default()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::MalformedMessage, "{e}");
}

#[test]
fn every_error_code_round_trips_and_says_what_to_do() {
    for &code in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_number(code.number()), code);
        let m = ErrorMessage::new(code, "x");
        assert_eq!(m.action, code.action());
        assert!(m.to_string().contains(code.name()));
    }
    let reset = [
        ErrorCode::BadServerFileIdent,
        ErrorCode::BadClientFileIdent,
        ErrorCode::BadServerVersion,
        ErrorCode::BadClientVersion,
        ErrorCode::DivergingHistories,
    ];
    for code in reset {
        assert_eq!(code.action(), Action::Reset, "{code:?}");
    }
    assert_eq!(ErrorCode::ClientFileBound.action(), Action::Retry);
    assert_eq!(ErrorCode::PermissionDenied.action(), Action::Fatal);
    assert_eq!(ErrorCode::WrongProtocolVersion.action(), Action::Fatal);
    assert_eq!(ErrorCode::from_number(4242), ErrorCode::Unknown(4242));
}

#[test]
fn reassembly_refuses_gaps_and_interleaving() {
    let c = |head: u64, total, offset, data: &[u8]| Chunk {
        head: ClientVersion(head),
        total,
        offset,
        data: data.to_vec(),
    };
    let mut r = Reassembly::default();
    assert_eq!(r.push(c(1, 4, 0, b"ab")), Ok(None));
    assert!(
        r.push(c(2, 4, 2, b"cd")).is_err(),
        "another changeset began"
    );
    let mut r = Reassembly::default();
    assert_eq!(r.push(c(1, 4, 0, b"ab")), Ok(None));
    assert!(r.push(c(1, 4, 3, b"d")).is_err(), "a gap");
    let mut r = Reassembly::default();
    assert!(r.push(c(1, 4, 1, b"b")).is_err(), "does not start at 0");
    let mut r = Reassembly::default();
    assert_eq!(r.push(c(1, 4, 0, b"ab")), Ok(None));
    assert_eq!(r.buffered(), 2);
    assert_eq!(
        r.push(c(1, 4, 2, b"cd")),
        Ok(Some((ClientVersion(1), b"abcd".to_vec())))
    );
}

/// Every example of spec/protocol.md 3.12 encodes as written there.
#[test]
fn the_examples_of_the_spec_encode_as_written() {
    let spec = std::fs::read_to_string("spec/protocol.md").expect("the protocol spec");
    let hex = |b: Vec<u8>| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let held = StatePosition {
        version: ServerVersion(9),
        offset: 300,
    };
    let first = Ident {
        file: FileIdent {
            peer: PeerId(7),
            salt: 0,
        },
        server_file: 0,
        download: Cursor::default(),
        latest: ServerVersion(0),
        last_version: ClientVersion(0),
        acknowledged: ClientVersion(0),
        acknowledged_signature: 0,
        start: Start::History,
    };
    let resume = Ident {
        file: FileIdent {
            peer: PeerId(7),
            salt: 0x1234,
        },
        server_file: 0x5eed,
        download: Cursor {
            server: ServerVersion(3),
            own: ClientVersion(1),
            fingerprint: Fingerprint(0x2a),
        },
        latest: ServerVersion(3),
        last_version: ClientVersion(2),
        acknowledged: ClientVersion(1),
        acknowledged_signature: 0x63,
        start: Start::History,
    };
    let recovery = RecoveryRequest {
        checkpoints: vec![Checkpoint {
            version: ServerVersion(3),
            fingerprint: Fingerprint(0x2a),
        }],
        diverged_from: None,
    };
    let client = [
        ClientMessage::Bind(Bind {
            protocol_version: PROTOCOL_VERSION,
            path: "/notes".into(),
            token: "t".into(),
            max_message: 1 << 20,
        }),
        ClientMessage::Ident(first.clone()),
        ClientMessage::Ident(resume.clone()),
        ClientMessage::Ident(Ident {
            start: Start::State(held),
            ..first
        }),
        ClientMessage::Ident(Ident {
            start: Start::Recovery(StatePosition::default(), recovery),
            ..resume
        }),
        ClientMessage::Upload(UploadMessage {
            progress: UploadProgress {
                client: ClientVersion(2),
                server: ServerVersion(3),
            },
            chunks: vec![Chunk {
                head: ClientVersion(3),
                total: 300,
                offset: 0,
                data: b"OSC".to_vec(),
            }],
        }),
        ClientMessage::Mark { request: 42 },
        ClientMessage::Ping { timestamp: 300 },
    ];
    let server = [
        ServerMessage::Ident(IdentReply {
            file: FileIdent {
                peer: PeerId(7),
                salt: 0x1234,
            },
            server_file: 0x5eed,
            latest: ServerVersion(3),
        }),
        ServerMessage::Download(DownloadMessage {
            cursor: Cursor {
                server: ServerVersion(5),
                own: ClientVersion(2),
                fingerprint: Fingerprint(0x2a),
            },
            latest: ServerVersion(6),
            upload_ack: ClientVersion(2),
            own_signature: 0x63,
            downloadable: 150,
            chunks: vec![Chunk {
                head: DownloadHead {
                    server_version: ServerVersion(6),
                    last_own: ClientVersion(2),
                    fingerprint: Fingerprint(0x2b),
                },
                total: 200,
                offset: 0,
                data: b"OS".to_vec(),
            }],
        }),
        ServerMessage::Mark { request: 42 },
        ServerMessage::Pong { timestamp: 300 },
        ServerMessage::Error(ErrorMessage::new(ErrorCode::ClientFileBound, "busy")),
        ServerMessage::Error(
            ErrorMessage::new(ErrorCode::ChangesetsLost, "lost").about_client(ClientVersion(4)),
        ),
        ServerMessage::State(Chunk {
            head: ServerVersion(9),
            total: 300,
            offset: 0,
            data: b"OSS".to_vec(),
        }),
    ];
    let encoded =
        (client.iter().map(ClientMessage::encode)).chain(server.iter().map(ServerMessage::encode));
    for bytes in encoded {
        let h = hex(bytes);
        assert!(
            spec.contains(&format!("`{h}`")),
            "spec/protocol.md 3.12 lacks `{h}`"
        );
    }
}
