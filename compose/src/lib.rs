//! Shoal's compose-file loader (issue 10): compose and stack files as people write them,
//! read into what `stack config` prints and `stack deploy` applies.
//!
//! A located YAML tree ([`yaml`]); which keys Shoal applies, ignores (a warning) or
//! refuses (an error with a hint) ([`keys`]); variable interpolation ([`interpolate`],
//! [`resolve`]) and `.env` files ([`env`]); compose's merge rules for several files and
//! `extends` ([`merge`]); the typed model read by serde with located errors ([`de`],
//! [`model`]); and the whole load as `stack config` prints it ([`load`]).
//!
//! It owns the reading of compose files only: it must not know gRPC, the store, the
//! cluster or the CLI's output formats.

pub mod de;
pub mod env;
pub mod interpolate;
pub mod keys;
pub mod load;
pub mod merge;
pub mod model;
pub mod resolve;
pub mod yaml;

pub use env::{parse_env_file, EnvError};
pub use interpolate::{interpolate, InterpolateError, Interpolated};
pub use load::{load, to_yaml, LoadError, Loaded, Request};
pub use resolve::{interpolate_tree, Place, ResolveError, Unset};
