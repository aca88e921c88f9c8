//! Enrichment stage: geolocation, ASN and network labels for each side of a
//! flow, looked up once when the flow is created.
//!
//! In: addresses. Out: shared [`GeoInfo`] values stored in the flow (two
//! pointers). The databases ([`GeoService`]) are memory-mapped and shared by
//! every worker behind an atomic pointer: a reload opens and checks the new
//! files, then swaps them in; lookups never wait. Each worker has its own
//! bounded cache ([`Enricher`]).
//!
//! Layout: `db` (one database file), `networks` (`[[networks]]` labels and
//! non-routable classes).

pub mod db;
pub mod networks;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;

pub use db::{Database, GeoError, Role};
pub use networks::{NetworkConfig, NetworkLabel, Networks, non_routable};

use crate::telemetry::GeoTelemetry;

/// What flowhook knows about one address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeoInfo {
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<Arc<str>>,
    /// City name (English).
    pub city: Option<Arc<str>>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub asn: Option<u32>,
    pub as_name: Option<Arc<str>>,
    /// The most specific `[[networks]]` entry containing the address.
    pub network: Option<Arc<NetworkLabel>>,
    /// Non-routable (private, loopback, link-local, multicast, …): never looked up.
    pub private: bool,
    /// In a configured local network.
    pub local: bool,
}

/// The configured database files, opened together.
#[derive(Default)]
pub struct Databases {
    pub city: Option<Database>,
    pub country: Option<Database>,
    pub asn: Option<Database>,
}

impl Databases {
    /// Opens and checks every configured file; the first problem is returned.
    pub fn open(
        city: Option<&PathBuf>,
        country: Option<&PathBuf>,
        asn: Option<&PathBuf>,
    ) -> Result<Databases, GeoError> {
        Ok(Databases {
            city: city.map(|p| Database::open(Role::City, p)).transpose()?,
            country: country
                .map(|p| Database::open(Role::Country, p))
                .transpose()?,
            asn: asn.map(|p| Database::open(Role::Asn, p)).transpose()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.city.is_none() && self.country.is_none() && self.asn.is_none()
    }

    fn all(&self) -> impl Iterator<Item = &Database> {
        [&self.city, &self.country, &self.asn].into_iter().flatten()
    }
}

/// Shared databases and network labels, reloadable while in use.
pub struct GeoService {
    paths: (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>),
    dbs: ArcSwap<Databases>,
    networks: Networks,
    generation: AtomicU64,
}

/// Outcome of a reload.
#[derive(Debug, Clone, PartialEq)]
pub enum Reload {
    Unchanged,
    Reloaded,
    Failed(GeoError),
}

impl GeoService {
    /// Opens the databases of `cfg`; an unusable file is an error naming it.
    pub fn open(
        cfg: &crate::config::GeoConfig,
        networks: &[NetworkConfig],
    ) -> Result<GeoService, GeoError> {
        let dbs = Databases::open(
            cfg.city_db.as_ref(),
            cfg.country_db.as_ref(),
            cfg.asn_db.as_ref(),
        )?;
        Ok(GeoService {
            paths: (
                cfg.city_db.clone(),
                cfg.country_db.clone(),
                cfg.asn_db.clone(),
            ),
            dbs: ArcSwap::from_pointee(dbs),
            networks: Networks::new(networks),
            generation: AtomicU64::new(1),
        })
    }

    /// A service with no databases and no networks.
    pub fn disabled() -> GeoService {
        GeoService {
            paths: (None, None, None),
            dbs: ArcSwap::from_pointee(Databases::default()),
            networks: Networks::default(),
            generation: AtomicU64::new(1),
        }
    }

    /// Whether any database or network is configured (else lookups are skipped entirely).
    pub fn enabled(&self) -> bool {
        !self.dbs.load().is_empty() || !self.networks.is_empty()
    }

    pub fn has_databases(&self) -> bool {
        !self.dbs.load().is_empty()
    }

    /// Roles of the configured databases (`city`, `country`, `asn`).
    pub fn db_labels(&self) -> Vec<&'static str> {
        self.dbs.load().all().map(|d| d.role.label()).collect()
    }

    /// Bumps on every successful reload (workers clear their caches).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a configured file was replaced since it was opened.
    pub fn changed_on_disk(&self) -> bool {
        self.dbs.load().all().any(|d| db::stamp(&d.path) != d.stamp)
    }

    /// Opens the configured files again and swaps them in when all are good;
    /// a bad file keeps the old set in service.
    pub fn reload(&self, force: bool) -> Reload {
        if !force && !self.changed_on_disk() {
            return Reload::Unchanged;
        }
        match Databases::open(
            self.paths.0.as_ref(),
            self.paths.1.as_ref(),
            self.paths.2.as_ref(),
        ) {
            Ok(new) => {
                self.dbs.store(Arc::new(new));
                self.generation.fetch_add(1, Ordering::AcqRel);
                Reload::Reloaded
            }
            Err(e) => Reload::Failed(e),
        }
    }

    /// Looks `ip` up in every database (no cache).
    pub fn lookup(&self, ip: IpAddr, tel: Option<&mut GeoTelemetry>) -> GeoInfo {
        let network = self.networks.find(ip).cloned();
        let mut info = GeoInfo {
            private: non_routable(ip),
            local: network.as_ref().is_some_and(|n| n.local),
            ..GeoInfo::default()
        };
        let mut tel = tel;
        if !info.private {
            let dbs = self.dbs.load();
            for d in dbs.all() {
                let answer = d.lookup(ip);
                if let Some(t) = tel.as_deref_mut() {
                    t.lookup(
                        d.role.label(),
                        match &answer {
                            Ok(Some(_)) => "found",
                            Ok(None) => "not_found",
                            Err(_) => "error",
                        },
                    );
                }
                let Ok(Some(a)) = answer else { continue };
                if info.country.is_none() {
                    info.country = a.country.as_deref().map(Arc::from);
                }
                if info.city.is_none() {
                    info.city = a.city.as_deref().map(Arc::from);
                }
                if info.latitude.is_none() {
                    info.latitude = a.latitude;
                    info.longitude = a.longitude;
                }
                if info.asn.is_none() {
                    info.asn = a.asn;
                }
                if info.as_name.is_none() {
                    info.as_name = a.as_name.as_deref().map(Arc::from);
                }
            }
        }
        if let Some(n) = &network {
            if n.country.is_some() {
                info.country = n.country.clone();
            }
            if n.asn.is_some() {
                info.asn = n.asn;
            }
            if n.as_name.is_some() {
                info.as_name = n.as_name.clone();
            }
        }
        info.network = network;
        info
    }
}

/// A worker's view of the service: a bounded two-generation cache in front of it.
pub struct Enricher {
    service: Arc<GeoService>,
    generation: u64,
    young: FxHashMap<IpAddr, Arc<GeoInfo>>,
    old: FxHashMap<IpAddr, Arc<GeoInfo>>,
    half: usize,
    empty: Arc<GeoInfo>,
    private: Arc<GeoInfo>,
    /// Databases or networks configured (fixed for the service's life).
    enabled: bool,
    no_networks: bool,
    tel: GeoTelemetry,
}

impl Enricher {
    /// `cache_size` addresses at most (half in each generation).
    pub fn new(service: Arc<GeoService>, cache_size: usize) -> Self {
        let generation = service.generation();
        let (enabled, no_networks) = (service.enabled(), service.networks.is_empty());
        Enricher {
            enabled,
            no_networks,
            service,
            generation,
            young: FxHashMap::default(),
            old: FxHashMap::default(),
            half: (cache_size / 2).max(1),
            empty: Arc::new(GeoInfo::default()),
            private: Arc::new(GeoInfo {
                private: true,
                ..GeoInfo::default()
            }),
            tel: GeoTelemetry::new(),
        }
    }

    /// What is known about `ip`, from the cache when possible.
    pub fn lookup(&mut self, ip: IpAddr) -> Arc<GeoInfo> {
        // Private space with no [[networks]] says nothing more: no lookup, no cache entry.
        if self.no_networks && non_routable(ip) {
            return self.private.clone();
        }
        if !self.enabled {
            return self.empty.clone();
        }
        let g = self.service.generation();
        if g != self.generation {
            self.young.clear();
            self.old.clear();
            self.generation = g;
        }
        if let Some(v) = self.young.get(&ip) {
            self.tel.cache(true);
            return v.clone();
        }
        if let Some(v) = self.old.remove(&ip) {
            self.tel.cache(true);
            self.insert(ip, v.clone());
            return v;
        }
        self.tel.cache(false);
        let v = Arc::new(self.service.lookup(ip, Some(&mut self.tel)));
        self.insert(ip, v.clone());
        v
    }

    fn insert(&mut self, ip: IpAddr, v: Arc<GeoInfo>) {
        if self.young.len() >= self.half {
            // the old generation goes; the maps keep their capacity
            std::mem::swap(&mut self.young, &mut self.old);
            self.young.clear();
        }
        self.young.insert(ip, v);
    }

    pub fn cached(&self) -> usize {
        self.young.len() + self.old.len()
    }
}
