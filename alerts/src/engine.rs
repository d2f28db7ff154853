//! The rule engine: turns observations of readings and KPIs into breaches and clears.
