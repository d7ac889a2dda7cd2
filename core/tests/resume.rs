//! Resume: a receiver that holds chunks reports them and the sender sends only the rest.
mod common;

use common::*;
use ferry_core::connection::Failure;
use ferry_core::digest::FileDigest;
use ferry_core::wire::ErrorCode;
use ferry_core::Framing;

const CHUNK: u32 = 64;

fn sim(seed: u64) -> Sim {
    Sim::new(
        config(Framing::LengthPrefixed, CHUNK, 4),
        Faults::none(),
        seed,
    )
}

#[test]
fn interrupted_upload_resends_only_missing_chunks() {
    for break_at in [1u64, 7, 19, 29] {
        let mut sim = sim(break_at);
        let data = sim.rng.bytes(30 * CHUNK as usize - 5);
        sim.break_after_stores = Some(break_at);
        let outcome = sim.run(
            &Op::Upload {
                name: "big".into(),
                data: data.clone(),
            },
            3,
        );
        assert_eq!(outcome, Outcome::Uploaded(FileDigest::of(&data, CHUNK)));
        assert_eq!(sim.store.files["big"].data, data);
        // Attempt 1 stopped after `break_at` stores; attempt 2 started from them.
        assert_eq!(sim.attempts.len(), 2, "{:?}", sim.attempts);
        let (held, sent) = sim.attempts[1];
        assert_eq!(held, break_at, "the server reports every chunk it stored");
        assert_eq!(sent, 30 - held, "only the missing chunks are sent again");
        assert_eq!(sim.client_resent, 0);
    }
}

#[test]
fn changed_source_is_detected_and_restarted_never_mixed() {
    let mut sim = sim(5);
    let old = sim.rng.bytes(20 * CHUNK as usize);
    sim.break_after_stores = Some(10);
    // The first attempt breaks after 10 chunks; give up after it.
    let outcome = sim.run(
        &Op::Upload {
            name: "f".into(),
            data: old.clone(),
        },
        1,
    );
    assert!(matches!(outcome, Outcome::Failed(..)), "{outcome:?}");
    assert!(!sim.store.files.contains_key("f"));
    assert_eq!(sim.store.partials["f"].held.len(), 10);

    let mut new = old.clone();
    new[3] ^= 1; // inside a held chunk
    sim.attempts.clear();
    let outcome = sim.run(
        &Op::Upload {
            name: "f".into(),
            data: new.clone(),
        },
        3,
    );
    assert_eq!(outcome, Outcome::Uploaded(FileDigest::of(&new, CHUNK)));
    assert_eq!(
        sim.store.files["f"].data, new,
        "the committed file is the new source, whole"
    );
    assert_eq!(
        sim.attempts.last().unwrap(),
        &(0, 20),
        "the restart sends every chunk"
    );
}

#[test]
fn identical_file_uploads_without_sending_data() {
    let mut sim = sim(9);
    let data = sim.rng.bytes(10 * CHUNK as usize + 3);
    let op = Op::Upload {
        name: "same".into(),
        data: data.clone(),
    };
    assert!(matches!(sim.run(&op, 1), Outcome::Uploaded(_)));
    sim.attempts.clear();
    assert_eq!(
        sim.run(&op, 1),
        Outcome::Uploaded(FileDigest::of(&data, CHUNK))
    );
    assert_eq!(sim.attempts, vec![(11, 0)], "all 11 chunks held, none sent");
}

#[test]
fn interrupted_download_resumes_from_held_chunks() {
    let mut sim = sim(11);
    let data = sim.rng.bytes(25 * CHUNK as usize);
    let up = Op::Upload {
        name: "d".into(),
        data: data.clone(),
    };
    assert!(matches!(sim.run(&up, 1), Outcome::Uploaded(_)));
    // Break the download after the client stored some chunks: the simulator keeps
    // the client's partial copy between attempts, as the client shell does on disk.
    let mut partial_sim = sim;
    partial_sim.faults.disconnect = 0;
    partial_sim.attempts.clear();
    partial_sim.max_time = 600_000;
    let outcome = partial_sim.run_download_broken_after("d", 12);
    assert_eq!(
        outcome,
        Outcome::Downloaded(data.clone(), FileDigest::of(&data, CHUNK))
    );
    assert_eq!(partial_sim.attempts.len(), 2, "{:?}", partial_sim.attempts);
    assert_eq!(
        partial_sim.attempts[1].0, 12,
        "the server is told which chunks are held"
    );
}

#[test]
fn rotten_stored_data_is_never_downloaded_as_verified() {
    let mut sim = sim(13);
    let data = sim.rng.bytes(8 * CHUNK as usize);
    let up = Op::Upload {
        name: "r".into(),
        data: data.clone(),
    };
    assert!(matches!(sim.run(&up, 1), Outcome::Uploaded(_)));
    sim.store.files.get_mut("r").unwrap().data[100] ^= 0x40;
    match sim.run(&Op::Download { name: "r".into() }, 1) {
        Outcome::Failed(Failure::Peer(code), _) => assert_eq!(code, ErrorCode::STORAGE),
        other => panic!("rotten data must fail the download, got {other:?}"),
    }
}

#[test]
fn missing_file_and_bad_name_are_refused_cleanly() {
    let mut sim = sim(17);
    match sim.run(
        &Op::Download {
            name: "nope".into(),
        },
        1,
    ) {
        Outcome::Failed(Failure::Peer(ErrorCode::NOT_FOUND), text) => {
            assert_eq!(text, "no such file")
        }
        other => panic!("{other:?}"),
    }
    match sim.run(
        &Op::Upload {
            name: "../etc".into(),
            data: vec![1],
        },
        1,
    ) {
        Outcome::Failed(Failure::Peer(ErrorCode::INVALID_NAME), _) => {}
        other => panic!("{other:?}"),
    }
    match sim.run(
        &Op::Delete {
            name: "nope".into(),
        },
        1,
    ) {
        Outcome::Failed(Failure::Peer(ErrorCode::NOT_FOUND), _) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn listing_pages_through_many_files() {
    let mut sim = Sim::new(config(Framing::LengthPrefixed, 16, 4), Faults::none(), 21);
    for i in 0..30 {
        let op = Op::Upload {
            name: format!("file-{i:02}"),
            data: vec![i as u8; i],
        };
        assert!(matches!(sim.run(&op, 1), Outcome::Uploaded(_)));
    }
    // With 16-byte chunks a page holds only a few entries: the client pages through.
    let Outcome::Listed(list) = sim.run(&Op::List, 1) else {
        panic!()
    };
    let names: Vec<_> = list.iter().map(|(n, _)| n.clone()).collect();
    let expected: Vec<_> = (0..30).map(|i| format!("file-{i:02}")).collect();
    assert_eq!(names, expected);
    assert_eq!(list[7].1, 7);
}

#[test]
fn listing_pages_when_the_limit_cuts_it_short() {
    // Large chunks: every entry fits one frame, so only the limit (100) ends a page.
    let mut sim = Sim::new(
        config(Framing::LengthPrefixed, 64 * 1024, 4),
        Faults::none(),
        22,
    );
    for i in 0..150 {
        let op = Op::Upload {
            name: format!("n{i:03}"),
            data: vec![1],
        };
        assert!(matches!(sim.run(&op, 1), Outcome::Uploaded(_)));
    }
    let Outcome::Listed(list) = sim.run(&Op::List, 1) else {
        panic!()
    };
    assert_eq!(list.len(), 150);
}

#[test]
fn stats_add_up_over_a_connection() {
    let mut sim = sim(23);
    for (name, chunks) in [("a", 3usize), ("b", 5)] {
        let data = sim.rng.bytes(chunks * CHUNK as usize);
        let op = Op::Upload {
            name: name.into(),
            data,
        };
        assert!(matches!(sim.run(&op, 1), Outcome::Uploaded(_)));
    }
    assert_eq!(
        sim.client.stats().chunks_sent,
        8,
        "one connection, two uploads"
    );
}
