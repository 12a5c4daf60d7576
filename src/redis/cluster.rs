//! What a Redis Cluster says of itself (`CLUSTER NODES`), for `boltlinkctl status`: its
//! masters and replicas, which are failing, and whether every slot is served.

use serde::Serialize;

use super::RedisHandle;

/// Slots of a Redis Cluster: every one must be served by a master.
pub const SLOTS: u32 = 16_384;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterNode {
    /// `host:port` as the cluster announces it.
    pub addr: String,
    /// `master` or `replica`.
    pub role: &'static str,
    /// A replica's master, by address (when the cluster knows it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_of: Option<String>,
    /// Slots this master serves.
    pub slots: u32,
    /// Flagged `fail` or `fail?` by the cluster, or its link is down.
    pub failing: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterView {
    pub nodes: Vec<ClusterNode>,
    pub masters: usize,
    pub replicas: usize,
    /// Slots served by a master that is not failing.
    pub slots_served: u32,
}

impl ClusterView {
    /// What an operator must act on: slots without a healthy master, failing nodes, masters
    /// without a replica (a failover of those would lose their slots).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.slots_served < SLOTS {
            out.push(format!(
                "redis cluster serves {} of {SLOTS} slots: keys in the others are unreachable",
                self.slots_served
            ));
        }
        for n in self.nodes.iter().filter(|n| n.failing) {
            out.push(format!(
                "redis cluster node {} ({}) is failing",
                n.addr, n.role
            ));
        }
        for m in self
            .nodes
            .iter()
            .filter(|n| n.role == "master" && !n.failing && n.slots > 0)
        {
            let covered = self.nodes.iter().any(|r| {
                r.role == "replica" && !r.failing && r.replica_of.as_deref() == Some(&m.addr)
            });
            if !covered {
                out.push(format!(
                    "redis cluster master {} has no healthy replica: it cannot fail over",
                    m.addr
                ));
            }
        }
        out
    }
}

/// Parses `CLUSTER NODES`: one line per node, `id addr@bus flags master ping pong epoch link
/// slot...`.
pub fn parse_cluster_nodes(text: &str) -> Result<ClusterView, String> {
    struct Raw<'a> {
        id: &'a str,
        addr: String,
        master: bool,
        master_id: &'a str,
        failing: bool,
        slots: u32,
    }
    let mut raws = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            return Err(format!("unexpected CLUSTER NODES line: {line:?}"));
        }
        let flags: Vec<&str> = f[2].split(',').collect();
        let mut slots = 0u32;
        for range in &f[8..] {
            // Importing/migrating markers ("[5461->-id]") are not served slots.
            if range.starts_with('[') {
                continue;
            }
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            match (lo.parse::<u32>(), hi.parse::<u32>()) {
                (Ok(lo), Ok(hi)) if lo <= hi && hi < SLOTS => slots += hi - lo + 1,
                _ => return Err(format!("unexpected slot range {range:?}")),
            }
        }
        raws.push(Raw {
            id: f[0],
            addr: f[1].split('@').next().unwrap_or(f[1]).to_string(),
            master: flags.contains(&"master"),
            master_id: f[3],
            failing: flags.iter().any(|&fl| fl == "fail" || fl == "fail?") || f[7] != "connected",
            slots,
        });
    }
    let nodes: Vec<ClusterNode> = raws
        .iter()
        .map(|r| ClusterNode {
            addr: r.addr.clone(),
            role: if r.master { "master" } else { "replica" },
            replica_of: (!r.master)
                .then(|| raws.iter().find(|m| m.id == r.master_id))
                .flatten()
                .map(|m| m.addr.clone()),
            slots: if r.master { r.slots } else { 0 },
            failing: r.failing,
        })
        .collect();
    Ok(ClusterView {
        masters: nodes.iter().filter(|n| n.role == "master").count(),
        replicas: nodes.iter().filter(|n| n.role == "replica").count(),
        slots_served: nodes
            .iter()
            .filter(|n| n.role == "master" && !n.failing)
            .map(|n| n.slots)
            .sum(),
        nodes,
    })
}

impl RedisHandle {
    /// The cluster's nodes as one of them sees them; `None` on a standalone server or when
    /// no node answered.
    pub async fn cluster_view(&self) -> Option<Result<ClusterView, String>> {
        if !self.is_cluster() {
            return None;
        }
        let cmd = ::redis::cmd("CLUSTER").arg("NODES").clone();
        let text: String = self.query_cmd(&cmd).await?;
        Some(parse_cluster_nodes(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEALTHY: &str = "\
02acc 127.0.0.1:54102@64102 master - 0 1796581959205 2 connected 5461-10922
a799b 127.0.0.1:54106@64106 slave 1b03f 0 1796581959305 1 connected
571ef 127.0.0.1:54104@64104 slave 02acc 0 1796581959000 2 connected
b5a71 127.0.0.1:54103@64103 master - 0 1796581959104 3 connected 10923-16383
1b03f 127.0.0.1:54101@64101 myself,master - 0 1796581959000 1 connected 0-5460
86baf 127.0.0.1:54105@64105 slave b5a71 0 1796581959000 3 connected
";

    #[test]
    fn a_healthy_cluster_serves_every_slot_with_a_replica_per_master() {
        let view = parse_cluster_nodes(HEALTHY).expect("parses");
        assert_eq!(
            (view.masters, view.replicas, view.slots_served),
            (3, 3, SLOTS)
        );
        assert_eq!(view.problems(), Vec::<String>::new());
        let replica = view
            .nodes
            .iter()
            .find(|n| n.addr == "127.0.0.1:54106")
            .expect("node");
        assert_eq!(replica.replica_of.as_deref(), Some("127.0.0.1:54101"));
        assert_eq!(replica.role, "replica");
    }

    #[test]
    fn a_failed_master_names_its_unserved_slots_and_the_node() {
        // 54101 failed; its replica has not taken over yet.
        let text = HEALTHY.replace(
            "myself,master - 0 1796581959000 1 connected 0-5460",
            "master,fail - 0 1796581959000 1 disconnected 0-5460",
        );
        let view = parse_cluster_nodes(&text).expect("parses");
        assert_eq!(view.slots_served, SLOTS - 5461);
        let problems = view.problems();
        assert!(
            problems[0].contains("serves 10923 of 16384 slots"),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p == "redis cluster node 127.0.0.1:54101 (master) is failing"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_master_without_a_replica_is_named() {
        let text: String = HEALTHY
            .lines()
            .filter(|l| !l.starts_with("a799b"))
            .map(|l| format!("{l}\n"))
            .collect();
        let problems = parse_cluster_nodes(&text).expect("parses").problems();
        assert_eq!(
            problems,
            ["redis cluster master 127.0.0.1:54101 has no healthy replica: it cannot fail over"]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_cluster_nodes("nonsense").is_err());
        assert!(parse_cluster_nodes("a 1.2.3.4:1@2 master - 0 0 1 connected 9-x\n").is_err());
    }
}
