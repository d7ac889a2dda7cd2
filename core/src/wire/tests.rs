//! Unit tests of the wire encoding: bounds, round trips, refusals.

use super::*;

#[test]
fn the_smallest_list_entry_takes_list_entry_min_len() {
    let entry = ListEntry {
        name: "a",
        size: 0,
        modified: 0,
        chunk_size: 0,
        digest: Digest::default(),
    };
    let mut buf = [0u8; 64];
    let used = postcard::to_slice(&entry, &mut buf).unwrap().len();
    assert_eq!(used, LIST_ENTRY_MIN_LEN);
    assert_eq!(list_page_capacity(1024), (CONTROL_FRAME_MAX - 16) / 38);
    assert_eq!(
        list_page_capacity(64 * 1024),
        (64 * 1024 + PUT_FRAME_OVERHEAD + MAX_NAME_LEN - 16) / 38
    );
}

#[test]
fn a_long_name_request_gives_its_seq_back() {
    let long = [b'n'; MAX_NAME_LEN + 1];
    let long = core::str::from_utf8(&long).unwrap();
    let mut buf = [0u8; 2048];
    let len = Frame::Delete { seq: 7, name: long }
        .encode(&mut buf)
        .unwrap();
    assert_eq!(Frame::decode(&buf[..len]), Err(DecodeError::NameTooLong));
    assert_eq!(Frame::long_name_request_seq(&buf[..len]), Some(7));
    let len = Frame::Delete { seq: 7, name: "ok" }
        .encode(&mut buf)
        .unwrap();
    assert_eq!(Frame::long_name_request_seq(&buf[..len]), None);
}

/// The digests of protocol version 1 were `[u8; 32]` encoded with `serde_bytes`;
/// the `Digest` type must put the very same bytes on the wire.
#[test]
fn digests_encode_as_the_byte_arrays_of_version_1() {
    #[derive(Serialize)]
    enum Version1<'a> {
        Chunk {
            transfer: u32,
            index: u64,
            #[serde(with = "serde_bytes")]
            digest: [u8; 32],
            #[serde(with = "serde_bytes")]
            data: &'a [u8],
        },
    }
    let bytes: [u8; 32] = core::array::from_fn(|i| i as u8 * 7);
    let frame = Frame::Chunk {
        transfer: 5,
        index: 300,
        digest: Digest::from(bytes),
        data: b"data",
    };
    let old = Version1::Chunk {
        transfer: 5,
        index: 300,
        digest: bytes,
        data: b"data",
    };
    let (mut new_buf, mut old_buf) = ([0u8; 64], [0u8; 64]);
    let new_len = frame.encode(&mut new_buf).unwrap();
    let old_bytes = postcard::to_slice(&old, &mut old_buf).unwrap();
    // Version1 has one variant (tag 0); Chunk is tag 6: compare the fields.
    assert_eq!(new_buf[0], 6);
    assert_eq!(&new_buf[1..new_len], &old_bytes[1..]);
    // By hand: transfer, index (varint), digest length 32, the digest, the data.
    let mut expected = heapless::Vec::<u8, 64>::new();
    expected.extend_from_slice(&[6, 5, 0xac, 0x02, 32]).unwrap();
    expected.extend_from_slice(&bytes).unwrap();
    expected
        .extend_from_slice(&[4, b'd', b'a', b't', b'a'])
        .unwrap();
    assert_eq!(&new_buf[..new_len], &expected[..]);
    assert_eq!(Frame::decode(&new_buf[..new_len]), Ok(frame));

    let held = Held {
        prefix: 1,
        mask: 2,
        digest: Digest::from(bytes),
    };
    let mut held_buf = [0u8; 64];
    let used = postcard::to_slice(&held, &mut held_buf).unwrap();
    assert_eq!(&used[..3], &[1, 2, 32]);
    assert_eq!(&used[3..], &bytes);
}

const LONG_NAME_BYTES: [u8; MAX_NAME_LEN] = [b'n'; MAX_NAME_LEN];
const LONG_NAME: &str = match core::str::from_utf8(&LONG_NAME_BYTES) {
    Ok(name) => name,
    Err(_) => panic!(),
};

fn worst_held() -> Held {
    Held {
        prefix: u64::MAX,
        mask: u64::MAX,
        digest: Digest::from([0xff; 32]),
    }
}

#[test]
fn every_control_frame_fits_the_bound() {
    assert_eq!(LONG_NAME.len(), MAX_NAME_LEN);
    let text = &LONG_NAME[..MAX_ERROR_TEXT];
    let frames = [
        Frame::Hello {
            magic: u32::MAX,
            version: u16::MAX,
            max_chunk: u32::MAX,
            max_window: u16::MAX,
        },
        Frame::HelloAck {
            version: u16::MAX,
            chunk_size: u32::MAX,
            window: u16::MAX,
        },
        Frame::OpenUpload {
            seq: u32::MAX,
            name: LONG_NAME,
            size: u64::MAX,
            fresh: true,
        },
        Frame::ResumeStatus {
            seq: u32::MAX,
            held: worst_held(),
        },
        Frame::OpenDownload {
            seq: u32::MAX,
            name: LONG_NAME,
            size: u64::MAX,
            held: worst_held(),
        },
        Frame::FileInfo {
            seq: u32::MAX,
            size: u64::MAX,
            chunk_size: u32::MAX,
        },
        Frame::Ack {
            transfer: u32::MAX,
            cumulative: u64::MAX,
            mask: u64::MAX,
        },
        Frame::Nack {
            transfer: u32::MAX,
            index: u64::MAX,
            reason: NackReason::BadLength,
        },
        Frame::Finish {
            transfer: u32::MAX,
            size: u64::MAX,
            digest: Digest::from([0xff; 32]),
        },
        Frame::Verified {
            transfer: u32::MAX,
            size: u64::MAX,
            digest: Digest::from([0xff; 32]),
        },
        Frame::List {
            seq: u32::MAX,
            start_after: LONG_NAME,
            limit: u16::MAX,
        },
        Frame::Delete {
            seq: u32::MAX,
            name: LONG_NAME,
        },
        Frame::Deleted { seq: u32::MAX },
        Frame::Error {
            seq: u32::MAX,
            code: ErrorCode(u16::MAX),
            text,
        },
        Frame::OpenUploadWith {
            seq: u32::MAX,
            name: LONG_NAME,
            size: u64::MAX,
            fresh: true,
            modified: u64::MAX,
            mode: u32::MAX,
        },
        Frame::ListTree {
            seq: u32::MAX,
            prefix: LONG_NAME,
            start_after: LONG_NAME,
            limit: u16::MAX,
            recursive: true,
        },
    ];
    let mut buf = [0u8; 4096];
    for frame in frames {
        let len = frame.encode(&mut buf).unwrap();
        assert!(len <= CONTROL_FRAME_MAX, "{frame:?} is {len} bytes");
        assert_eq!(Frame::decode(&buf[..len]), Ok(frame));
    }
}

#[test]
fn chunk_frame_overhead_is_an_upper_bound() {
    let data = [0xffu8; 4096];
    let mut buf = [0u8; 4096 + CHUNK_FRAME_OVERHEAD];
    let frame = Frame::Chunk {
        transfer: u32::MAX,
        index: u64::MAX,
        digest: Digest::from([0xff; 32]),
        data: &data,
    };
    let len = frame.encode(&mut buf).unwrap();
    assert!(len <= data.len() + CHUNK_FRAME_OVERHEAD);
    assert_eq!(Frame::decode(&buf[..len]), Ok(frame));
}

#[test]
fn a_list_page_holds_at_least_one_entry_of_the_longest_name() {
    let entry = ListEntry {
        name: LONG_NAME,
        size: u64::MAX,
        modified: u64::MAX,
        chunk_size: u32::MAX,
        digest: Digest::from([0xff; 32]),
    };
    let mut space = [0u8; CONTROL_FRAME_MAX - 16];
    let (used, count, more) = pack_entries(&mut space, &mut [entry, entry].into_iter());
    assert_eq!((count, more), (1, true));
    let mut buf = [0u8; CONTROL_FRAME_MAX];
    let frame = Frame::ListPage {
        seq: u32::MAX,
        more,
        count,
        entries: &space[..used],
    };
    let len = frame.encode(&mut buf).unwrap();
    assert!(len <= CONTROL_FRAME_MAX);
    assert_eq!(Frame::decode(&buf[..len]), Ok(frame));
}

#[test]
fn put_frame_overhead_is_an_upper_bound_and_fits_put_agrees() {
    let data = [0xffu8; 1000];
    let mut buf = [0u8; 4096];
    let frame = Frame::Put {
        seq: u32::MAX,
        name: LONG_NAME,
        modified: u64::MAX,
        mode: u32::MAX,
        digest: Digest::from([0xff; 32]),
        data: &data,
    };
    let len = frame.encode(&mut buf).unwrap();
    assert!(len <= LONG_NAME.len() + data.len() + PUT_FRAME_OVERHEAD);
    assert_eq!(Frame::decode(&buf[..len]), Ok(frame));
    assert!(fits_put(10, 4096, 4096));
    assert!(!fits_put(10, 4097, 4096));
    assert!(!fits_put(MAX_NAME_LEN + 1, 1, 4096));
    // A whole chunk under the longest name fits the bound of every chunk size.
    for chunk in [MIN_CHUNK_SIZE, 1024, 4096, MAX_CHUNK_SIZE] {
        let mut big = [0u8; 8192];
        let data = &data[..data.len().min(chunk as usize)];
        let len = Frame::Put {
            seq: u32::MAX,
            name: LONG_NAME,
            modified: u64::MAX,
            mode: u32::MAX,
            digest: Digest::from([0xff; 32]),
            data,
        }
        .encode(&mut big)
        .unwrap();
        assert!(len - data.len() + chunk as usize <= max_body_len(chunk as usize));
    }
}

#[test]
fn overlong_names_in_new_frames_are_refused_with_their_seq() {
    let long = [b'n'; MAX_NAME_LEN + 1];
    let long = core::str::from_utf8(&long).unwrap();
    let mut buf = [0u8; 4096];
    let frames = [
        Frame::OpenUploadWith {
            seq: 3,
            name: long,
            size: 1,
            fresh: false,
            modified: 1,
            mode: 0o644,
        },
        Frame::ListTree {
            seq: 3,
            prefix: "",
            start_after: long,
            limit: 1,
            recursive: false,
        },
        Frame::ListTree {
            seq: 3,
            prefix: long,
            start_after: "",
            limit: 1,
            recursive: true,
        },
    ];
    for frame in frames {
        let len = frame.encode(&mut buf).unwrap();
        assert_eq!(Frame::decode(&buf[..len]), Err(DecodeError::NameTooLong));
        assert_eq!(Frame::long_name_request_seq(&buf[..len]), Some(3));
    }
    let put = Frame::Put {
        seq: 4,
        name: long,
        modified: 0,
        mode: 0,
        digest: Digest::default(),
        data: b"x",
    };
    let len = put.encode(&mut buf).unwrap();
    assert_eq!(Frame::decode(&buf[..len]), Err(DecodeError::NameTooLong));
    // A Put is not a request answered alone: a long name there breaks the protocol.
    assert_eq!(Frame::long_name_request_seq(&buf[..len]), None);
}

#[test]
fn tree_entries_round_trip_and_a_page_must_be_of_one_kind() {
    let file = TreeEntry {
        name: "a/b.txt",
        size: 4096,
        modified: 1_700_000_000,
        mode: 0o644,
        chunk_size: 1 << 20,
        digest: Digest::from([7; 32]),
        folder: false,
    };
    let folder = TreeEntry {
        name: "a/c/",
        size: 0,
        modified: 0,
        mode: 0,
        chunk_size: 0,
        digest: Digest::default(),
        folder: true,
    };
    let mut space = [0u8; 256];
    let (used, count, more) = pack_entries(&mut space, &mut [file, folder].into_iter());
    assert_eq!((count, more), (2, false));
    let page: heapless::Vec<_, 4> = TreeEntries::new(count, &space[..used])
        .map(Result::unwrap)
        .collect();
    assert_eq!(&page[..], &[file, folder]);
    let mut smallest = [0u8; 64];
    let tiny = TreeEntry {
        name: "a",
        ..folder
    };
    let len = postcard::to_slice(&tiny, &mut smallest).unwrap().len();
    assert_eq!(len, TREE_ENTRY_MIN_LEN);
    let mut buf = [0u8; 512];
    let frame = Frame::ListPage {
        seq: 9,
        more: false,
        count,
        entries: &space[..used],
    };
    let len = frame.encode(&mut buf).unwrap();
    assert_eq!(Frame::decode(&buf[..len]), Ok(frame));
    // The same bytes are no page of `ListEntry`s.
    assert!(ListEntries::new(count, &space[..used]).any(|e| e.is_err()));
}

#[test]
fn held_membership() {
    let held = Held {
        prefix: 3,
        mask: 0b101,
        digest: Digest::default(),
    };
    let members: heapless::Vec<u64, 8> = (0..10).filter(|&i| held.contains(i)).collect();
    assert_eq!(&members[..], &[0, 1, 2, 4, 6]);
    assert_eq!(held.end(), 7);
    assert_eq!(held.count(), 5);
    assert!(Held::default().is_empty());
    assert_eq!(Held::default().end(), 0);
}

#[test]
fn retry_after_is_read_from_the_end_of_a_text() {
    assert_eq!(retry_after_secs("busy; retry-after=3"), Some(3));
    assert_eq!(retry_after_secs("retry-after=12"), Some(12));
    assert_eq!(
        retry_after_secs("a retry-after=1 then retry-after=7"),
        Some(7)
    );
    assert_eq!(retry_after_secs("busy"), None);
    assert_eq!(retry_after_secs("retry-after="), None);
    assert_eq!(retry_after_secs("retry-after=3s"), None);
    assert_eq!(retry_after_secs("retry-after=99999999999"), None);
}
