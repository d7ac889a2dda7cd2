//! Ferry's whole-file digests of the sources, and checking `ferry --json` reports against them.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ferry_core::digest::{chunk_digest, FileDigest};
use serde_json::{json, Value};

use crate::data::read_full;

/// Ferry's whole-file digest of a file (see `ferry_core::digest`), hex.
fn ferry_digest(path: &Path, chunk_size: u32) -> String {
    let size = fs::metadata(path).unwrap().len();
    let mut digest = FileDigest::new(chunk_size, size);
    let mut file = File::open(path).unwrap();
    let mut chunk = vec![0u8; chunk_size as usize];
    loop {
        let n = read_full(&mut file, &mut chunk).unwrap();
        if n == 0 {
            break;
        }
        digest.push(&chunk_digest(&chunk[..n]));
        if n < chunk.len() {
            break;
        }
    }
    digest.finish().to_string()
}

/// Expected digests, computed once per (file, chunk size).
#[derive(Default)]
pub struct Digests(Mutex<HashMap<(PathBuf, u32), String>>);

impl Digests {
    pub fn get(&self, path: &Path, chunk_size: u32) -> String {
        let key = (path.to_path_buf(), chunk_size);
        if let Some(hex) = self.0.lock().unwrap().get(&key) {
            return hex.clone();
        }
        let hex = ferry_digest(path, chunk_size);
        self.0.lock().unwrap().insert(key, hex.clone());
        hex
    }
}

pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| serde_json::from_str(line.trim()).ok())
        .collect()
}

/// Checks one `ferry --json` transfer report against the source file.
pub fn check_ferry_report(report: &Value, source: &Path, digests: &Digests) -> Result<(), String> {
    if report["ok"] != json!(true) {
        return Err(format!("not ok: {report}"));
    }
    let chunk = report["chunk_size"]
        .as_u64()
        .ok_or_else(|| format!("no chunk_size in {report}"))? as u32;
    let expected = digests.get(source, chunk);
    if report["digest"].as_str() != Some(expected.as_str()) {
        return Err(format!(
            "digest {} != expected {expected}",
            report["digest"]
        ));
    }
    Ok(())
}
