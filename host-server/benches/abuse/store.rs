//! Attacks on storage: listing a huge directory (3), the quota with tiny chunks and many
//! one-byte files (4), the modes of what is stored (6), a full disk (8).

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ferry_core::wire::MIN_CHUNK_SIZE;
use ferry_tokio::client::Client;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::task::JoinSet;

use super::raw::Raw;
use super::report::{mib, Check, Figures, Row};
use super::server::ServerSpec;
use super::{disk_usage, Config, Honesty, Setup};

pub const LISTING: &str = "3 listing";
pub const QUOTA: &str = "4 quota";
pub const MODES: &str = "6 storage-modes";
pub const FULL_DISK: &str = "8 full-disk";

const MALLORY: &str = "mallory";
const TRUDY: &str = "trudy";
/// Connections listing at once.
const LISTERS: usize = 16;
/// The quota of the quota attack.
const SMALL_QUOTA: u64 = 4 << 20;

/// Makes `count` one-byte files for `client` directly in the storage layout.
fn populate(storage: &Path, client: &str, count: usize) -> io::Result<()> {
    let base = storage.join(client);
    for dir in ["files", "meta", "partial"] {
        std::fs::create_dir_all(base.join(dir))?;
    }
    for dir in [storage.to_path_buf(), base.clone()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    for i in 0..count {
        std::fs::write(base.join("files").join(format!("f-{i:06}")), b"x")?;
    }
    Ok(())
}

/// Mounts a tmpfs of `size` (`64m`) at `dir`, or says why not (not root, no mount).
fn mount_tmpfs(dir: &Path, size: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let out = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "ferry-abuse",
        ])
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn unmount(dir: &Path) {
    let _ = Command::new("umount").arg(dir).status();
}

/// 3: 60,000 one-byte files; 16 connections list them all with limit=65535, over and over.
/// The files are on a tmpfs where one can be mounted (making 60,000 files on a busy disk
/// takes minutes).
pub async fn listing(cfg: &Config) -> Row {
    let files = cfg.pick(60_000, 5_000);
    let setup = Setup::new(LISTING, &[MALLORY]);
    let fast = setup.root().join("fast");
    let on_tmpfs = mount_tmpfs(&fast, "1g");
    let storage = match &on_tmpfs {
        Ok(()) => fast.join("storage"),
        Err(_) => setup.root().join("storage"),
    };
    populate(&storage, MALLORY, files).expect("the attacker's files");
    let spec = ServerSpec {
        storage: Some(storage),
        ..ServerSpec::default()
    };
    let mut scenario = setup.start(cfg, spec, Honesty::Protocol);
    let (addr, tls) = (scenario.addr(), scenario.tls(MALLORY));
    // Files made by hand have no metadata yet: one listing first, where the server records
    // it (and logs each file), so that the attack meets files as uploads leave them.
    let started = Instant::now();
    let warmed = Client::new(scenario.options(MALLORY))
        .list()
        .await
        .map(|l| l.len());
    let warm_up = format!(
        "first listing (metadata recorded): {warmed:?} in {:.1} s, not counted",
        started.elapsed().as_secs_f64()
    );
    let log_baseline = scenario.server.log_lines();
    let deadline = tokio::time::Instant::now() + scenario.cfg.secs;
    let (lists, pages) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut attackers = JoinSet::new();
    for _ in 0..LISTERS {
        let (tls, lists, pages) = (tls.clone(), lists.clone(), pages.clone());
        attackers.spawn(async move {
            loop {
                let Ok((mut raw, _)) = Raw::open(addr, tls.clone(), 64 * 1024).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                while raw.list_all(u16::MAX, &pages).await.is_ok() {
                    lists.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    tokio::time::sleep_until(deadline).await;
    attackers.abort_all();
    // What a plain `ferry list` of the attacker's own files costs once the flood is over.
    let started = Instant::now();
    let mut client = Client::new(scenario.options(MALLORY));
    let listed = client.list().await;
    let plain = started.elapsed();
    client.close().await;
    let checks = vec![Check::new(
        "a plain list of every file completes",
        listed.as_ref().is_ok_and(|l| l.len() == files),
        match &listed {
            Ok(list) => format!(
                "{} entries in {:.2} s (pages of 1000)",
                list.len(),
                plain.as_secs_f64()
            ),
            Err(e) => e.to_string(),
        },
    )];
    scenario.stop_honest();
    scenario.server.kill();
    unmount(&fast);
    let place = match on_tmpfs {
        Ok(()) => "on a tmpfs".to_string(),
        Err(why) => format!("on disk (no tmpfs: {why})"),
    };
    scenario.finish(Figures {
        attack_ops: pages.load(Ordering::Relaxed),
        unit: "page",
        active_secs: Some(cfg.secs.as_secs_f64()),
        checks,
        notes: vec![format!(
            "{files} one-byte files of `{MALLORY}` {place}; {LISTERS} connections listing all with limit=65535: \
             {} pages, {} full listings",
            pages.load(Ordering::Relaxed),
            lists.load(Ordering::Relaxed)
        ), warm_up],
        log_baseline,
        ..Figures::default()
    })
}

/// The first `cut` bytes of `data`, then an error: an upload abandoned part way.
struct CutReader {
    data: Vec<u8>,
    pos: usize,
    cut: usize,
}

impl AsyncRead for CutReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos >= self.cut {
            return Poll::Ready(Err(io::Error::other("abandoned")));
        }
        let end = self.cut.min(self.pos + buf.remaining());
        buf.put_slice(&self.data[self.pos..end]);
        self.pos = end;
        Poll::Ready(Ok(()))
    }
}

/// A 16-byte chunk offer is refused at the hello (reported); the uploads then use these.
const SERVER_MIN_CHUNK: u32 = 1024;
/// `--max-files` of the quota attack: one-byte files cost a block and a record each on
/// disk, which the byte quota does not see; the file limit bounds them.
const MAX_FILES: u64 = 128;

/// 4: under a 4 MiB quota and 128 files, 2 MiB uploads in the smallest chunks the server
/// takes abandoned half-way (`mallory`), and one-byte files until refused (`trudy`).
pub async fn quota(cfg: &Config) -> Row {
    let setup = Setup::new(QUOTA, &[MALLORY, TRUDY]);
    let spec = ServerSpec {
        args: vec![
            "--quota".into(),
            SMALL_QUOTA.to_string(),
            "--max-files".into(),
            MAX_FILES.to_string(),
        ],
        ..ServerSpec::default()
    };
    let scenario = setup.start(cfg, spec, Honesty::Protocol);
    let deadline = scenario.deadline();
    let secs = scenario.cfg.secs;
    // The chunk size the server grants a client that asks for the protocol's smallest.
    let chunk = match Raw::open(scenario.addr(), scenario.tls(MALLORY), MIN_CHUNK_SIZE).await {
        Ok((_, chunk)) => chunk.to_string(),
        Err(e) => format!("unknown ({e})"),
    };
    // The smallest chunks the server takes (`--min-chunk-size`, 1 KiB by default).
    let mut tiny = scenario.options(MALLORY);
    tiny.chunk_size = SERVER_MIN_CHUNK;
    tiny.retries = 0;
    let abandoned = tokio::spawn(async move {
        // Half the quota each: the second abandoned one must already be refused.
        let data = ferry_testkit::data::pseudo_random(SMALL_QUOTA as usize / 2, 9);
        let mut outcomes = Vec::new();
        for k in 0.. {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            let reader = CutReader {
                data: data.clone(),
                pos: 0,
                cut: data.len() / 2,
            };
            let mut client = Client::new(tiny.clone());
            let name = format!("q-{k}");
            // Half the bytes, or a share of the attack's time, whichever comes first.
            let mut progress = |_| {};
            let upload = client.upload_stream(&name, SMALL_QUOTA / 2, reader, &mut progress);
            let outcome = match tokio::time::timeout(secs / 3, upload).await {
                Ok(Ok(_)) => "completed".to_string(),
                Ok(Err(e)) if e.refusal_code().is_some() => format!("refused: {e}"),
                Ok(Err(_)) => "abandoned at half".to_string(),
                Err(_) => "abandoned on time".to_string(),
            };
            let refused = outcome.starts_with("refused");
            outcomes.push(outcome);
            if refused {
                break;
            }
        }
        outcomes
    });
    let mut files = scenario.options(TRUDY);
    files.retries = 0;
    let one_byte = tokio::spawn(async move {
        let mut client = Client::new(files);
        let mut stored = 0u64;
        let mut refusal = None;
        while tokio::time::Instant::now() < deadline {
            match client
                .upload_stream(&format!("t-{stored}"), 1, &b"x"[..], &mut |_| {})
                .await
            {
                Ok(_) => stored += 1,
                Err(e) => {
                    refusal = Some(e.to_string());
                    break;
                }
            }
        }
        client.close().await;
        (stored, refusal)
    });
    let outcomes = abandoned.await.expect("the tiny-chunk uploader");
    let (stored, refusal) = one_byte.await.expect("the one-byte uploader");
    scenario.wait_out().await;
    let mallory = disk_usage(&scenario.identity_dir(MALLORY));
    let trudy = disk_usage(&scenario.identity_dir(TRUDY));
    let notes = vec![
        format!(
            "`{MALLORY}` (chunk size {chunk} B negotiated): {} uploads: {}; on disk {}",
            outcomes.len(),
            summarize(&outcomes),
            mib(mallory)
        ),
        format!(
            "`{TRUDY}`: {stored} one-byte files stored, {}; on disk {}",
            refusal.map_or("never refused".to_string(), |r| format!(
                "then refused: {r}"
            )),
            mib(trudy)
        ),
    ];
    scenario.finish(Figures {
        attack_ops: outcomes.len() as u64 + stored,
        unit: "upload",
        attacker_bytes: Some(mallory.max(trudy)),
        quota: Some(SMALL_QUOTA),
        notes,
        ..Figures::default()
    })
}

/// "3 × abandoned at half, 1 × refused: ..." in order of first appearance.
fn summarize(outcomes: &[String]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for outcome in outcomes {
        match counts.iter_mut().find(|(o, _)| o == outcome) {
            Some((_, n)) => *n += 1,
            None => counts.push((outcome.clone(), 1)),
        }
    }
    counts
        .iter()
        .map(|(o, n)| format!("{n} × {o}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The modes of everything under `root`: mode (octal) → count, for directories and files.
fn modes_under(root: &Path) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let (mut dirs, mut files) = (BTreeMap::new(), BTreeMap::new());
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = format!("{:04o}", meta.permissions().mode() & 0o7777);
        if meta.is_dir() {
            *dirs.entry(mode).or_insert(0) += 1;
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else {
            *files.entry(mode).or_insert(0) += 1;
        }
    }
    (dirs, files)
}

/// 6: no attack; honest clients work under umask 022, then the modes under storage.
pub async fn modes(cfg: &Config) -> Row {
    let setup = Setup::new(MODES, &[]);
    let mut scenario = setup.start(cfg, ServerSpec::default(), Honesty::Protocol);
    scenario.wait_out().await;
    let storage = scenario.server.storage.clone();
    // Read once the honest clients have stopped, so that every upload is committed.
    let row_figures = |dirs: &BTreeMap<String, usize>, files: &BTreeMap<String, usize>| Figures {
        unit: super::report::NO_ATTACK,
        checks: vec![
            Check::new(
                "storage directories 0700",
                !dirs.is_empty() && dirs.keys().all(|m| m == "0700"),
                format!("{dirs:?}"),
            ),
            Check::new(
                "stored files 0600",
                !files.is_empty() && files.keys().all(|m| m == "0600"),
                format!("{files:?}"),
            ),
        ],
        notes: vec![
            "umask 022; modes counted over storage/ after the honest clients stopped".into(),
        ],
        ..Figures::default()
    };
    scenario.stop_honest();
    let (dirs, files) = modes_under(&storage);
    scenario.finish(row_figures(&dirs, &files))
}

/// 8: storage on a 64 MiB tmpfs; `mallory` uploads 100 MiB, then `honest-0` uploads 5 MB.
pub async fn full_disk(cfg: &Config) -> Row {
    let setup = Setup::new(FULL_DISK, &[MALLORY]);
    let disk = setup.root().join("disk");
    let skip = mount_tmpfs(&disk, "64m").err();
    let spec = ServerSpec {
        storage: skip.is_none().then(|| disk.join("storage")),
        ..ServerSpec::default()
    };
    let mut scenario = setup.start(cfg, spec, Honesty::Protocol);
    let mut figures = Figures {
        unit: "upload",
        ..Figures::default()
    };
    if let Some(why) = skip {
        figures
            .notes
            .push(format!("skipped: cannot mount a 64 MiB tmpfs: {why}"));
        scenario.wait_out().await;
        return scenario.finish(figures);
    }
    let big = ferry_testkit::data::pseudo_random(100 << 20, 8);
    let mut attacker = scenario.options(MALLORY);
    attacker.retries = 0;
    let mut client = Client::new(attacker);
    let failed = client
        .upload_stream("big.bin", big.len() as u64, &big[..], &mut |_| {})
        .await;
    client.close().await;
    drop(big);
    let held = disk_usage(&scenario.identity_dir(MALLORY));
    let five = ferry_testkit::data::pseudo_random(5_000_000, 5);
    let mut client = Client::new(scenario.options(super::HONEST[0]));
    let after = client
        .upload_stream("five.bin", five.len() as u64, &five[..], &mut |_| {})
        .await;
    client.close().await;
    figures.attack_ops = 1;
    figures.attacker_bytes = Some(held);
    figures.notes.push(format!(
        "the 100 MiB upload: {}; `{MALLORY}` then held {}",
        match &failed {
            Ok(_) => "stored (the disk was not full?)".to_string(),
            Err(e) => format!("failed: {e}"),
        },
        mib(held)
    ));
    figures.checks.push(Check::new(
        "the failed upload's space is freed",
        held < 1 << 20,
        mib(held),
    ));
    figures.checks.push(Check::new(
        "another client's 5 MB upload then succeeds",
        after.is_ok(),
        match &after {
            Ok(_) => "stored".to_string(),
            Err(e) => e.to_string(),
        },
    ));
    scenario.wait_out().await;
    // Unmounted before the scenario's directory is removed.
    scenario.stop_honest();
    // Honest uploads that met the disk while it was full were told so, which is all a
    // server can do about a full disk: reported, not counted as lock-outs.
    if let Some(tally) = scenario.tally.as_mut() {
        tally.attempted -= tally.disk_full;
        figures.notes.push(format!(
            "{} honest uploads told \"{}\" while the disk was full (not counted as attempts)",
            tally.disk_full,
            super::honest::DISK_FULL
        ));
    }
    scenario.server.kill();
    unmount(&disk);
    scenario.finish(figures)
}
