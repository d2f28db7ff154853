//! Alert rules: their definition, the TOML file they come from, and validation.
