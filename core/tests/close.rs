//! A connection ended by its shell with an error on seq 0: a server refusing for capacity
//! with a retry-after, before or after the hello.

use ferry_core::{buffer_len, retry_after_secs, Config, Connection, ErrorCode, Event, Failure};

type Conn = Connection<Vec<u8>, 4>;

fn conn(server: bool) -> Conn {
    let config = Config::stream();
    let len = buffer_len(config.max_chunk as usize);
    let (rx, tx) = (vec![0; len], vec![0; len]);
    if server {
        Conn::server(config, rx, tx, 0).unwrap()
    } else {
        Conn::client(config, rx, tx, 0).unwrap()
    }
}

/// Moves every frame `from` sends into `to`.
fn pump(from: &mut Conn, to: &mut Conn) {
    while let Some(transmit) = from.poll_transmit(0) {
        let bytes = transmit.bytes.to_vec();
        let mut at = 0;
        while at < bytes.len() {
            let used = to.handle_input(&bytes[at..], 0);
            assert!(used > 0, "input not taken");
            at += used;
        }
    }
}

fn closed(conn: &mut Conn) -> Option<(Failure, String)> {
    while let Some(event) = conn.poll_event(0) {
        if let Event::Closed { failure, text } = event {
            return Some((failure, text.to_string()));
        }
    }
    None
}

#[test]
fn busy_with_retry_after_before_the_hello_is_answered() {
    let (mut client, mut server) = (conn(false), conn(true));
    pump(&mut client, &mut server);
    server.close_with(ErrorCode::BUSY, "too many connections; retry-after=2");
    pump(&mut server, &mut client);
    let (failure, text) = closed(&mut client).expect("the client saw the close");
    assert_eq!(failure, Failure::Peer(ErrorCode::BUSY));
    assert_eq!(retry_after_secs(&text), Some(2));
    assert!(client.negotiated().is_none());
    let (failure, _) = closed(&mut server).expect("the server closed");
    assert_eq!(failure, Failure::Local(ErrorCode::BUSY));
    assert!(server.is_closed());
    // Nothing more is sent, and a second close does nothing.
    server.close_with(ErrorCode::FORBIDDEN, "again");
    assert!(server.poll_transmit(0).is_none());
}

#[test]
fn forbidden_after_the_hello() {
    let (mut client, mut server) = (conn(false), conn(true));
    pump(&mut client, &mut server);
    while server.poll_event(0).is_some() {}
    pump(&mut server, &mut client);
    while client.poll_event(0).is_some() {}
    assert!(client.negotiated().is_some());
    server.close_with(ErrorCode::FORBIDDEN, "the client certificate was revoked");
    pump(&mut server, &mut client);
    let (failure, text) = closed(&mut client).expect("the client saw the close");
    assert_eq!(failure, Failure::Peer(ErrorCode::FORBIDDEN));
    assert_eq!(text, "the client certificate was revoked");
}
