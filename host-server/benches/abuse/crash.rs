//! The crash loop: SIGKILL the server during uploads, restart it on the same port, let the
//! client resume; then every file reported verified must be byte-identical on disk, and no
//! partial file visible among the committed ones.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_tokio::client::Client;

use super::honest::Tally;
use super::report::{Check, Figures, Row};
use super::server::ServerSpec;
use super::{Config, Honesty, Setup};

pub const CRASH_LOOP: &str = "crash-loop";

const CRASHER: &str = "crasher";

/// The size and seed of upload `k` (deterministic, so the content can be made again).
fn upload_shape(k: u64, smoke: bool) -> (u64, u64) {
    let (base, span) = if smoke {
        (1 << 20, 2 << 20)
    } else {
        (4 << 20, 8 << 20)
    };
    (base + (k * 7_919 * 4_099) % span, 1_000 + k)
}

/// `name` is `c-K`: K.
fn index_of(name: &str) -> Option<u64> {
    name.strip_prefix("c-")?.parse().ok()
}

/// Whether the file at `path` holds exactly upload `k`.
fn holds(path: &Path, k: u64, smoke: bool) -> bool {
    let (size, seed) = upload_shape(k, smoke);
    std::fs::read(path)
        .is_ok_and(|bytes| bytes == ferry_testkit::data::pseudo_random(size as usize, seed))
}

pub async fn crash_loop(cfg: &Config) -> Row {
    let kills = cfg.pick(20, 3);
    let setup = Setup::new(CRASH_LOOP, &[CRASHER]);
    let sources = setup.root().join("sources");
    std::fs::create_dir_all(&sources).expect("the upload sources");
    let mut scenario = setup.start(cfg, ServerSpec::default(), Honesty::None);
    let mut options = scenario.options(CRASHER);
    options.retries = 30;
    let stop = Arc::new(AtomicBool::new(false));
    let smoke = cfg.smoke;
    let uploader = {
        let (stop, sources) = (stop.clone(), sources.clone());
        tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut verified = Vec::new();
            let mut client = Client::new(options);
            for k in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (size, seed) = upload_shape(k, smoke);
                let path = sources.join(format!("c-{k}"));
                ferry_testkit::data::write_pseudo_random(&path, size, seed)
                    .expect("an upload source");
                let started = Instant::now();
                let result = client
                    .upload_file(&path, &format!("c-{k}"), &mut |_| {})
                    .await;
                if result.is_ok() {
                    verified.push(k);
                }
                tally.record(
                    "upload",
                    started.elapsed(),
                    result.map(drop).map_err(|e| e.to_string()),
                );
                let _ = std::fs::remove_file(&path);
            }
            (tally, verified)
        })
    };
    let started = Instant::now();
    let mut done = 0;
    for i in 0..kills {
        // Uploads run between kills; the pause varies so kills land at different points.
        tokio::time::sleep(Duration::from_millis(300 + (i as u64 * 137) % 500)).await;
        tokio::task::block_in_place(|| scenario.server.restart());
        done += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let (tally, verified) = tokio::time::timeout(Duration::from_secs(120), uploader)
        .await
        .expect("the uploader ends after the kills")
        .expect("the uploader");
    let elapsed = started.elapsed();
    scenario.server.stop();
    let files = scenario.identity_dir(CRASHER).join("files");
    let mismatches = verified
        .iter()
        .filter(|&&k| !holds(&files.join(format!("c-{k}")), k, smoke))
        .count();
    let mut partial_visible = Vec::new();
    let mut committed = 0;
    for entry in std::fs::read_dir(&files).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        committed += 1;
        if !index_of(&name).is_some_and(|k| holds(&entry.path(), k, smoke)) {
            partial_visible.push(name);
        }
    }
    let checks = vec![
        Check::new(
            "every upload reported verified is byte-identical",
            !verified.is_empty() && mismatches == 0,
            format!("{} verified, {mismatches} differ", verified.len()),
        ),
        Check::new(
            "nothing partial visible",
            partial_visible.is_empty(),
            format!(
                "{committed} committed files, not whole: {:?}",
                &partial_visible[..partial_visible.len().min(5)]
            ),
        ),
        Check::new(
            "kills done",
            done == kills,
            format!("{done} SIGKILLs and restarts"),
        ),
    ];
    scenario.finish_with(
        elapsed,
        tally,
        Figures {
            attack_ops: done as u64,
            unit: "kill",
            checks,
            notes: vec![format!(
                "uploads of {} MiB files by `{CRASHER}` (the honest operations here), resumed after each SIGKILL",
                if smoke { "1-3" } else { "4-12" }
            )],
            ..Figures::default()
        },
    )
}
