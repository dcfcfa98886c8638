//! Redis backend (`-q redis`): placeholder until it lands.
