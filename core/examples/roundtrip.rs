//! A verified round trip over TCP on 127.0.0.1 with the blocking driver: a server
//! thread keeps files in memory, the client uploads FILE (default: 64 MiB of
//! pseudo-random bytes), downloads it back and compares bytes and digests.
//!
//! `cargo run --release -p ferry-core --example roundtrip -- [FILE]`
//! (plain TCP, no TLS: this shows the core alone; `ferry-server` adds mutual TLS.)

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use common::{serve_connection, Collect, Memory, Monotonic, Rng};
use embedded_io_adapters::std::FromStd;
use ferry_core::blocking::Driver;
use ferry_core::{buffer_len, Config, Connection, FileDigest};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = match std::env::args().nth(1) {
        Some(path) => std::fs::read(path)?,
        None => Rng::new(1).bytes(64 << 20),
    };
    let config = Config::stream();
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        serve_connection(stream, config)
    });

    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let len = buffer_len(config.max_chunk as usize);
    let mut client: common::Conn =
        Connection::client(config, vec![0; len], vec![0; len], 0).map_err(|e| format!("{e:?}"))?;
    let mut read_buf = vec![0u8; 256 * 1024];
    let mut chunk_buf = vec![0u8; config.max_chunk as usize];
    let mut driver = Driver::new(
        &mut client,
        FromStd::new(stream),
        Monotonic(Instant::now()),
        &mut read_buf,
    );
    let (chunk_size, window) = driver.connect::<()>().map_err(|e| format!("{e:?}"))?;

    let started = Instant::now();
    let uploaded = driver
        .upload(
            "roundtrip.bin",
            data.len() as u64,
            &mut Memory(&data),
            &mut chunk_buf,
        )
        .map_err(|e| format!("upload: {e:?}"))?;
    let up = started.elapsed();
    let started = Instant::now();
    let mut sink = Collect::default();
    let (size, downloaded) = driver
        .download("roundtrip.bin", None, &mut sink)
        .map_err(|e| format!("download: {e:?}"))?;
    let down = started.elapsed();
    drop(driver.into_io());
    server.join().expect("server thread")?;

    let expected = FileDigest::of(&data, chunk_size);
    let mb = data.len() as f64 / 1e6;
    println!(
        "chunk size {chunk_size}, window {window}, {} bytes",
        data.len()
    );
    println!(
        "upload   verified {uploaded} in {:.3}s ({:.0} MB/s)",
        up.as_secs_f64(),
        mb / up.as_secs_f64()
    );
    println!(
        "download verified {downloaded} in {:.3}s ({:.0} MB/s)",
        down.as_secs_f64(),
        mb / down.as_secs_f64()
    );
    let same = uploaded == expected
        && downloaded == expected
        && size == data.len() as u64
        && sink.data == data;
    println!(
        "round trip: {}",
        if same {
            "byte-identical, digests match"
        } else {
            "MISMATCH"
        }
    );
    if !same {
        std::process::exit(1);
    }
    Ok(())
}
