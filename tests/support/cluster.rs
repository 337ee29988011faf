//! A private Redis Cluster per test: three primaries, each with a replica,
//! Debian's `redis-server` in cluster mode on free ports (client and bus),
//! each node in a temporary directory of its own; every node is killed on
//! drop. Helpers kill a primary (its replica is promoted) and move a slot
//! from one primary to another while clients keep writing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::redis::free_port;

/// How long the cluster may take to form, or to fail over a primary.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may be silent before its replica takes over: short, so a
/// failover trial does not wait long, but far above a busy 2-core machine's
/// scheduling hiccups.
const NODE_TIMEOUT_MS: u32 = 2000;

/// One `redis-server` of the cluster.
struct Node {
    port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// A running Redis Cluster owned by one test.
pub struct RedisCluster {
    nodes: Vec<Node>,
}

impl RedisCluster {
    /// Start six nodes and join them: three primaries, one replica each. A
    /// cluster that does not settle (seen once in a CI run: a replica that
    /// never reported its link up) is torn down and formed again, twice at
    /// most, before the test fails.
    pub fn start() -> Self {
        for attempt in 1..=3 {
            let cluster = Self::form();
            if cluster.settled_by(Instant::now() + SETTLE_TIMEOUT) {
                return cluster;
            }
            eprintln!("redis cluster did not settle (attempt {attempt} of 3); forming it again");
        }
        panic!("the cluster did not settle in three attempts");
    }

    fn form() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..6 {
            nodes.push(spawn_node());
        }
        for node in &mut nodes {
            wait_for_ping(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed");
        assert!(status.success(), "redis-cli --cluster create failed");
        RedisCluster { nodes }
    }

    /// Seed URIs: every node, as a deployment would list them.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect()
    }

    /// The ports of the nodes still running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.child.is_some())
            .map(|node| node.port)
            .collect()
    }

    /// A blocking connection to the node on `port`.
    pub fn node(&self, port: u16) -> redis::Connection {
        connection(port)
    }

    /// The slot map as the first live node that answers sees it: per first
    /// slot of each range, (last slot, primary port, replica ports).
    pub fn slot_map(&self) -> BTreeMap<u16, (u16, u16, Vec<u16>)> {
        for port in self.live_ports() {
            let client =
                redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("a valid URL");
            if let Ok(mut node) = client.get_connection_with_timeout(Duration::from_secs(1)) {
                return slot_map(&mut node);
            }
        }
        panic!("no node of the cluster answers");
    }

    /// The ports of the primaries that serve slots.
    pub fn primaries(&self) -> Vec<u16> {
        let mut primaries: Vec<u16> = self
            .slot_map()
            .values()
            .map(|(_, primary, _)| *primary)
            .collect();
        primaries.sort_unstable();
        primaries.dedup();
        primaries
    }

    /// The port of the primary serving `slot`.
    pub fn primary_of(&self, slot: u16) -> u16 {
        self.slot_map()
            .into_iter()
            .find(|(first, (last, _, _))| *first <= slot && slot <= *last)
            .map(|(_, (_, primary, _))| primary)
            .expect("every slot is served")
    }

    /// Who serves `slot` in each live node's view: node port -> primary port
    /// (`None` where the node knows no owner).
    pub fn owners_of(&self, slot: u16) -> BTreeMap<u16, Option<u16>> {
        self.live_ports()
            .into_iter()
            .map(|port| {
                let owner = slot_map(&mut connection(port))
                    .into_iter()
                    .find(|(first, (last, _, _))| *first <= slot && slot <= *last)
                    .map(|(_, (_, primary, _))| primary);
                (port, owner)
            })
            .collect()
    }

    /// `CLUSTER NODES` as the node on `port` sees it (epochs included).
    pub fn nodes_seen_by(&self, port: u16) -> String {
        redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut connection(port))
            .expect("CLUSTER NODES succeeds")
    }

    /// The process id of the node on `port`.
    pub fn pid(&self, port: u16) -> Option<u32> {
        self.nodes
            .iter()
            .find(|node| node.port == port)
            .and_then(|node| node.child.as_ref().map(Child::id))
    }

    /// Kill (SIGKILL) the primary serving `slot` and wait until its replica
    /// serves the slot instead; returns (old primary port, new primary port).
    pub fn kill_primary_of(&mut self, slot: u16) -> (u16, u16) {
        self.kill_primary_with_lagging_replica(slot, Duration::ZERO)
    }

    /// Like [`RedisCluster::kill_primary_of`], with the replica cut off for
    /// `lag` before the kill: frozen (SIGSTOP) and its replication link
    /// closed by the primary, so it cannot reconnect, then thawed right after
    /// the kill. The writes the primary acknowledged meanwhile are lost with
    /// it, as when a replica falls behind and its primary dies. (Freezing
    /// alone loses nothing: the kernel keeps receiving the stream for it.)
    pub fn kill_primary_with_lagging_replica(&mut self, slot: u16, lag: Duration) -> (u16, u16) {
        let old = self.primary_of(slot);
        let replica = self
            .slot_map()
            .values()
            .find(|(_, primary, _)| *primary == old)
            .and_then(|(_, _, replicas)| replicas.first().copied())
            .expect("every primary has a replica");
        let replica_pid = self.pid(replica).expect("the replica runs");
        if !lag.is_zero() {
            // SAFETY: a signal to a child process we started.
            unsafe { libc::kill(replica_pid as libc::pid_t, libc::SIGSTOP) };
            redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("replica")
                .query::<i64>(&mut connection(old))
                .expect("the primary closes its replica's link");
            thread::sleep(lag);
        }
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == old)
            .expect("the primary is one of ours");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !lag.is_zero() {
            // SAFETY: as above.
            unsafe { libc::kill(replica_pid as libc::pid_t, libc::SIGCONT) };
        }
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "no replica took over from {old}");
            thread::sleep(Duration::from_millis(200));
            let live = self.live_ports();
            let promoted = live.iter().all(|&port| {
                let mut node = connection(port);
                cluster_ok(&mut node)
                    && slot_map(&mut node)
                        .values()
                        .all(|(_, primary, _)| *primary != old)
            });
            if promoted {
                return (old, self.primary_of(slot));
            }
        }
    }

    /// Move `slot` to the primary on port `to` the way `redis-cli --cluster
    /// reshard` does: mark it importing and migrating, `MIGRATE` its keys in
    /// batches (clients meanwhile get `ASK` redirections), then assign it to
    /// `to` on every primary. Returns how many keys moved.
    ///
    /// Like `redis-cli`, which refuses to reshard until "all nodes agree
    /// about slots configuration", it starts only once every node (replicas
    /// too) agrees; and it returns only once they agree again. Moves back to
    /// back without that race the cluster bus on Redis 7.0: the new owner
    /// claims the slot with the config epoch it bumped on import, but a node
    /// not told by `SETSLOT` (a replica) may still credit the old owner,
    /// whose epoch the next move bumps above the new owner's. That node then
    /// refuses the new owner's claim and sends it an `UPDATE` naming the old
    /// owner; if the new owner reads it before the old owner's own news, it
    /// hands the slot back and deletes its keys, while the old owner points
    /// at the new one: `MOVED` between the two for good (a CI run of the
    /// migration trial bounced a command on slot 14706 for 36 s). Redis 7.2
    /// fixed the `UPDATE` (redis/redis#12344); Debian's 7.0 has not.
    pub fn migrate_slot(&self, slot: u16, to: u16) -> usize {
        self.wait_until_agreed();
        let from = self.primary_of(slot);
        assert_ne!(from, to, "slot {slot} is on {to} already");
        let mut source = connection(from);
        let mut target = connection(to);
        let source_id = node_id(&mut source);
        let target_id = node_id(&mut target);
        let setslot = |connection: &mut redis::Connection, state: &str, id: &str| {
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(id)
                .query::<()>(connection)
                .expect("CLUSTER SETSLOT succeeds");
        };
        setslot(&mut target, "IMPORTING", &source_id);
        setslot(&mut source, "MIGRATING", &target_id);
        let mut moved = 0;
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut source)
                .expect("CLUSTER GETKEYSINSLOT succeeds");
            if keys.is_empty() {
                break;
            }
            moved += keys.len();
            redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query::<()>(&mut source)
                .expect("MIGRATE succeeds");
        }
        setslot(&mut target, "NODE", &target_id);
        setslot(&mut source, "NODE", &target_id);
        for port in self.live_ports() {
            let mut node = connection(port);
            if slot_map(&mut node)
                .values()
                .any(|(_, primary, _)| *primary == port)
            {
                setslot(&mut node, "NODE", &target_id);
            }
        }
        self.wait_until_agreed();
        moved
    }

    /// Wait until every live node describes the cluster alike: the same
    /// nodes with the same config epochs, serving the same slots.
    pub fn wait_until_agreed(&self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let views: BTreeMap<u16, Vec<NodeView>> = self
                .live_ports()
                .into_iter()
                .map(|port| (port, cluster_view(&mut connection(port))))
                .collect();
            let mut all = views.values();
            let first = all.next().expect("a live node");
            if all.all(|view| view == first) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the nodes did not come to agree on the cluster in {SETTLE_TIMEOUT:?}: {views:#?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait until every live node says the cluster is fine and agrees on
    /// which primary serves which slots, and every replica is in sync.
    pub fn wait_until_settled(&self) {
        assert!(
            self.settled_by(Instant::now() + SETTLE_TIMEOUT),
            "the cluster did not settle"
        );
    }

    /// Whether [`RedisCluster::wait_until_settled`]'s state comes by `deadline`.
    fn settled_by(&self, deadline: Instant) -> bool {
        loop {
            let live = self.live_ports();
            let maps: Vec<_> = live
                .iter()
                .map(|&port| {
                    let mut node = connection(port);
                    cluster_ok(&mut node).then(|| {
                        slot_map(&mut node)
                            .into_iter()
                            .map(|(first, (last, primary, _))| (first, last, primary))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let agreed = maps.iter().all(|map| map.is_some() && *map == maps[0]);
            let covered = maps[0].as_ref().is_some_and(|map| {
                map.iter()
                    .map(|(a, b, _)| usize::from(b - a) + 1)
                    .sum::<usize>()
                    == 16384
            });
            // A replica still syncing could not take over with the data.
            let replicating = agreed
                && covered
                && self.slot_map().values().all(|(_, _, replicas)| {
                    // `CLUSTER SLOTS` lists a replica only once it synced.
                    !replicas.is_empty()
                        && replicas.iter().all(|&port| {
                            redis::cmd("INFO")
                                .arg("replication")
                                .query::<String>(&mut connection(port))
                                .is_ok_and(|info| info.contains("master_link_status:up"))
                        })
                });
            if replicating {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One cluster for every test of this process that stays within a key
/// prefix of its own (see [`super::redis::unique_prefix`]): forming a cluster
/// takes seconds. Statics are never dropped, so its nodes are killed and
/// their directories removed when the process exits.
pub fn shared() -> &'static RedisCluster {
    static SHARED: OnceLock<RedisCluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        let cluster = RedisCluster::start();
        let mut doomed = DOOMED
            .lock()
            .expect("the list of doomed nodes is never poisoned");
        for node in &cluster.nodes {
            if let Some(child) = &node.child {
                doomed.push((child.id(), node._dir.path().to_owned()));
            }
        }
        // SAFETY: `atexit` only stores the function pointer; the handler
        // touches nothing but a static.
        unsafe { libc::atexit(kill_doomed) };
        cluster
    })
}

/// The shared cluster's nodes: process ids and directories.
static DOOMED: Mutex<Vec<(u32, PathBuf)>> = Mutex::new(Vec::new());

extern "C" fn kill_doomed() {
    let Ok(doomed) = DOOMED.lock() else {
        return;
    };
    for (pid, dir) in doomed.iter() {
        // SAFETY: sending a signal has no memory effects in this process.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn spawn_node() -> Node {
    let dir = tempfile::tempdir().expect("a temporary directory for a cluster node");
    let port = free_port();
    // The bus port is picked too: the default (port + 10000) may be taken or
    // past 65535 for an ephemeral port.
    let bus = free_port();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &bus.to_string(),
        ])
        .args(["--cluster-config-file", "nodes.conf"])
        .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
        // A replica takes over however long ago it last heard from its
        // primary: on a test machine (and after a long quiet spell) the
        // default refuses with "disconnected from master for longer than
        // allowed" and the slots stay down.
        .args(["--cluster-replica-validity-factor", "0"])
        // Replicas sync at once instead of waiting 5 s for others to join.
        .args(["--repl-diskless-sync-delay", "0"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--daemonize", "no", "--logfile", &log_file(port)])
        .args(["--loglevel", log_level()])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    Node {
        port,
        child: Some(child),
        _dir: dir,
    }
}

/// Where a node logs: nowhere, unless `CLUSTER_NODE_LOGS` names a folder,
/// where each node writes `<port>.log` (the nodes' own account of slot
/// ownership and config epochs, for a trial that went wrong).
fn log_file(port: u16) -> String {
    match std::env::var_os("CLUSTER_NODE_LOGS") {
        Some(dir) => {
            std::fs::create_dir_all(&dir).expect("a folder for the nodes' logs");
            PathBuf::from(dir)
                .join(format!("{port}.log"))
                .to_string_lossy()
                .into_owned()
        }
        None => String::new(),
    }
}

/// Verbose where the nodes log to files: the level that records an `UPDATE`
/// message about slot ownership.
fn log_level() -> &'static str {
    if std::env::var_os("CLUSTER_NODE_LOGS").is_some() {
        "verbose"
    } else {
        "notice"
    }
}

fn connection(port: u16) -> redis::Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("a valid URL");
    client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|error| panic!("node {port} answers: {error}"))
}

fn wait_for_ping(node: &mut Node) {
    let port = node.port;
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("a valid URL");
    while Instant::now() < deadline {
        if let Some(child) = node.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("cluster node {port} exited before it answered: {status}");
        }
        if let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_secs(1))
            && redis::cmd("PING").query::<String>(&mut connection).is_ok()
        {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("cluster node {port} did not start");
}

fn cluster_ok(node: &mut redis::Connection) -> bool {
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query::<String>(node)
        .is_ok_and(|info| info.contains("cluster_state:ok"))
}

/// One node of the cluster as another sees it: id, config epoch and the
/// slot ranges it serves (open migrations, `[...]`, left out: only the two
/// nodes involved list them).
type NodeView = (String, u64, Vec<String>);

/// `CLUSTER NODES` without what legitimately differs between observers
/// (flags such as `myself`, ping times, link state), sorted by node id.
fn cluster_view(node: &mut redis::Connection) -> Vec<NodeView> {
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(node)
        .expect("CLUSTER NODES succeeds");
    let mut view: Vec<NodeView> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let epoch = fields.get(6)?.parse().ok()?;
            let slots = fields
                .iter()
                .skip(8)
                .filter(|range| !range.starts_with('['))
                .map(|range| (*range).to_owned())
                .collect();
            Some((fields[0].to_owned(), epoch, slots))
        })
        .collect();
    view.sort();
    view
}

fn node_id(node: &mut redis::Connection) -> String {
    redis::cmd("CLUSTER")
        .arg("MYID")
        .query(node)
        .expect("CLUSTER MYID succeeds")
}

/// `CLUSTER SLOTS` as first slot -> (last slot, primary port, replica ports).
fn slot_map(node: &mut redis::Connection) -> BTreeMap<u16, (u16, u16, Vec<u16>)> {
    let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(node)
        .expect("CLUSTER SLOTS succeeds");
    let mut map = BTreeMap::new();
    for range in ranges {
        let redis::Value::Array(fields) = range else {
            continue;
        };
        let number =
            |value: &redis::Value| -> u16 { redis::from_redis_value_ref(value).expect("a number") };
        let port_of = |value: &redis::Value| -> u16 {
            match value {
                redis::Value::Array(node) => number(&node[1]),
                _ => panic!("a node entry"),
            }
        };
        let replicas = fields[3..].iter().map(port_of).collect();
        map.insert(
            number(&fields[0]),
            (number(&fields[1]), port_of(&fields[2]), replicas),
        );
    }
    map
}
