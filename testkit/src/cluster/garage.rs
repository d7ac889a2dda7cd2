//! An n-node Garage cluster on this machine (opt-in runs only: Garage is AGPL and built
//! apart with `cargo install garage --locked`, run only as an outside process). Each node
//! has its own directory, RPC, S3 and admin ports; node 0 connects to the others, every
//! node gets a zone and capacity in the layout, then one key and buckets are made through
//! the `garage` CLI. Replication factor = min(n, 3), so a 3-node cluster keeps accepting
//! writes with one node down.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::process::{find_binary, free_port, run, wait_listening, Daemon};

/// The region Garage's S3 API answers for.
const REGION: &str = "garage";

/// One node: its configuration, ports and process (None once killed).
pub struct GarageNode {
    config: PathBuf,
    /// Its S3 API port on 127.0.0.1.
    pub s3_port: u16,
    /// Its RPC port on 127.0.0.1.
    pub rpc_port: u16,
    daemon: Option<Daemon>,
}

impl GarageNode {
    /// `http://127.0.0.1:S3_PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Whether it has not been killed.
    pub fn running(&self) -> bool {
        self.daemon.is_some()
    }
}

/// A running Garage cluster, every node stopped and the directories removed on drop.
pub struct Garage {
    binary: PathBuf,
    nodes: Vec<GarageNode>,
    key_id: String,
    secret: String,
    // Last: dropped after the nodes stopped.
    _dir: tempfile::TempDir,
}

impl Garage {
    /// Starts `n` nodes (1 or more), lays them out and creates an access key.
    pub fn start_cluster(n: usize) -> io::Result<Garage> {
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no nodes"));
        }
        let binary = find_binary("garage", &[])?;
        let dir = tempfile::Builder::new().prefix("ferry-garage-").tempdir()?;
        let secret = rpc_secret();
        let mut nodes = Vec::with_capacity(n);
        for index in 0..n {
            nodes.push(start_node(&binary, dir.path(), index, n.min(3), &secret)?);
        }
        let mut garage = Garage {
            binary,
            nodes,
            key_id: String::new(),
            secret: String::new(),
            _dir: dir,
        };
        garage.lay_out()?;
        let key = garage.cli(0, &["key", "create", "ferry"])?;
        garage.key_id = field(&key, "Key ID")?;
        garage.secret = field(&key, "Secret key")?;
        Ok(garage)
    }

    /// Connects node 0 to the others and gives every node a role.
    fn lay_out(&mut self) -> io::Result<()> {
        let ids: Vec<String> = (0..self.nodes.len())
            .map(|index| Ok(self.cli(index, &["node", "id", "-q"])?.trim().to_string()))
            .collect::<io::Result<_>>()?;
        for id in &ids[1..] {
            self.cli(0, &["node", "connect", id])?;
        }
        for (index, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap_or(id);
            let zone = format!("z{index}");
            self.cli(0, &["layout", "assign", "-z", &zone, "-c", "1G", short])?;
        }
        // The other nodes learn of each other from node 0: wait until the layout applies.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.cli(0, &["layout", "apply", "--version", "1"]) {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        // Wait until every node answers S3 requests with the applied layout.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.cli(0, &["status"])?.contains("HEALTHY NODES") {
            if Instant::now() > deadline {
                return Err(io::Error::other("garage cluster not healthy after 30 s"));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(())
    }

    /// Runs `garage -c CONFIG ARGS...` against node `index`; its stdout.
    pub fn cli(&self, index: usize, args: &[&str]) -> io::Result<String> {
        let node = &self.nodes[index];
        run(
            &format!("garage {}", args.join(" ")),
            Command::new(&self.binary)
                .arg("-c")
                .arg(&node.config)
                .args(args),
        )
    }

    /// Creates bucket `name` and lets the key read and write it.
    pub fn create_bucket(&self, name: &str) -> io::Result<()> {
        let node = self.first_running()?;
        self.cli(node, &["bucket", "create", name])?;
        self.cli(
            node,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                name,
                "--key",
                &self.key_id,
            ],
        )?;
        Ok(())
    }

    /// The nodes.
    pub fn nodes(&self) -> &[GarageNode] {
        &self.nodes
    }

    /// The S3 endpoints of the running nodes.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|node| node.running())
            .map(GarageNode::endpoint)
            .collect()
    }

    /// The access key id.
    pub fn access_key(&self) -> &str {
        &self.key_id
    }

    /// The secret key.
    pub fn secret_key(&self) -> &str {
        &self.secret
    }

    /// The S3 region (`garage`).
    pub fn region(&self) -> &str {
        REGION
    }

    /// SIGKILLs node `index`.
    pub fn kill_node(&mut self, index: usize) {
        if let Some(mut daemon) = self.nodes[index].daemon.take() {
            daemon.kill();
        }
    }

    fn first_running(&self) -> io::Result<usize> {
        self.nodes
            .iter()
            .position(GarageNode::running)
            .ok_or_else(|| io::Error::other("no garage node running"))
    }
}

/// Writes node `index`'s configuration and starts it.
fn start_node(
    binary: &Path,
    root: &Path,
    index: usize,
    replication: usize,
    secret: &str,
) -> io::Result<GarageNode> {
    let dir = root.join(format!("node{index}"));
    std::fs::create_dir_all(dir.join("meta"))?;
    std::fs::create_dir_all(dir.join("data"))?;
    let (rpc_port, s3_port, admin_port) = (free_port()?, free_port()?, free_port()?);
    let config = dir.join("garage.toml");
    std::fs::write(
        &config,
        format!(
            r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = {replication}
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
"#,
            meta = dir.join("meta").display(),
            data = dir.join("data").display(),
        ),
    )?;
    let mut command = Command::new(binary);
    command
        .arg("-c")
        .arg(&config)
        .arg("server")
        .env("RUST_LOG", "garage=warn");
    let log = dir.join("garage.log");
    let mut daemon = Daemon::spawn(
        &format!("garage node {index}"),
        command,
        &log,
        "TERM",
        Duration::from_secs(5),
    )?;
    wait_listening(
        &mut daemon,
        SocketAddr::from(([127, 0, 0, 1], rpc_port)),
        Duration::from_secs(30),
    )?;
    Ok(GarageNode {
        config,
        s3_port,
        rpc_port,
        daemon: Some(daemon),
    })
}

/// A 32-byte RPC secret in hex, different per cluster.
fn rpc_secret() -> String {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(1)
        ^ u64::from(std::process::id());
    crate::data::pseudo_random(32, seed)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value after `NAME:` on a line of CLI output.
fn field(output: &str, name: &str) -> io::Result<String> {
    output
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
        .ok_or_else(|| io::Error::other(format!("no {name:?} in garage output:\n{output}")))
}
