//! Transfers between two simulated endpoints, with and without faults.
mod common;

use common::*;
use ferry_core::digest::FileDigest;
use ferry_core::Framing;

#[test]
fn clean_upload_download_list_delete() {
    let mut sim = Sim::new(config(Framing::LengthPrefixed, 64, 4), Faults::none(), 1);
    for size in [0usize, 1, 63, 64, 65, 1000] {
        let data = sim.rng.bytes(size);
        let name = format!("f{size}");
        let outcome = sim.run(
            &Op::Upload {
                name: name.clone(),
                data: data.clone(),
            },
            1,
        );
        assert_eq!(
            outcome,
            Outcome::Uploaded(FileDigest::of(&data, 64)),
            "size {size}"
        );
        assert_eq!(sim.store.files[&name].data, data);
        let outcome = sim.run(&Op::Download { name: name.clone() }, 1);
        assert_eq!(
            outcome,
            Outcome::Downloaded(data.clone(), FileDigest::of(&data, 64))
        );
    }
    let Outcome::Listed(list) = sim.run(&Op::List, 1) else {
        panic!()
    };
    assert_eq!(list.len(), 6);
    assert_eq!(
        sim.run(&Op::Delete { name: "f1".into() }, 1),
        Outcome::Deleted
    );
    assert!(!sim.store.files.contains_key("f1"));
}
