//! The device client against the real `ferry-server`: mutual TLS with
//! embedded-tls and 2 KiB record buffers (the server sends records of at most
//! 1 KiB, `--max-fragment-size 1024`), 1 KiB chunks, window 4; round trip,
//! rates, and resume across a simulated device reset in both directions.
mod common;

use std::time::Instant;

use common::{
    data, dial, provision, FileHeld, FileSink, Monotonic, PowerLoss, Server, Source, StoreError,
    WallClock,
};
use ferry_core::blocking::ChunkSink;
use ferry_core::{Digest, FileDigest};
use ferry_firmware_client::{
    device_config, Error, FirmwareClient, NoResume, ServerPin, SmallBuffers,
};
use rand_core::OsRng;

const CHUNK: u64 = 1024;
const MIB: usize = 1024 * 1024;

type Client<'a> = FirmwareClient<'a, OsRng, Monotonic, WallClock>;

fn client<'a>(buffers: &'a mut SmallBuffers, device: &'a common::Provisioned) -> Client<'a> {
    FirmwareClient::new(
        buffers.buffers(),
        device.identity(),
        device_config(),
        OsRng,
        Monotonic(Instant::now()),
    )
}

fn start(root: &std::path::Path) -> Server {
    Server::start(root, &["--max-fragment-size", "1024"])
}

/// A sink that keeps the file in memory.
#[derive(Default)]
struct Memory {
    data: Vec<u8>,
    committed: Option<Digest>,
}

impl ChunkSink for Memory {
    type Error = PowerLoss;
    fn write_chunk(
        &mut self,
        _index: u64,
        offset: u64,
        data: &[u8],
        _digest: &Digest,
    ) -> Result<(), PowerLoss> {
        let end = offset as usize + data.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
    fn commit(&mut self, size: u64, digest: &Digest) -> Result<(), PowerLoss> {
        self.data.truncate(size as usize);
        self.committed = Some(*digest);
        Ok(())
    }
}

fn rate(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e6
}

#[test]
fn roundtrip_with_small_records_and_rates() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path());
    let device = provision(&server.certs, "device-1");
    let mut buffers = SmallBuffers::new();
    let mut client = client(&mut buffers, &device);

    // Round trip on one connection: upload, download back, compare with the source.
    let file = data(MIB, 1);
    let done = client
        .roundtrip(
            dial(server.addr),
            "roundtrip.bin",
            file.len() as u64,
            &mut Source::new(&file),
        )
        .unwrap();
    let chunks = file.len() as u64 / CHUNK;
    assert_eq!(done.uploaded.digest, FileDigest::of(&file, CHUNK as u32));
    assert_eq!(done.downloaded.digest, done.uploaded.digest);
    assert_eq!(
        (done.uploaded.chunks_sent, done.uploaded.held_chunks),
        (chunks, 0)
    );
    assert_eq!(done.downloaded.chunks_stored, chunks);
    // The server committed exactly these bytes for this device's identity.
    let stored = std::fs::read(server.committed_path(&device.cert_der, "roundtrip.bin")).unwrap();
    assert_eq!(stored, file);

    // Rates: a larger file, upload and download timed apart, on one connection.
    let big = data(4 * MIB, 2);
    let (up, down, got) = client
        .connect(dial(server.addr), |session| {
            assert_eq!(session.negotiated(), (1024, 4));
            let t = Instant::now();
            session.upload("rate.bin", big.len() as u64, &mut Source::new(&big))?;
            let up = t.elapsed().as_secs_f64();
            let mut sink = Memory::default();
            let t = Instant::now();
            session.download("rate.bin", &mut sink, &mut NoResume::new())?;
            let down = t.elapsed().as_secs_f64();
            Ok::<_, Error<PowerLoss>>((up, down, sink))
        })
        .unwrap();
    assert_eq!(got.data, big);
    assert_eq!(got.committed, Some(FileDigest::of(&big, 1024)));
    println!(
        "firmware client, 2 KiB TLS record buffers, server records <= 1 KiB, 1 KiB chunks, window 4: \
         upload {:.1} MB/s, download {:.1} MB/s ({} MiB each)",
        rate(big.len(), up),
        rate(big.len(), down),
        big.len() / MIB
    );
}

#[test]
fn upload_resumes_after_a_device_reset_without_resending_held_chunks() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path());
    let device = provision(&server.certs, "device-2");
    let file = data(MIB, 3);
    let chunks = file.len() as u64 / CHUNK;

    // First boot: power is lost after 400 chunks were read for sending.
    {
        let mut buffers = SmallBuffers::new();
        let mut client = client(&mut buffers, &device);
        let mut source = Source::failing_after(&file, 400);
        let result = client.upload(
            dial(server.addr),
            "reset.bin",
            file.len() as u64,
            &mut source,
        );
        assert!(
            matches!(result, Err(Error::Storage(PowerLoss))),
            "{result:?}"
        );
        // Everything of the client is dropped here: buffers, TLS and core state,
        // the socket. Nothing about the upload is kept on the device.
    }

    // Second boot: a fresh client uploads the same file again.
    let mut buffers = SmallBuffers::new();
    let mut client = client(&mut buffers, &device);
    let mut source = Source::new(&file);
    let uploaded = retry_busy(|| {
        client.upload(
            dial(server.addr),
            "reset.bin",
            file.len() as u64,
            &mut source,
        )
    });
    let held = uploaded.held_chunks;
    println!("upload reset: {held} of {chunks} chunks held by the server after the reset");
    assert!(held > 0 && held <= 400, "held {held}");
    assert_eq!(source.started.unwrap().1, held);
    // Only the chunks the server lacked were sent.
    assert_eq!(uploaded.chunks_sent, chunks - held);
    assert_eq!(uploaded.chunks_resent, 0);
    assert_eq!(uploaded.digest, FileDigest::of(&file, 1024));
    let stored = std::fs::read(server.committed_path(&device.cert_der, "reset.bin")).unwrap();
    assert_eq!(stored, file);
}

#[test]
fn download_resumes_after_a_device_reset_from_the_held_store() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path());
    let device = provision(&server.certs, "device-3");
    let file = data(MIB + 300, 4);
    let chunks = (file.len() as u64).div_ceil(CHUNK);
    let partial = root.path().join("partial.bin");
    let held_path = root.path().join("held.rec");
    {
        let mut buffers = SmallBuffers::new();
        let mut client = client(&mut buffers, &device);
        client
            .upload(
                dial(server.addr),
                "dl.bin",
                file.len() as u64,
                &mut Source::new(&file),
            )
            .unwrap();
    }

    // First boot: power is lost after 300 chunks were written to flash.
    {
        let mut buffers = SmallBuffers::new();
        let mut client = client(&mut buffers, &device);
        let mut sink = FileSink::open(&partial, Some(300));
        let mut held = FileHeld::new(&held_path);
        let result = client.download(dial(server.addr), "dl.bin", &mut sink, &mut held);
        assert!(
            matches!(result, Err(Error::Storage(StoreError::PowerLoss))),
            "{result:?}"
        );
        assert_eq!(held.count(), 300);
    }

    // Second boot: a fresh client, the same flash (partial file and held record).
    let mut buffers = SmallBuffers::new();
    let mut client = client(&mut buffers, &device);
    let mut sink = FileSink::open(&partial, None);
    let mut held = FileHeld::new(&held_path);
    let downloaded =
        retry_busy(|| client.download(dial(server.addr), "dl.bin", &mut sink, &mut held));
    println!(
        "download reset: {} of {chunks} chunks held on the device after the reset",
        downloaded.held_chunks
    );
    assert_eq!(downloaded.held_chunks, 300);
    assert_eq!(downloaded.chunks_stored, chunks - 300);
    assert_eq!(sink.writes, chunks - 300);
    assert_eq!(downloaded.digest, FileDigest::of(&file, 1024));
    assert_eq!(sink.committed, Some((file.len() as u64, downloaded.digest)));
    assert_eq!(std::fs::read(&partial).unwrap(), file);
    // Committed: the held record is gone.
    assert!(!held_path.exists());
}

#[test]
fn a_wrong_pin_refuses_the_real_server() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path());
    let mut device = provision(&server.certs, "device-4");
    device.pin = ServerPin([0x5a; 32]);
    let mut buffers = SmallBuffers::new();
    let mut client = client(&mut buffers, &device);
    let file = data(10, 5);
    let result = client.upload(dial(server.addr), "x.bin", 10, &mut Source::new(&file));
    assert!(matches!(result, Err(Error::ServerPin)), "{result:?}");
}

/// Right after a device drops its connection, the server may still be closing
/// the old session; a real device would retry after a moment too.
fn retry_busy<T, E: std::fmt::Debug>(mut attempt: impl FnMut() -> Result<T, Error<E>>) -> T {
    let mut tries = 0;
    loop {
        match attempt() {
            Ok(done) => return done,
            Err(error) if tries < 20 => {
                eprintln!("retrying after {error:?}");
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(error) => panic!("{error:?}"),
        }
    }
}

#[test]
fn a_download_starts_over_when_the_file_changed_during_the_reset() {
    let root = tempfile::tempdir().unwrap();
    let server = start(root.path());
    let device = provision(&server.certs, "device-5");
    let old = data(200 * 1024, 6);
    let new = data(200 * 1024, 7);
    let partial = root.path().join("partial.bin");
    let held_path = root.path().join("held.rec");
    let mut buffers = SmallBuffers::new();
    let mut client = client(&mut buffers, &device);
    client
        .upload(
            dial(server.addr),
            "cfg.bin",
            old.len() as u64,
            &mut Source::new(&old),
        )
        .unwrap();
    let mut sink = FileSink::open(&partial, Some(50));
    let result = client.download(
        dial(server.addr),
        "cfg.bin",
        &mut sink,
        &mut FileHeld::new(&held_path),
    );
    assert!(
        matches!(result, Err(Error::Storage(StoreError::PowerLoss))),
        "{result:?}"
    );
    assert_eq!(FileHeld::new(&held_path).count(), 50);

    // Meanwhile the file is replaced by another of the same size: the server
    // first offers its committed copy's chunks, the device's differ, and the
    // upload starts over.
    let uploaded = client
        .upload(
            dial(server.addr),
            "cfg.bin",
            new.len() as u64,
            &mut Source::new(&new),
        )
        .unwrap();
    assert_eq!(uploaded.held_chunks, 0);
    assert_eq!(uploaded.chunks_sent, 200);
    assert_eq!(uploaded.digest, FileDigest::of(&new, 1024));

    let mut sink = FileSink::open(&partial, None);
    let mut held = FileHeld::new(&held_path);
    let downloaded = client
        .download(dial(server.addr), "cfg.bin", &mut sink, &mut held)
        .unwrap();
    assert_eq!(downloaded.held_chunks, 0);
    assert_eq!(downloaded.digest, FileDigest::of(&new, 1024));
    assert_eq!(std::fs::read(&partial).unwrap(), new);
    assert!(!held_path.exists());
}
