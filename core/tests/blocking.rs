//! The blocking driver over embedded-io, on a real TCP stream on 127.0.0.1.
mod common;

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{serve_connection, Collect, Conn, Memory, Monotonic, Rng};
use embedded_io_adapters::std::FromStd;
use ferry_core::blocking::{Driver, DriverError};
use ferry_core::{buffer_len, Config, Connection, ErrorCode, Failure, FileDigest};

#[test]
fn upload_and_download_over_tcp_with_small_chunks() {
    let config = Config {
        max_chunk: 1024,
        window: 4,
        ..Config::stream()
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        serve_connection(stream, config)
    });
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let len = buffer_len(1024);
    let mut client: Conn = Connection::client(config, vec![0; len], vec![0; len], 0).unwrap();
    let mut read_buf = [0u8; 2048];
    let mut chunk_buf = [0u8; 1024];
    let mut driver = Driver::new(
        &mut client,
        FromStd::new(stream),
        Monotonic(Instant::now()),
        &mut read_buf,
    );
    assert_eq!(driver.connect::<()>(), Ok((1024, 4)));

    let mut rng = Rng::new(3);
    for size in [0usize, 1, 1023, 1024, 1025, 300_000] {
        let data = rng.bytes(size);
        let name = format!("f{size}");
        let digest = driver
            .upload(&name, size as u64, &mut Memory(&data), &mut chunk_buf)
            .unwrap();
        assert_eq!(digest, FileDigest::of(&data, 1024));
        let mut sink = Collect::default();
        let (got_size, got) = driver.download(&name, None, &mut sink).unwrap();
        assert_eq!((got_size, got), (size as u64, digest));
        assert_eq!(sink.data, data);
        assert_eq!(sink.committed, Some(digest));
        assert_eq!(sink.held.len() as u64, (size as u64).div_ceil(1024));
    }
    match driver.download("missing", None, &mut Collect::default()) {
        Err(DriverError::Failed(Failure::Peer(code))) => assert_eq!(code, ErrorCode::NOT_FOUND),
        other => panic!("{other:?}"),
    }
    drop(driver.into_io());
    server.join().unwrap().unwrap();
}
