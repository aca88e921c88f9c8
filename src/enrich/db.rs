//! One MaxMind-format database file: opened (memory-mapped), checked, and
//! asked about addresses.
//!
//! In: a path and the role it is configured for (city, country, ASN). Out: a
//! [`Database`] or a [`GeoError`] naming the file and the problem. Records
//! are read leniently so GeoIP2/GeoLite2, DB-IP (GeoLite2-compatible) and
//! IPinfo-style files (`{"country": "US"}`, `{"asn": "AS15169", "name": …}`)
//! all answer.

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::Reader;
use memmap2::Mmap;
use serde::Deserialize;
use thiserror::Error;

/// What a configured database is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    City,
    Country,
    Asn,
}

impl Role {
    pub fn key(self) -> &'static str {
        match self {
            Role::City => "geo.city_db",
            Role::Country => "geo.country_db",
            Role::Asn => "geo.asn_db",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::City => "city",
            Role::Country => "country",
            Role::Asn => "asn",
        }
    }

    /// Whether a file of `database_type` can serve this role (a City file also answers country).
    fn accepts(self, database_type: &str) -> bool {
        let t = database_type.to_ascii_lowercase();
        match self {
            Role::City => t.contains("city") || t.contains("enterprise"),
            Role::Country => {
                t.contains("country") || t.contains("city") || t.contains("enterprise")
            }
            Role::Asn => t.contains("asn") || t.contains("isp"),
        }
    }
}

/// A database that cannot be used.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum GeoError {
    #[error("{key} = {path}: file not found")]
    Missing { key: &'static str, path: String },
    #[error("{key} = {path}: cannot read: {detail}")]
    Unreadable {
        key: &'static str,
        path: String,
        detail: String,
    },
    #[error("{key} = {path}: is a {found} database, not a {wanted} database")]
    WrongType {
        key: &'static str,
        path: String,
        found: String,
        wanted: &'static str,
    },
    #[error("{key} = {path}: corrupt or not a MaxMind DB file: {detail}")]
    Corrupt {
        key: &'static str,
        path: String,
        detail: String,
    },
}

impl GeoError {
    pub fn code(&self) -> &'static str {
        match self {
            GeoError::Missing { .. } => "missing",
            GeoError::Unreadable { .. } => "unreadable",
            GeoError::WrongType { .. } => "wrong_type",
            GeoError::Corrupt { .. } => "corrupt",
        }
    }
}

/// File identity, to see a replacement (geoipupdate renames a new file into place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    inode: u64,
    len: u64,
    mtime_ns: i128,
}

pub fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    let mtime_ns = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    Some(FileStamp {
        inode,
        len: m.len(),
        mtime_ns,
    })
}

/// An open database.
pub struct Database {
    pub role: Role,
    pub path: PathBuf,
    pub database_type: String,
    pub stamp: Option<FileStamp>,
    reader: Reader<Mmap>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum CountryField {
    Map {
        iso_code: Option<String>,
    },
    Code(String),
    #[default]
    Other,
}

#[derive(Deserialize, Default)]
struct Names {
    en: Option<String>,
}

#[derive(Deserialize, Default)]
struct CityField {
    #[serde(default)]
    names: Names,
}

#[derive(Deserialize, Default)]
struct LocationField {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

/// An unsigned integer of any width (MaxMind writes uint32, other writers uint64).
#[derive(Debug, Clone, Copy)]
struct AnyUint(u64);

impl<'de> Deserialize<'de> for AnyUint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = AnyUint;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an unsigned integer")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<AnyUint, E> {
                Ok(AnyUint(v))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<AnyUint, E> {
                u64::try_from(v).map(AnyUint).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<AnyUint, E> {
                u64::try_from(v).map(AnyUint).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum AsnField {
    Number(AnyUint),
    Text(String),
    #[default]
    Other,
}

/// The fields flowhook reads, in every supported schema.
#[derive(Deserialize, Default)]
struct Record {
    #[serde(default)]
    country: CountryField,
    #[serde(default)]
    registered_country: CountryField,
    #[serde(default)]
    city: Option<CityField>,
    #[serde(default)]
    location: Option<LocationField>,
    /// uint32 in MaxMind's files; some writers store uint64.
    autonomous_system_number: Option<AnyUint>,
    autonomous_system_organization: Option<String>,
    #[serde(default)]
    asn: AsnField,
    #[serde(alias = "as_name")]
    name: Option<String>,
}

/// What one database knows about one address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub country: Option<String>,
    pub city: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub asn: Option<u32>,
    pub as_name: Option<String>,
}

fn country_code(c: CountryField) -> Option<String> {
    match c {
        CountryField::Map { iso_code } => iso_code,
        CountryField::Code(s) if s.len() == 2 => Some(s),
        _ => None,
    }
}

impl Database {
    /// Opens `path` for `role` and checks it: readable, a MaxMind DB, of a fitting type, and whole.
    pub fn open(role: Role, path: &Path) -> Result<Database, GeoError> {
        let key = role.key();
        let p = path.display().to_string();
        let file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => GeoError::Missing {
                key,
                path: p.clone(),
            },
            _ => GeoError::Unreadable {
                key,
                path: p.clone(),
                detail: e.to_string(),
            },
        })?;
        // SAFETY: the map is read-only. Databases are updated by renaming a new
        // file into place (geoipupdate does); the old mapping keeps the old
        // inode alive. docs/geolocation.md says not to overwrite files in place.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| GeoError::Unreadable {
            key,
            path: p.clone(),
            detail: e.to_string(),
        })?;
        let reader = Reader::from_source(map).map_err(|e| GeoError::Corrupt {
            key,
            path: p.clone(),
            detail: e.to_string(),
        })?;
        let database_type = reader.metadata().database_type.clone();
        if !role.accepts(&database_type) {
            return Err(GeoError::WrongType {
                key,
                path: p,
                found: database_type,
                wanted: role.label(),
            });
        }
        reader.verify().map_err(|e| GeoError::Corrupt {
            key,
            path: p.clone(),
            detail: e.to_string(),
        })?;
        Ok(Database {
            role,
            path: path.to_path_buf(),
            database_type,
            stamp: stamp(path),
            reader,
        })
    }

    /// What the database says about `ip`; `Ok(None)` when it has no record.
    pub fn lookup(&self, ip: IpAddr) -> Result<Option<Answer>, maxminddb::MaxMindDbError> {
        let res = self.reader.lookup(ip)?;
        let Some(r) = res.decode::<Record>()? else {
            return Ok(None);
        };
        let asn = r
            .autonomous_system_number
            .map(|n| n.0)
            .or(match &r.asn {
                AsnField::Number(n) => Some(n.0),
                AsnField::Text(t) => t.trim_start_matches("AS").parse().ok(),
                AsnField::Other => None,
            })
            .and_then(|n| u32::try_from(n).ok());
        let country = country_code(r.country).or_else(|| country_code(r.registered_country));
        Ok(Some(Answer {
            country: if self.role == Role::Asn {
                None
            } else {
                country
            },
            city: r.city.and_then(|c| c.names.en),
            latitude: r.location.as_ref().and_then(|l| l.latitude),
            longitude: r.location.as_ref().and_then(|l| l.longitude),
            asn,
            as_name: r.autonomous_system_organization.or(r.name),
        }))
    }
}
