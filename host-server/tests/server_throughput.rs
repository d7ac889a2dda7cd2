//! Throughput over loopback (ignored by default; run it in release mode):
//! `cargo test --release -p ferry-server --test server_throughput -- --ignored --nocapture`

mod server_support;

use std::time::Instant;

use ferry_testkit::data::pseudo_random;
use ferry_testkit::server::InProcess;
use server_support::Clients;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run in release mode"]
async fn upload_and_download_throughput() {
    let root = tempfile::tempdir().unwrap();
    let server = InProcess::start(root.path(), |_| {}).await;
    let size = 256 << 20;
    let data = pseudo_random(size, 1);
    let mut client = server.local().await;
    for round in 0..2 {
        let name = format!("big-{round}");
        let started = Instant::now();
        client.upload(&name, &data, false).await.unwrap();
        let up = started.elapsed();
        let started = Instant::now();
        let (back, _) = client.download(&name).await.unwrap();
        let down = started.elapsed();
        assert_eq!(back.len(), size);
        let mb = size as f64 / 1e6;
        println!(
            "round {round}: upload {:.0} MB/s ({up:.2?}), download {:.0} MB/s ({down:.2?})",
            mb / up.as_secs_f64(),
            mb / down.as_secs_f64()
        );
    }
    // An identical file again: no data moves, the server hashes its copy.
    let started = Instant::now();
    let again = client.upload("big-0", &data, false).await.unwrap();
    assert_eq!(again.sent, 0);
    println!("identical re-upload of 256 MiB: {:.2?}", started.elapsed());
}
