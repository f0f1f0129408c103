//! An authoritative DNS server on loopback, standing in for Kubernetes' cluster DNS: one
//! A record per ready pod of each headless Service, changed as replicas come and go.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

/// The cluster's DNS zone and the server answering for it.
pub struct ClusterDns {
    addr: SocketAddr,
    origin: Name,
    zone: Arc<InMemoryZoneHandler<TokioRuntimeProvider>>,
    serial: AtomicU32,
    _server: Server<Catalog>,
}

impl std::fmt::Debug for ClusterDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterDns")
            .field("addr", &self.addr)
            .field("origin", &self.origin)
            .finish()
    }
}

impl ClusterDns {
    /// Serves `origin` (`svc.cluster.local.`) on 127.0.0.1, on a free UDP port.
    pub async fn start(origin: &str) -> std::io::Result<ClusterDns> {
        let origin = Name::from_str(origin).map_err(std::io::Error::other)?;
        let zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
        let soa = SOA::new(
            Name::from_str("ns.").map_err(std::io::Error::other)?,
            Name::from_str("admin.").map_err(std::io::Error::other)?,
            1,
            60,
            60,
            3600,
            0,
        );
        zone.upsert(Record::from_rdata(origin.clone(), 0, RData::SOA(soa)), 1)
            .await;
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![zone.clone()]);
        let mut server = Server::new(catalog);
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        server.register_socket(socket);
        Ok(ClusterDns {
            addr,
            origin,
            zone,
            serial: AtomicU32::new(2),
            _server: server,
        })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fully qualified name of `host` in the zone.
    pub fn fqdn(&self, host: &str) -> String {
        format!("{host}.{}", self.origin)
    }

    /// Makes `host` resolve to exactly `ips` (none: the name has no records).
    pub async fn set(&self, host: &str, ips: &[Ipv4Addr]) {
        let Ok(name) = Name::from_str(&self.fqdn(host)) else {
            return;
        };
        self.zone
            .records_mut()
            .await
            .remove(&RrKey::new(LowerName::new(&name), RecordType::A));
        for ip in ips {
            let serial = self.serial.fetch_add(1, Ordering::Relaxed);
            self.zone
                .upsert(
                    Record::from_rdata(name.clone(), 0, RData::A(A(*ip))),
                    serial,
                )
                .await;
        }
    }
}
