//! The cluster settings: `node_id`, `peers`, `cluster_listen` and the
//! cluster secret. None of them: a single-node server, as always.

use super::{ConfigError, Settings, CLUSTER_SECRET};
use spool_cluster::node::RaftTimings;
use spool_cluster::transport::{ClusterSecret, LinkTls};
use spool_cluster::types::NODE_ID_END;
use spool_server::cluster::ClusterSettings;
use spool_server::tls::TlsFiles;
use std::collections::BTreeMap;
use std::net::ToSocketAddrs;

/// The most nodes `peers` may name: every node is a voter of the metadata
/// group, and a Raft group much larger than this gains no safety and
/// spends every write on more acknowledgements.
pub const PEERS_MAX: usize = 9;

impl Settings {
    pub(super) fn cluster(
        &self,
        tls: Option<&TlsFiles>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<ClusterSettings>, ConfigError> {
        let v = &self.values;
        let secret = self.read_secret(&CLUSTER_SECRET, warnings)?;
        let Some(peers_text) = &v.peers else {
            for (key, set) in [
                ("node_id", v.node_id.is_some()),
                ("cluster_listen", v.cluster_listen.is_some()),
                ("cluster_tls_ca_file", v.cluster_tls_ca_file.is_some()),
                (CLUSTER_SECRET.file, secret.is_some()),
            ] {
                if set {
                    return Err(self.error(
                        key,
                        "is set but peers is not: a cluster node is started with the list of \
                         every node (--peers ID=HOST:PORT,...)",
                    ));
                }
            }
            return Ok(None);
        };
        let peers = parse_peers(peers_text).map_err(|e| self.error("peers", e))?;
        let node_id = v.node_id.ok_or_else(|| {
            self.error(
                "node_id",
                "is needed with peers: which of them is this node?",
            )
        })?;
        let Some(own_addr) = peers.get(&node_id) else {
            return Err(self.error(
                "peers",
                format!("does not name this node ({node_id}): every node gets the same list"),
            ));
        };
        let listen_text = v.cluster_listen.as_deref().unwrap_or(own_addr);
        let cluster_listen = self.resolve("cluster_listen", listen_text)?;
        let secret = secret.ok_or_else(|| {
            self.error(
                CLUSTER_SECRET.file,
                "is needed with peers (or SPOOL_CLUSTER_SECRET): nodes prove to each other \
                 that they belong to the cluster with it",
            )
        })?;
        let secret = ClusterSecret::new(secret.expose().as_bytes().to_vec())
            .map_err(|e| self.error(CLUSTER_SECRET.file, e))?;
        let tls = self.cluster_tls(tls)?;
        Ok(Some(ClusterSettings {
            node_id,
            cluster_listen,
            peers,
            secret,
            tls,
            timings: RaftTimings::default(),
        }))
    }
}

impl Settings {
    /// TLS on the node links: with the server's certificate, and only so
    /// (a node without one could not prove which host it is).
    fn cluster_tls(&self, tls: Option<&TlsFiles>) -> Result<Option<LinkTls>, ConfigError> {
        const KEY: &str = "cluster_tls_ca_file";
        match (tls, &self.values.cluster_tls_ca_file) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(self.error(
                KEY,
                "is set but tls_cert_file is not: the node links use TLS with the node's own \
                 certificate (--tls-cert-file, --tls-key-file)",
            )),
            (Some(_), None) => Err(self.error(
                KEY,
                "is needed with peers and TLS: the node links are encrypted too, and each \
                 node checks its peers' certificates against this CA (the ca.pem of \
                 `spool tls generate`)",
            )),
            (Some(files), Some(ca)) => spool_server::tls::cluster_link_tls(files, ca)
                .map(Some)
                .map_err(|e| self.error(KEY, format!("{e:#}"))),
        }
    }
}

/// `1=host:port,2=host:port,...`: positive, distinct ids; addresses that
/// resolve (a typo fails the start, not every connection later).
pub fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('=')
            .ok_or_else(|| format!("{entry:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id > 0 && *id < NODE_ID_END)
            .ok_or_else(|| {
                format!(
                    "{entry:?}: the node id must be a number from 1 to {}",
                    NODE_ID_END - 1
                )
            })?;
        let addr = addr.trim();
        match addr.to_socket_addrs().map(|mut found| found.next()) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(format!("{entry:?}: {addr:?} resolves to no address")),
            Err(e) => return Err(format!("{entry:?}: {addr:?} is not HOST:PORT ({e})")),
        }
        if peers.insert(id, addr.to_owned()).is_some() {
            return Err(format!("node {id} is named twice"));
        }
    }
    if peers.is_empty() {
        return Err("names no node".into());
    }
    if peers.len() > PEERS_MAX {
        return Err(format!(
            "names {} nodes; a cluster has at most {PEERS_MAX}",
            peers.len()
        ));
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_refuse_what_cannot_form_a_cluster() {
        let peers = parse_peers("1=127.0.0.1:7431, 2=127.0.0.1:7432,3=localhost:7433").unwrap();
        assert_eq!(peers.len(), 3);
        assert_eq!(peers[&3], "localhost:7433");
        for (bad, says) in [
            ("", "names no node"),
            ("1=127.0.0.1:1,1=127.0.0.1:2", "named twice"),
            ("0=127.0.0.1:1", "a number from 1 to 281474976710655"),
            ("x=127.0.0.1:1", "a number from 1"),
            ("281474976710656=127.0.0.1:1", "a number from 1"),
            ("1:127.0.0.1:1", "ID=HOST:PORT"),
            ("1=nowhere", "HOST:PORT"),
        ] {
            let e = parse_peers(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
