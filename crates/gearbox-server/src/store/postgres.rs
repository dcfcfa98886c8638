//! PostgreSQL backend (`-q postgres`): placeholder until it lands.
