//! Property tests: thousands of seeded runs over a faulty link. The outcome is
//! always a byte-identical verified file or a clean failure; never a wrong file
//! marked verified, never a panic, never an unbounded wait, retries bounded.
mod common;

use common::*;
use ferry_core::digest::FileDigest;
use ferry_core::Framing;
use proptest::prelude::*;

const CHUNK: u32 = 64;
const ATTEMPTS: u32 = 12;

fn size_strategy() -> impl Strategy<Value = usize> {
    let chunk = CHUNK as usize;
    prop_oneof![
        Just(0),
        Just(1),
        Just(chunk - 1),
        Just(chunk),
        Just(chunk + 1),
        (2usize..40).prop_map(move |n| n * chunk),
        1usize..(40 * chunk),
    ]
}

fn faults_strategy() -> impl Strategy<Value = Faults> {
    (
        0u32..120,
        0u32..120,
        0u32..100,
        0u32..100,
        0u32..60,
        0u32..60,
        0u32..3,
    )
        .prop_map(
            |(drop, corrupt, duplicate, reorder, truncate, stall, disconnect)| Faults {
                drop,
                corrupt,
                duplicate,
                reorder,
                truncate,
                stall,
                disconnect,
            },
        )
}

fn check_round_trip(framing: Framing, seed: u64, size: usize, faults: Faults) -> FaultCounts {
    let mut sim = Sim::new(config(framing, CHUNK, 4), faults, seed);
    let data = sim.rng.bytes(size);
    let expected = FileDigest::of(&data, CHUNK);
    let chunks = (size as u64).div_ceil(u64::from(CHUNK));
    let upload = sim.run(
        &Op::Upload {
            name: "file".into(),
            data: data.clone(),
        },
        ATTEMPTS,
    );
    // Whatever the server committed is exactly the data, verified or not.
    if let Some(file) = sim.store.files.get("file") {
        assert_eq!(file.data, data, "a committed file differs from the source");
    }
    let max_resends = (chunks + 1) * u64::from(sim.config.max_retries + 1) * u64::from(ATTEMPTS);
    assert!(
        sim.client_resent <= max_resends,
        "retries unbounded: {}",
        sim.client_resent
    );
    match upload {
        Outcome::Uploaded(digest) => {
            assert_eq!(digest, expected);
            assert_eq!(sim.store.files["file"].data, data);
        }
        Outcome::Failed(..) => return sim.counts, // a clean failure reported to the client
        other => panic!("unexpected outcome {other:?}"),
    }
    match sim.run(
        &Op::Download {
            name: "file".into(),
        },
        ATTEMPTS,
    ) {
        Outcome::Downloaded(bytes, digest) => {
            assert_eq!(digest, expected);
            assert_eq!(bytes, data, "a download verified with wrong bytes");
        }
        Outcome::Failed(..) => {}
        other => panic!("unexpected outcome {other:?}"),
    }
    sim.counts
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn lossy_link_round_trips(seed in any::<u64>(), size in size_strategy(), faults in faults_strategy()) {
        check_round_trip(Framing::Cobs, seed, size, faults);
    }

    /// A reliable stream (TLS) that stalls and breaks: every transfer completes.
    #[test]
    fn stalling_stream_round_trips(seed in any::<u64>(), size in size_strategy(), stall in 0u32..200, disconnect in 0u32..3) {
        let faults = Faults { stall, disconnect, ..Faults::none() };
        let mut sim = Sim::new(config(Framing::LengthPrefixed, CHUNK, 4), faults, seed);
        let data = sim.rng.bytes(size);
        let outcome = sim.run(&Op::Upload { name: "f".into(), data: data.clone() }, 50);
        prop_assert_eq!(outcome, Outcome::Uploaded(FileDigest::of(&data, CHUNK)));
        prop_assert_eq!(&sim.store.files["f"].data, &data);
    }
}

/// A fixed sweep, to report what the simulator exercised (`--nocapture` prints it).
#[test]
fn fault_sweep_outcomes() {
    let mut verified = 0;
    let mut failed = 0;
    let mut totals = FaultCounts::default();
    for seed in 0..300u64 {
        let faults = Faults {
            drop: 50,
            corrupt: 50,
            duplicate: 30,
            reorder: 30,
            truncate: 20,
            stall: 20,
            disconnect: 1,
        };
        let mut sim = Sim::new(config(Framing::Cobs, CHUNK, 4), faults, seed);
        let data = sim.rng.bytes((seed as usize * 37) % 2000);
        match sim.run(
            &Op::Upload {
                name: "f".into(),
                data: data.clone(),
            },
            ATTEMPTS,
        ) {
            Outcome::Uploaded(_) => {
                assert_eq!(sim.store.files["f"].data, data);
                verified += 1
            }
            Outcome::Failed(..) => failed += 1,
            other => panic!("{other:?}"),
        }
        let c = sim.counts;
        totals.segments += c.segments;
        totals.dropped += c.dropped;
        totals.corrupted += c.corrupted;
        totals.duplicated += c.duplicated;
        totals.reordered += c.reordered;
        totals.truncated += c.truncated;
        totals.stalled += c.stalled;
        totals.disconnects += c.disconnects;
    }
    println!("300 runs: {verified} verified, {failed} failed cleanly; faults {totals:?}");
    assert!(verified > 250, "only {verified} of 300 verified at 5% loss");
}
