//! Schema versions. Each backend ships its migrations as numbered SQL files; a store applies
//! the ones its database lacks at start-up, and refuses a database a newer version wrote.

use crate::OpenError;

/// One step of a backend's schema.
pub(crate) struct Migration {
    pub(crate) version: u32,
    pub(crate) sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("migrations/sqlite/0001_orders.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("migrations/sqlite/0002_redrives.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("migrations/sqlite/0003_status_reason.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("migrations/sqlite/0004_integrity.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("migrations/sqlite/0005_order_history.sql"),
    },
    Migration {
        version: 6,
        sql: include_str!("migrations/sqlite/0006_order_count.sql"),
    },
    Migration {
        version: 7,
        sql: include_str!("migrations/sqlite/0007_incarnations.sql"),
    },
];

pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("migrations/postgres/0001_orders.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("migrations/postgres/0002_redrives.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("migrations/postgres/0003_status_reason.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("migrations/postgres/0004_integrity.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("migrations/postgres/0005_order_history.sql"),
    },
    Migration {
        version: 6,
        sql: include_str!("migrations/postgres/0006_order_count.sql"),
    },
    Migration {
        version: 7,
        sql: include_str!("migrations/postgres/0007_incarnations.sql"),
    },
];

/// The migrations to apply to a database at version `current`, in order.
pub(crate) fn pending(
    migrations: &'static [Migration],
    current: u32,
) -> Result<&'static [Migration], OpenError> {
    let known = migrations.last().map_or(0, |m| m.version);
    if current > known {
        return Err(OpenError::NewerSchema {
            found: current,
            known,
        });
    }
    let start = migrations.partition_point(|m| m.version <= current);
    Ok(&migrations[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for list in [SQLITE, POSTGRES] {
            let versions: Vec<u32> = list.iter().map(|m| m.version).collect();
            let expected: Vec<u32> = (1..=list.len() as u32).collect();
            assert_eq!(versions, expected);
        }
    }

    #[test]
    fn a_newer_database_is_refused_and_an_older_one_migrated() {
        assert_eq!(pending(SQLITE, 0).unwrap().len(), SQLITE.len());
        assert!(pending(SQLITE, SQLITE.len() as u32).unwrap().is_empty());
        let error = pending(SQLITE, 99).err().unwrap();
        assert!(matches!(error, OpenError::NewerSchema { found: 99, .. }));
    }
}
