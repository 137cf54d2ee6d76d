//! Shoal's compose-file loader (issue 10): compose and stack files as people write them,
//! read into what `stack config` prints and `stack deploy` applies.
//!
//! Built so far: variable interpolation ([`interpolate`]: every form compose accepts,
//! with the variables left unset reported) and `.env` files ([`env`]). Next: the serde
//! model with located errors, merging several `-c` files, `extends` and `profiles`.
//!
//! It owns the reading of compose files only: it must not know gRPC, the store, the
//! cluster or the CLI's output formats.

pub mod env;
pub mod interpolate;
pub mod yaml;

pub use env::{parse_env_file, EnvError};
pub use interpolate::{interpolate, InterpolateError, Interpolated};
